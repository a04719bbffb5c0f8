"""The seeded user/author sample of the llm feature set, and the variants compared per set."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from mspa_features.cli.main_job import draw_sample
from mspa_features.config import load_config
from ranker_hooks.ablation.run import AblationConfig, _variant_names

REPO = Path(__file__).resolve().parents[2]


def _inter() -> pd.DataFrame:
    rows = []
    for u in range(10):
        # users 0-5: a positive before T (1998-03-01) and an impression after it (eligible)
        # users 6-7: nothing after T; users 8-9: only negatives before T
        rows.append((str(u), f"a{u}", "1998-01-10", 1 if u < 8 else 0))
        if u < 6 or u > 7:
            rows.append((str(u), f"b{u}", "1998-03-10", 1))
    df = pd.DataFrame(rows, columns=["user_id", "author_id", "event_timestamp", "label"])
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    return df


def _cfg(tmp_path: Path, users: int, authors: int, seed: int | None = None):
    raw = yaml.safe_load((REPO / "configs/movielens.yaml").read_text())
    raw["ablation"]["config"] = str(REPO / "configs/ablation/movielens.yaml")
    raw["features"]["sample"].update(users=users, authors=authors, seed=seed)
    p = tmp_path / "run.yaml"
    p.write_text(yaml.safe_dump(raw))
    return load_config(p)


def test_sample_draws_only_eligible_users_and_their_authors_reproducibly(tmp_path):
    inter = _inter()
    s = draw_sample(_cfg(tmp_path, users=3, authors=4), inter)
    assert s["eligible_users"] == 6 and s["seed"] == 0
    assert len(s["users"]) == 3 and set(s["users"]) <= {"0", "1", "2", "3", "4", "5"}
    assert s["users"] == sorted(s["users"])
    theirs = {f"{p}{u}" for u in s["users"] for p in "ab"}
    assert len(s["authors"]) == 4 and set(s["authors"]) <= theirs
    assert draw_sample(_cfg(tmp_path, users=3, authors=4), inter) == s
    other = draw_sample(_cfg(tmp_path, users=3, authors=4, seed=7), inter)
    assert other["seed"] == 7 and (other["users"], other["authors"]) != (s["users"], s["authors"])
    # asking for more than exist takes them all
    everyone = draw_sample(_cfg(tmp_path, users=50, authors=500), inter)
    assert everyone["users"] == ["0", "1", "2", "3", "4", "5"] and len(everyone["authors"]) == 12


def test_a_rerun_without_the_ablation_stage_draws_the_same_sample(tmp_path):
    # The main job's rerun turns the ablation stage off; its backfill must cover the same
    # users and authors, or the rerun rewrites the llm set with other rows.
    inter = _inter()
    cfg = _cfg(tmp_path, users=3, authors=4)
    first = draw_sample(cfg, inter)
    cfg.ablation.enabled = False
    assert draw_sample(cfg, inter) == first and first["eligible_users"] == 6


def test_compared_feature_sets_get_every_ais_variant_once(tmp_path):
    cfg = AblationConfig.model_validate(
        {
            "split": {"split_at": "1998-03-01T00:00:00Z"},
            "variants": ["baseline", "preference", "all", "llm_text", "text_tokens"],
            "compare_feature_sets": ["template", "llm"],
        }
    )
    pairs = _variant_names(cfg, cfg.variants)
    assert pairs == [
        ("baseline", "template"),
        ("preference", "template"),
        ("all", "template"),
        ("llm_text", "template"),
        ("text_tokens", "template"),
        ("preference", "llm"),
        ("text_tokens", "llm"),
    ]  # the llm set's 'all' is llm_text: not run twice
