"""``mspa drift`` on a small real backfill, checked against brute force over the parquet rows.

The first two weeks of MovieLens-100K through the Spark backfill (template composer, real
encoder) give feature set ``template``; set ``moved`` is a copy whose embeddings are changed in
a known way (half the users' and a third of the authors' vectors mixed with another entity's).
Both are registered in Feast (duckdb offline, SQLite online); the report read through Feast's
point-in-time join must equal what the rows say at the as-of instant.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from mspa_features.snapshots.partitions import read_partitions

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
START, END = date(1997, 9, 20), date(1997, 10, 3)
AS_OF = datetime(1997, 10, 1, 12, tzinfo=UTC)  # inside the range: older snapshots are skipped


def _move(table: pa.Table, col: str, key: str, every: int) -> pa.Table:
    """Every ``every``-th entity (by sorted id) gets its vector mixed with the next entity's."""
    ids = sorted(set(table.column(key).to_pylist()))
    moved = {a: ids[(i + 1) % len(ids)] for i, a in enumerate(ids) if i % every == 0}
    rows = table.to_pylist()
    latest = {r[key]: np.asarray(r[col], np.float32) for r in rows}  # any version of the other
    for r in rows:
        if r[key] in moved:
            v = 0.4 * np.asarray(r[col], np.float32) + latest[moved[r[key]]]
            r[col] = (v / np.linalg.norm(v)).tolist()
    return pa.Table.from_pylist(rows, schema=table.schema)


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory, template_backfill):
    from mspa_features.serving.materialize import register

    root = tmp_path_factory.mktemp("drift")
    cfg, _bf, src = template_backfill(root, START, END, "mspa-drift-test")
    dst = src.parent / "moved"
    shutil.copytree(src, dst)
    for entity, col, key, every in (
        ("preferences", "pref_emb", "user_id", 2),
        ("author_profiles", "author_emb", "author_id", 3),
    ):
        for f in sorted((dst / entity).rglob("*.parquet")):
            t = pq.read_table(f)
            pq.write_table(_move(t, col, key, every), f)
    end = datetime.combine(END + timedelta(days=1), datetime.min.time(), UTC)
    register(cfg, ["template", "moved"], repo_path=REPO / "feature_repo", end=end)
    return cfg, src, dst


def _as_of_rows(folder: Path, entity: str, key: str, col: str) -> dict[str, np.ndarray]:
    """Brute force: per entity, the latest row with event_timestamp <= AS_OF."""
    t = read_partitions(folder / entity).to_pandas()
    t = t[t["event_timestamp"] <= AS_OF].sort_values("event_timestamp", kind="stable")
    return {str(k): np.asarray(g[col].iloc[-1], np.float64) for k, g in t.groupby(key)}


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _drift(config: Path, set_a: str, set_b: str, *options: str) -> tuple[int, str]:
    """``mspa drift CONFIG SET_A SET_B --as-of AS_OF --json OPTIONS``: (exit code, stdout)."""
    import contextlib
    import io

    from mspa_features.cli import run_cli

    out = io.StringIO()
    args = ["drift", str(config), set_a, set_b, "--as-of", "1997-10-01 12:00:00"]
    args += ["--repo", str(REPO / "feature_repo"), *options, "--json"]
    with contextlib.redirect_stdout(out):
        rc = run_cli(args)
    return rc, out.getvalue()


def test_drift_report_matches_brute_force(two_sets, tmp_path) -> None:
    cfg, src, dst = two_sets
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {"name": cfg.name, "workspace": str(cfg.workspace), "data": {"source": "movielens"}}
        )
    )
    mlflow_db = tmp_path / "mlflow.db"
    rc, text = _drift(config, "template", "moved", "--mlflow-uri", f"sqlite:///{mlflow_db}")
    assert rc == 0, text
    rep = json.loads(text)

    # Brute force from the parquet rows at the as-of instant.
    pa_, pb = (_as_of_rows(d, "preferences", "user_id", "pref_emb") for d in (src, dst))
    aa, ab = (_as_of_rows(d, "author_profiles", "author_id", "author_emb") for d in (src, dst))
    users, authors = sorted(set(pa_) & set(pb)), sorted(set(aa) & set(ab))
    assert len(users) > 20 and len(authors) > 50
    assert rep["users"]["n_both"] == len(users) and rep["authors"]["n_both"] == len(authors)
    ucos = np.array([_cos(pa_[u], pb[u]) for u in users])
    acos = np.array([_cos(aa[a], ab[a]) for a in authors])
    assert rep["users"]["cosine"]["mean"] == pytest.approx(ucos.mean(), abs=1e-5)
    assert rep["users"]["cosine"]["min"] == pytest.approx(ucos.min(), abs=1e-5)
    assert rep["authors"]["cosine"]["mean"] == pytest.approx(acos.mean(), abs=1e-5)
    assert sum(rep["users"]["histogram"]["counts"]) == len(users)
    # The untouched half is unchanged (cosine 1), the moved half is not.
    assert np.isclose(ucos, 1.0, atol=1e-5).sum() >= len(users) // 2 - 1
    assert (ucos < 0.999).sum() >= len(users) // 3

    # Top-10 per version over the authors both serve, each with its own embeddings.
    per_user = {r["user_id"]: r for r in rep["per_user"]}
    catalogue = {s: np.stack([e[a] for a in authors]) for s, e in (("a", aa), ("b", ab))}
    changed = 0
    for u in users:
        tops = {}
        for s, prefs in (("a", pa_), ("b", pb)):
            m = catalogue[s]
            scores = m @ prefs[u] / (np.linalg.norm(m, axis=1) * np.linalg.norm(prefs[u]))
            tops[s] = [authors[i] for i in np.argsort(-scores, kind="stable")[:10]]
        assert per_user[u]["top_a"] == tops["a"] and per_user[u]["top_b"] == tops["b"], u
        changed += set(tops["a"]) != set(tops["b"])
    assert rep["topk"]["n_changed"] == changed and changed > 0
    assert rep["topk"]["changed_share"] == pytest.approx(changed / len(users))

    # Files and MLflow.
    assert Path(rep["json_path"]).is_file() and Path(rep["plot_path"]).stat().st_size > 1000
    import mlflow

    client = mlflow.tracking.MlflowClient(f"sqlite:///{mlflow_db}")
    run = client.get_run(rep["mlflow_run_id"])
    assert run.data.metrics["top10_changed_share"] == pytest.approx(changed / len(users))
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"drift.json", "drift.png"} <= arts

    # The same set against itself: no drift.
    rc, text = _drift(config, "template", "template", "--no-mlflow")
    same = json.loads(text)
    assert rc == 0 and same["topk"]["changed_share"] == 0.0
    assert same["users"]["cosine"]["min"] == pytest.approx(1.0, abs=1e-6)
