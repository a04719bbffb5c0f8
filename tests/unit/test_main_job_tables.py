"""The main job's printed tables at 80 columns: no name wrapped, no header or number cut."""

from __future__ import annotations

import io
from pathlib import Path

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
        "verdicts": [{"variant": "preference", "ais_lis_ratio": -0.24},
                     {"variant": "author", "ais_lis_ratio": 0.42}],
        "variants": [_variant(n, k, -0.0048 if k != "baseline" else 0.0) for n, k in names]
        + [_variant("author", "ais", 0.0021)],
    }  # fmt: skip
    lines = _render(ablation_table(ab))
    rows = {ln.split()[0]: ln for ln in lines if ln[:2].strip() and ln.split()[0][0].isalpha()}
    assert "lis_similar_items_n30*" in rows and "lis_next_positive_n30*" in rows
    assert "[-0.0083,-0.0013]" in rows["preference"] and "<0.001" in rows["preference"]
    # below the baseline there is no share of the upper bound: "below", never "-24%"
    assert rows["preference"].rstrip().endswith("below") and "-24%" not in rows["preference"]
    assert rows["author"].rstrip().endswith("42%")


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
    assert "ok/repaired/failed" not in text  # the template set is not written by an LLM

    # an LLM set: how its rows were written (the status column Feast serves), under the table
    features["backfill"]["llm"] = {
        "preferences": {"partitions": 31, "requested": 69, "written": 69, "quarantined": 0,
                        "seconds": 166.8, "status": {"ok": 67, "repaired": 1, "failed": 1},
                        "decoding": {"constrained": 69}},
        "author_profiles": {"partitions": 216, "requested": 160, "written": 160,
                            "quarantined": 0, "seconds": 55.6, "status": {"ok": 160},
                            "decoding": {"constrained": 160}},
    }  # fmt: skip
    text = " ".join(ln.strip() for ln in _render(features_table(features)))
    assert (
        "rows ok/repaired/failed: llm preferences 67/1/1 (constrained), "
        "llm authors 160/0/0 (constrained)"
    ) in text


# --------------------------------------------------------------------------- the whole summary


def _composer(name: str, decoding: str, parse: dict) -> dict:
    metrics = {k: 0.25 for k in ("acc@4", "acc@4_emb", "acc@10", "acc@10_emb", "recall@5",
                                 "ndcg@5", "recall@10", "ndcg@10", "a2a")}  # fmt: skip
    ci = {k: {"ci_low": 0.0, "ci_high": 0.5, "trustworthy": False} for k in metrics}
    return {"composer": name, **metrics, "acc@4_std": 0.04, "acc@10_std": 0.04, "ci": ci,
            "parse": parse,
            "seconds": 38.5, "decoding": decoding, "answer_decoding": "constrained"}  # fmt: skip


def _summary(ws: Path):  # type: ignore[no-untyped-def]
    from mspa_features.cli.main_job import RunSummary, StageCounts

    counts = {k: {"ok": 12, "repaired": 0, "failed": 0} for k in ("preferences", "compose")}
    tpl = {"preferences": {"ok": 12, "repaired": 0, "failed": 0},
           "recommend": {"ok": 70, "repaired": 0, "failed": 2}}  # fmt: skip
    composer_eval = {
        "cohort_users": 12, "test_users_total": 94, "generations": 3, "author_pool": "cohort",
        "n_authors": 169, "a2a_triples": 20,
        "composers": {"template": _composer("template", "none", tpl),
                      "llm": _composer("llm", "constrained", counts)},
    }  # fmt: skip
    names = [("baseline", "baseline"), ("preference", "ais"), ("cosine", "ais"),
             ("lis_future_id_n30", "lis")]  # fmt: skip
    verdict = (
        "+ user preference embedding hurts the ranker (AIS -0.0048 AUC, 95% CI [-0.0083, "
        "-0.0018]); below the baseline, it realises none of the LIS upper bound of "
        "'lis_future_id_n30' (an AIS/LIS ratio is not meaningful for a loss)"
    )
    compare = {
        "feature_sets": ["template", "llm"],
        "sample": {"users": 16, "authors": 160, "eligible_users": 119, "seed": 0},
        "n_train": 408, "n_test": 122,
        "variants": [{**_variant("baseline", "baseline", 0.0), "feature_set": "template"}]
        + [{**_variant(f"preference{s}", "ais", -0.1099), "feature_set": fs}
           for fs, s in (("template", ""), ("llm", "@llm"))],
        "notes": [("cold slice: 1 test row with an author first seen at or after the split T; "
                  "it holds one label, and an AUC needs both: no cold AUC")],
        "results_path": str(ws / "results/ablation/ais-movielens-compare-20261130T103811"
                            / "results.json"),
    }  # fmt: skip
    ablation = {
        "window": {"train_start": "first", "split_at": "1998-03-01", "eval_end": "1998-04-30"},
        "seeds": [0, 1, 2],
        "variants": [_variant(n, k, -0.0048 if k != "baseline" else 0.0) for n, k in names],
        "verdicts": [{"variant": "preference", "kind": "ais", "verdict": verdict,
                      "ais_lis_ratio": -0.24}],
        "notes": [("llm_text runs in the feature-set comparison: feature set 'llm' is "
                  "backfilled for the sample only")],
        "results_path": str(ws / "results/ablation/ais-movielens-20261130T103719/results.json"),
        "mlflow_parent_run_id": "90c6a1c3c9734e88b481cba5150b40fa",
        "tracking_uri": f"sqlite:///{ws / 'a-folder-name-that-pushes-the-uri-past-80/mlflow.db'}",
        "compare": compare,
    }  # fmt: skip
    return RunSummary(
        name="movielens", dataset="movielens",
        counts=[StageCounts("users", 943, 943, 0)],
        u2a_report={"n_users_in": 943, "n_dropped_few_positives": 4, "n_dropped_few_negatives": 0,
                    "n_users_out": 939, "n_train": 657, "n_val": 188, "n_test": 94},
        n_a2a_triples=2000,
        u2a_metrics={"popularity": {"acc@4": 0.57, "acc@4_cohort": 0.667}},
        a2a_metrics={"co-occurrence": 0.47},
        data_span=("1997-09-20", "1998-04-22"), n_positives=55375,
        timings_s={"composers": 164.2}, quarantine_dir=str(ws / "quarantine"),
        composer_eval=composer_eval, ablation=ablation,
    )  # fmt: skip


def _print_summary(ws: Path, width: int = 80) -> str:
    from mspa_features.cli.run import print_summary
    from mspa_features.config import DataConfig, RunConfig

    cfg = RunConfig(name="movielens", workspace=ws, data=DataConfig(source="movielens"))
    out = Console(width=width, record=True, color_system=None, file=io.StringIO())
    print_summary(out, cfg, _summary(ws), elapsed_s=487.8)
    return out.export_text()


def test_summary_at_80_columns_prints_paths_whole_on_their_own_lines(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = _print_summary(tmp_path / "workspace")
    lines = text.splitlines()
    # Paths under the working directory are printed relative to it, each alone on its line.
    for rel in (
        "workspace/results/ablation/ais-movielens-compare-20261130T103811/results.json",
        "workspace/results/ablation/ais-movielens-20261130T103719/results.json",
        "workspace/results/movielens/summary.json",
    ):
        assert f"  {rel}" in lines, rel
    # A URI is printed as given, whole, even past 80 columns (the terminal wraps it; no
    # newline is inserted): the only lines over 80 columns are such single words.
    uri = _summary(tmp_path / "workspace").ablation["tracking_uri"]
    assert len(uri) > 80 and f"  {uri}" in lines
    for line in lines:
        assert len(line) <= 80 or line.strip() == uri, line
    assert "MLflow parent run 90c6a1c3c9734e88b481cba5150b40fa" in text


def test_summary_prints_a_path_outside_the_working_directory_absolute_and_whole(
    tmp_path, monkeypatch
):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    ws = tmp_path / "a-workspace-with-a-rather-long-name-to-cross-eighty-columns" / "ws"
    lines = _print_summary(ws).splitlines()
    path = str(ws / "results/ablation/ais-movielens-compare-20261130T103811/results.json")
    assert len(path) > 80 and f"  {path}" in lines


def test_summary_sentences_hang_under_their_bullet_and_captions_start_flush(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lines = _print_summary(tmp_path / "ws").splitlines()
    # The verdict bullet: first line "  - ", every following line indented under its text.
    start = next(i for i, ln in enumerate(lines) if ln.startswith("  - preference:"))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("    "))
    assert end - start >= 2  # it wraps at 80 columns ...
    body = " ".join(ln.strip() for ln in lines[start:end])
    assert "realises none of the LIS upper bound" in body and "realises -" not in body
    assert "[-0.0083, -0.0018]" in body  # ... and never inside a number
    # The comparison caption is left-justified: its second line is not indented.
    cap = next(i for i, ln in enumerate(lines) if ln.startswith("baseline AUC"))
    assert lines[cap + 1] and not lines[cap + 1][0].isspace(), lines[cap + 1]
    # The comparison's note says which table it is about; it wraps under itself.
    note = next(i for i, ln in enumerate(lines) if ln.startswith("note (feature-set comparison):"))
    assert lines[note + 1].startswith("  ") and "1 test row" in lines[note]


def test_summary_says_the_template_composes_without_an_llm(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lines = _print_summary(tmp_path / "ws").splitlines()
    row = next(ln for ln in lines if "preferences ok/rep/fail" in ln)
    cells = [c.strip() for c in row.split("│") if c.strip()]
    assert cells == ["preferences ok/rep/fail", "no LLM", "12/0/0"]
    assert any(
        ln.startswith("  - template (composed without an LLM): preferences 12/0/0 (100.0%)")
        for ln in lines
    )
    words = " ".join(ln.strip() for ln in lines)  # the parse lines wrap at 80 columns
    assert "none decoding" not in words and "LLM answers (constrained decoding) 70/0/2" in words


def test_summary_uses_a_wide_terminal_s_width(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lines = _print_summary(tmp_path / "ws", width=160).splitlines()
    assert max(len(ln) for ln in lines) <= 160
    bullet = next(ln for ln in lines if ln.startswith("  - preference:"))
    assert 80 < len(bullet) <= 160
