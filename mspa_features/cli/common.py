"""Console, tables and progress shared by the CLI commands."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.table import Table

console = Console(stderr=False)


def counts_table(title: str, counts: Iterable[object]) -> Table:
    """Input = accepted + quarantined per contract, with the top quarantine reasons."""
    t = Table(title=title, title_justify="left")
    for col in ("contract", "input", "accepted", "quarantined", "top reasons"):
        t.add_column(
            col, justify="right" if col in ("input", "accepted", "quarantined") else "left"
        )
    for c in counts:
        reasons = sorted(getattr(c, "reasons", {}).items(), key=lambda kv: -kv[1])[:3]
        t.add_row(
            c.contract,
            f"{c.n_input:,}",
            f"{c.n_accepted:,}",
            f"{c.n_quarantined:,}",
            ", ".join(f"{k} ({v})" for k, v in reasons) or "-",
        )
    return t


def metric_table(title: str, rows: dict[str, dict[str, float]], columns: Sequence[str]) -> Table:
    t = Table(title=title, title_justify="left")
    t.add_column("scorer")
    for c in columns:
        t.add_column(c, justify="right")
    for name, vals in rows.items():
        t.add_row(name, *(f"{vals[c]:.4f}" if c in vals else "-" for c in columns))
    return t
