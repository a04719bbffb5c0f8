"""``mspa data``: fetch, generate and validate the input contracts."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from mspa_features.cli.common import console, counts_table, spark_reader, spark_validator

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


def ensure_run_data(cfg, *, eval_sets: bool = False, quiet: bool = False):  # type: ignore[no-untyped-def]
    """Ingest the run config's data source unless ``data/<run>/`` already holds it (every
    command that reads the accepted tables calls this first); prints the counts when it
    ingested. With ``eval_sets``, also builds the U2A/A2A sets (the main job's stage 2) when
    they are missing or the data was ingested again. Returns the validation results, or None
    when nothing had to be ingested."""
    from mspa_features.cli.main_job import StageCounts, build_eval_sets
    from mspa_features.config import Workspace
    from mspa_features.data.ingest import ensure_data

    ws = Workspace(cfg.workspace)
    with console.status(f"data: {cfg.data.source} -> {cfg.name} ..."):
        with spark_validator(cfg) as validate_spark:
            results = ensure_data(
                cfg, ws, read_spark=spark_reader(cfg), validate_spark=validate_spark
            )
        if eval_sets and (
            results is not None or not (ws.datasets(cfg.name) / "a2a.parquet").is_file()
        ):
            build_eval_sets(cfg, ws)
    if results is not None and not quiet:
        console.print(
            counts_table(
                f"{cfg.name} ({cfg.data.source}): input = accepted + quarantined",
                [StageCounts.of(r) for r in results],
            )
        )
        _print_notes(results)
    return results


@app.command("load")
def load(
    config: Annotated[Path, typer.Argument(help="run config YAML (its data: section)")],
) -> None:
    """Validate the run config's data source into the workspace (what every command does
    first when the data is not there yet): accepted rows, quarantine with reasons, counts.

    Always ingests again (a changed file or config is picked up by every command anyway).
    """
    from mspa_features.cli.main_job import StageCounts
    from mspa_features.config import Workspace, load_config
    from mspa_features.data.ingest import ingest_source
    from mspa_features.errors import NothingAcceptedError

    cfg = load_config(config)
    ws = Workspace(cfg.workspace)
    failed: NothingAcceptedError | None = None
    with console.status(f"data: {cfg.data.source} -> {cfg.name} ..."):
        try:
            with spark_validator(cfg) as validate_spark:
                results = ingest_source(
                    cfg, ws, read_spark=spark_reader(cfg), validate_spark=validate_spark
                )
        except NothingAcceptedError as e:
            failed, results = e, list(e.results or [])
    console.print(
        counts_table(
            f"{cfg.name} ({cfg.data.source}): input = accepted + quarantined",
            [StageCounts.of(r) for r in results],
        )
    )
    _print_notes(results)
    for r in results:
        for row in r.quarantine.slice(0, 3).to_pylist():
            console.print(
                f"  {r.contract} row {row['row_number']}: {row['reason']}", highlight=False
            )
    console.print(
        f"accepted -> {ws.data(cfg.name)}\nquarantine -> {ws.quarantine(cfg.name)}",
        highlight=False,
    )
    if failed is not None:
        raise failed


@app.command("example")
def example(
    folder: Annotated[
        Path,
        typer.Argument(
            help="where to write it (configs/own_data_example.yaml reads "
            "workspace/own_data_example)"
        ),
    ],
    seed: Annotated[int, typer.Option(help="generator seed")] = 0,
) -> None:
    """Write a small folder of "your own data" in a layout of its own (a generated podcast
    catalogue: 30 listeners, 40 shows, 500 plays over 13 weeks, epoch-millisecond times, 7
    rows wrong on purpose) to try `source: files` on."""
    from mspa_features.data.sources_example import write_example_folder

    ex = write_example_folder(folder, seed=seed)
    for name, n in ex.rows.items():
        bad = len(ex.bad_rows.get(name, {}))
        console.print(
            f"{ex.path / (name + '.csv')}: {n} rows ({bad} meant for the quarantine)",
            highlight=False,
        )


def _print_notes(results: list) -> None:  # type: ignore[type-arg]
    """What validation decided on its own (e.g. the vector length it inferred)."""
    for res in results:
        for note in res.notes:
            console.print(f"  note ({res.contract}): {note}", highlight=False)
