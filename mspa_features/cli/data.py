"""``mspa data``: fetch, generate and validate the input contracts."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from mspa_features.cli.common import console, counts_table

app = typer.Typer(help="Fetch, generate and validate input data.", no_args_is_help=True)


class Source(StrEnum):
    movielens = "movielens"
    synthetic = "synthetic"


WorkspaceOpt = Annotated[Path, typer.Option("--workspace", "-w", help="workspace folder")]


@app.command("fetch")
def fetch(
    source: Annotated[Source, typer.Argument(help="movielens (real) or synthetic (live-stream)")],
    workspace: WorkspaceOpt = Path("workspace"),
    positive_threshold: Annotated[
        float, typer.Option(help="MovieLens: rating >= this is a positive")
    ] = 4.0,
    users: Annotated[int, typer.Option(help="synthetic: number of users")] = 1000,
    authors: Annotated[int, typer.Option(help="synthetic: number of authors")] = 200,
    seed: Annotated[int, typer.Option(help="synthetic: generator seed")] = 0,
) -> None:
    """Obtain a dataset, validate it against the contracts, write accepted rows + quarantine."""
    from mspa_features.config import DataConfig, RunConfig, Workspace
    from mspa_features.data.synthetic import SyntheticConfig
    from mspa_features.errors import NothingAcceptedError
    from mspa_features.pipeline import StageCounts, prepare_data

    data = (
        DataConfig(source="movielens", positive_threshold=positive_threshold)
        if source is Source.movielens
        else DataConfig(
            source="synthetic",
            synthetic=SyntheticConfig(n_users=users, n_authors=authors, seed=seed),
        )
    )
    cfg = RunConfig(name=source.value, workspace=workspace, data=data)
    failed: NothingAcceptedError | None = None
    with console.status(f"fetching and validating {source.value} ..."):
        try:
            results = prepare_data(cfg, Workspace(workspace))
        except NothingAcceptedError as e:
            # The counts are printed before the failure: they say why nothing was accepted.
            failed, results = e, list(e.results or [])
    console.print(
        counts_table(
            f"{source.value}: input = accepted + quarantined", [StageCounts.of(r) for r in results]
        )
    )
    _print_notes(results)
    ws = Path(workspace).resolve()
    console.print(
        f"accepted -> {ws / 'data' / source.value}\nquarantine -> "
        f"{ws / 'quarantine' / source.value}"
    )
    if failed is not None:
        raise failed


@app.command("validate")
def validate_file(
    contract: Annotated[
        str, typer.Argument(help="users | authors | interactions | preferences | author_profiles")
    ],
    path: Annotated[Path, typer.Argument(help="a parquet, CSV or TSV file")],
    out: Annotated[Path, typer.Option(help="folder for accepted + quarantine parquet")] = Path(
        "workspace/validated"
    ),
    emb_dim: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="required embedding dimension (default: the file's declared length, else the "
            "most common length per model_version, stated in the output)",
        ),
    ] = None,
    modalities: Annotated[
        str, typer.Option(help="comma-separated author columns that must be non-empty")
    ] = "",
) -> None:
    """Validate one file against a contract; bad rows go to quarantine with reasons.

    Exits non-zero (after printing the counts) when no row is accepted.
    """
    from mspa_features.data.contracts import get_contract
    from mspa_features.data.validation import require_accepted, validate
    from mspa_features.io import read_input
    from mspa_features.pipeline import StageCounts

    try:
        c = get_contract(contract)
    except KeyError as e:
        raise typer.BadParameter(str(e)) from None
    # SchemaError (a file malformed as a whole) is printed as one line by the entry point.
    df = read_input(path)
    mods = tuple(m for m in modalities.split(",") if m)
    res = validate(
        df, c, source=str(path), emb_dim=emb_dim, required_modalities=mods, image_root=path.parent
    )
    res.write(out / f"{c.name}.parquet", out / f"{c.name}.quarantine.parquet")
    console.print(counts_table(f"{path}", [StageCounts.of(res)]))
    _print_notes([res])
    if res.n_quarantined:
        q = res.quarantine.slice(0, 5).to_pylist()
        for r in q:
            console.print(f"  row {r['row_number']}: {r['reason']}", highlight=False)
    require_accepted([res], quarantine=out / f"{c.name}.quarantine.parquet")


def _print_notes(results: list) -> None:  # type: ignore[type-arg]
    """What validation decided on its own (e.g. the vector length it inferred)."""
    for res in results:
        for note in res.notes:
            console.print(f"  note ({res.contract}): {note}", highlight=False)
