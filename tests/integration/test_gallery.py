"""`mspa gallery` end to end, opened in a real headless browser (the distribution's chromium).

A small synthetic live-stream run (authors with PNG frames) is backfilled with the template
composer, registered in milvus-lite, and the gallery is written through the CLI. The page is
then loaded in chromium through selenium and chromedriver: no console error, the expected user
and author cards, every author's frames decoded (naturalWidth > 0), and the author each user
engaged with next (computed here from the raw interactions) marked exactly once.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
COMMON = REPO / "scripts" / "lib" / "common.sh"
N_USERS, N_AUTHORS, K = 3, 2, 5
FRAMES, FRAME_SIZE = 2, 32
AS_OF = datetime(2026, 1, 6, 12, 0, tzinfo=UTC)  # 8 synthetic days from 2026-01-01; weekly snapshots: Monday 01-05
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)


def _browser() -> tuple[str, str]:
    """chromium and chromedriver; installed with the set-up's own helper when absent (CI runs
    `MSPA_WITH_CHROMIUM=1 scripts/setup.sh` first); a skip only where that is impossible."""
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if all(found):
        return found  # type: ignore[return-value]
    proc = subprocess.run(
        ["bash", "-c", f"set -euo pipefail; source '{COMMON}'; ensure_chromium"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=1800, check=False,
    )
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if not all(found):
        pytest.skip(
            "chromium/chromedriver are not installed and cannot be installed here "
            f"({proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}); "
            "`MSPA_WITH_CHROMIUM=1 scripts/setup.sh` installs them"
        )
    return found  # type: ignore[return-value]


def _cli(*args: str) -> str:
    from mspa_features.cli import run_cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = run_cli(list(args))
    assert rc == 0, out.getvalue()
    return out.getvalue()


@pytest.fixture(scope="module")
def gallery_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from mspa_features.config import Workspace, load_config
    from mspa_features.data.ingest import ingest_folder, write_results
    from mspa_features.data.synthetic import write_synthetic

    root = tmp_path_factory.mktemp("gallery")
    config = root / "run.yaml"
    config.write_text(yaml.safe_dump({
        "name": "tinygal", "workspace": str(root / "ws"), "seed": 0,
        "data": {"source": "synthetic", "synthetic": {
            "n_users": 30, "n_authors": 16, "days": 8, "frames_per_author": FRAMES,
            "frame_size": FRAME_SIZE,
        }},
    }))
    cfg = load_config(config)
    ws = Workspace(cfg.workspace)
    write_synthetic(cfg.data.synthetic, ws.raw / "synthetic")
    results = ingest_folder(ws.raw / "synthetic", author_modalities=("profile_text", "frames"))
    write_results(results, ws.data(cfg.name), ws.quarantine(cfg.name))
    # The Spark backfill in its own process (its JVM stays out of the test process).
    proc = subprocess.run(
        [sys.executable, "-m", "mspa_features.cli", "backfill", str(config), "--start",
         "2026-01-01", "--end", "2026-01-08", "--cadence", "weekly", "--master", "local[2]",
         "--conf", "spark.sql.shuffle.partitions=2"],
        capture_output=True, text=True, cwd=root, timeout=900, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    repo = str(REPO / "feature_repo")
    _cli("register", str(config), "--online", "milvus", "--repo", repo,
         "--end", "2026-01-09 00:00:00")
    printed = _cli("gallery", str(config), "--users", str(N_USERS), "--authors", str(N_AUTHORS),
                   "--k", str(K), "--as-of", AS_OF.strftime("%Y-%m-%d %H:%M:%S"),
                   "--repo", repo)
    folder = ws.results / "gallery" / cfg.name / "template"
    return {"cfg": cfg, "ws": ws, "folder": folder, "printed": printed}


def _expected(run: dict) -> dict[str, str]:
    """The users the gallery must show and the author each engaged with next, from raw rows:
    the first N by id with a positive before AS_OF, one at or after it, and a preference
    snapshot taken at or before AS_OF."""
    ws, name = run["ws"], run["cfg"].name
    inter = pd.read_parquet(ws.data(name) / "interactions.parquet")
    pos = inter[inter["label"] == 1].sort_values(["event_timestamp", "author_id"], kind="stable")
    t = pd.Timestamp(AS_OF)
    before, after = pos[pos["event_timestamp"] < t], pos[pos["event_timestamp"] >= t]
    snaps = pq.read_table(ws.features(name) / "template" / "preferences").to_pandas()
    has_snap = set(snaps.loc[snaps["event_timestamp"] <= t, "user_id"])
    users = sorted(set(before["user_id"]) & set(after["user_id"]) & has_snap)[:N_USERS]
    first = after.drop_duplicates("user_id").set_index("user_id")["author_id"]
    return {u: first[u] for u in users}


def test_gallery_files_and_mlflow(gallery_run: dict) -> None:
    from mlflow.tracking import MlflowClient
    from PIL import Image

    from mspa_features.names import sqlite_uri

    folder: Path = gallery_run["folder"]
    assert f"gallery: {N_USERS} users, {N_AUTHORS} authors" in gallery_run["printed"]
    doc = json.loads((folder / "gallery.json").read_text())
    assert doc["as_of"] == AS_OF.isoformat() and doc["k"] == K
    cards = doc["cards"]
    assert [c["kind"] for c in cards] == ["u2a"] * N_USERS + ["a2a"] * N_AUTHORS
    expected = _expected(gallery_run)
    assert [c["query_id"] for c in cards if c["kind"] == "u2a"] == list(expected)
    for c in cards:
        assert len(c["hits"]) == K
        scores = [h["score"] for h in c["hits"]]
        assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
        assert c["frames_shown"] > 0
        with Image.open(folder / c["sheet"]) as im:  # a real PNG, not an empty figure
            assert im.format == "PNG" and im.width > 400 and im.height > 300
    assert len(list((folder / "sheets").glob("*.png"))) == N_USERS + N_AUTHORS

    client = MlflowClient(tracking_uri=sqlite_uri(gallery_run["ws"].root / "mlflow.db"))
    exp = client.get_experiment_by_name("mspa-gallery")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`mspa.kind` = 'gallery'")
    assert len(runs) == 1 and runs[0].data.params["k"] == str(K)
    logged = {a.path for a in client.list_artifacts(runs[0].info.run_id, "gallery")}
    assert {"gallery/index.html", "gallery/gallery.json", "gallery/sheets"} <= logged


def test_gallery_page_in_headless_chromium(gallery_run: dict) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    chromium, chromedriver = _browser()
    page = gallery_run["folder"] / "index.html"
    expected = _expected(gallery_run)
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="mspa-chromium-")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,2000"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=opts)
    try:
        driver.get(page.as_uri())
        WebDriverWait(driver, 30).until(lambda d: d.execute_script(
            "return document.readyState === 'complete' && "
            "Array.from(document.images).every(i => i.complete)"))
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == []
        js = driver.execute_script
        # self-contained: no script, every image inline, nothing fetched
        assert js("return document.scripts.length") == 0
        assert js("return Array.from(document.images).every(i => i.src.startsWith('data:'))")
        assert js("return performance.getEntriesByType('resource')"
                  ".filter(e => !e.name.startsWith('data:')).length") == 0
        assert js("return document.querySelectorAll('section.card.u2a').length") == N_USERS
        assert js("return document.querySelectorAll('section.card.a2a').length") == N_AUTHORS
        cards = js("""
            return Array.from(document.querySelectorAll('section.card')).map(c => ({
              kind: c.dataset.kind, query: c.dataset.query,
              hits: c.querySelectorAll('.row.hits .tile').length,
              tiles: Array.from(c.querySelectorAll('.tile')).map(t => ({
                author: t.dataset.author,
                widths: Array.from(t.querySelectorAll('img')).map(i => i.naturalWidth),
              })),
              marked: Array.from(c.querySelectorAll('[data-next]')).map(t => ({
                author: t.dataset.author, rank: t.dataset.rank,
                row: t.parentElement.classList.contains('hits') ? 'hits' : 'missed',
                cls: t.className,
                badge: (t.querySelector('.badge') || {}).textContent || '',
                shown: t.getBoundingClientRect().width > 0,
              })),
            }));""")
        assert [c["query"] for c in cards if c["kind"] == "u2a"] == list(expected)
        for c in cards:
            assert c["hits"] == K
            # every synthetic author shows its frames, decoded by the browser
            for t in c["tiles"]:
                assert t["widths"] == [FRAME_SIZE] * FRAMES, (c["query"], t["author"])
        for c in (c for c in cards if c["kind"] == "u2a"):
            (mark,) = c["marked"]  # exactly one: the author this user engaged with next
            assert mark["author"] == expected[c["query"]]
            assert "next" in mark["cls"].split() and "engaged next" in mark["badge"]
            assert mark["shown"]
            assert mark["row"] == ("hits" if mark["rank"] else "missed")
        # the pixels are the author's own frames, as the data holds them
        authors = pd.read_parquet(gallery_run["ws"].data(gallery_run["cfg"].name)
                                  / "authors.parquet").set_index("author_id")
        srcs = js("return Array.from(document.querySelectorAll('.row.hits .tile')).map("
                  "t => [t.dataset.author, Array.from(t.querySelectorAll('img')).map(i => i.src)])")
        assert len(srcs) == K * (N_USERS + N_AUTHORS)
        for author, uris in srcs:
            frames = authors.at[author, "frames"]
            assert uris == [
                "data:image/png;base64," + base64.b64encode(f["bytes"]).decode() for f in frames
            ], author
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
