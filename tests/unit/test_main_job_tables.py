"""The main job's printed tables at 80 columns: no name wrapped, no header or number cut."""

from __future__ import annotations

import io

from rich.console import Console

from mspa_features.cli.run import ablation_table, features_table


def _render(table) -> list[str]:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(table)
    text = out.getvalue()
    assert "…" not in text
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    return lines


def _variant(name: str, kind: str, delta: float) -> dict:
    return {
        "name": name, "kind": kind, "leaked": kind == "lis", "auc": 0.7112 + delta,
        "delta_auc": delta, "delta_auc_ci_low": delta - 0.0035, "delta_auc_ci_high": delta + 0.0035,
        "p_value": 0.0004, "n_train": 77985, "n_test": 22015,
    }  # fmt: skip


def test_ablation_table_keeps_each_variant_on_one_line() -> None:
    names = [("baseline", "baseline"), ("preference", "ais"), ("lis_similar_items_n30", "lis"),
             ("lis_next_positive_n30", "lis")]  # fmt: skip
    ab = {
        "window": {"train_start": "1997-09-20", "split_at": "1998-03-01", "eval_end": "1998-04-30"},
        "seeds": [0, 1, 2],
        "verdicts": [{"variant": "preference", "ais_lis_ratio": -0.24}],
        "variants": [_variant(n, k, -0.0048 if k != "baseline" else 0.0) for n, k in names],
    }
    lines = _render(ablation_table(ab))
    rows = {ln.split()[0]: ln for ln in lines if ln[:2].strip() and ln.split()[0][0].isalpha()}
    assert "lis_similar_items_n30*" in rows and "lis_next_positive_n30*" in rows
    assert "[-0.0083,-0.0013]" in rows["preference"] and "<0.001" in rows["preference"]
    assert rows["preference"].rstrip().endswith("-24%")


def test_features_table_shows_whole_entities_and_headers() -> None:
    features = {
        "start": "1997-09-20", "end": "1998-04-23", "cadence": "weekly",
        "backfill": {
            "template": {
                "preferences": {"partitions": 31, "requested": 1801, "written": 1801,
                                "quarantined": 0, "seconds": 56.7},
                "author_profiles": {"partitions": 216, "requested": 1682, "written": 1682,
                                    "quarantined": 0, "seconds": 27.0},
            }
        },
        "register": {"views": ["v"] * 6, "services": ["s"] * 8,
                     "materialized_rows": {"user_preferences__template": 1801}},
    }  # fmt: skip
    text = "\n".join(_render(features_table(features)))
    for word in ("quarantined", "seconds", "author_profiles", "preferences", "1,801", "56.7"):
        assert word in text, word
