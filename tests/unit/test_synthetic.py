"""Unit tests for the synthetic live-stream generator."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from mspa_features.data import synthetic as syn
from mspa_features.data.contracts import AUTHORS, INTERACTIONS, USERS
from mspa_features.data.synthetic import (
    SyntheticConfig,
    author_latents,
    generate_authors,
    generate_interactions,
    generate_users,
    user_latents,
    write_synthetic,
)

SMALL = {"n_users": 60, "n_authors": 24, "frames_per_author": 1, "frame_size": 16}


def _users(cfg: SyntheticConfig) -> pa.Table:
    return pa.concat_tables(list(generate_users(cfg)))


def _interactions(cfg: SyntheticConfig) -> pa.Table:
    return pa.concat_tables(list(generate_interactions(cfg)))


def _idx(col: pa.ChunkedArray) -> np.ndarray:
    return np.array([int(s[1:]) for s in col.to_pylist()])


@pytest.fixture(scope="module")
def small() -> tuple[SyntheticConfig, pa.Table, pa.Table, pa.Table]:
    cfg = SyntheticConfig(**SMALL, chunk_users=25)
    return cfg, generate_authors(cfg), _users(cfg), _interactions(cfg)


def test_schemas_match_contracts(small):
    cfg, authors, users, inter = small
    assert authors.schema.equals(AUTHORS.schema)
    assert users.schema.equals(USERS.schema)
    assert inter.schema.equals(INTERACTIONS.schema)
    for chunk in generate_interactions(cfg):
        assert chunk.schema.equals(INTERACTIONS.schema)
    assert authors.num_rows == cfg.n_authors and users.num_rows == cfg.n_users
    assert authors["author_id"][0].as_py() == "a00000"
    assert users["user_id"][-1].as_py() == "u0000059"


def test_chunks_hold_chunk_users(small):
    cfg, *_ = small
    sizes = [t.num_rows for t in generate_users(cfg)]
    assert sizes == [25, 25, 10]
    users_per_chunk = [len(pc.unique(t["user_id"])) for t in generate_interactions(cfg)]
    assert users_per_chunk == [25, 25, 10]


def test_deterministic_for_same_seed(small):
    _, authors, users, inter = small
    again = SyntheticConfig(**SMALL, chunk_users=25)
    assert generate_authors(again).equals(authors)
    assert _users(again).equals(users)
    assert _interactions(again).equals(inter)


def test_different_seed_differs(small):
    _, authors, users, inter = small
    other = SyntheticConfig(**SMALL, seed=1)
    assert not generate_authors(other).equals(authors)
    assert not _users(other).equals(users)
    assert not _interactions(other).equals(inter)


def test_chunk_size_independent(monkeypatch):
    a = SyntheticConfig(**SMALL, chunk_users=7)
    b = SyntheticConfig(**SMALL, chunk_users=1000)
    assert _users(a).equals(_users(b))
    ref = _interactions(b)
    assert _interactions(a).equals(ref)
    # internal sub-blocking (used when users x authors is large) must not change data either
    monkeypatch.setattr(syn, "_MAX_CELLS", 3 * SMALL["n_authors"])
    assert _interactions(b).equals(ref)


def test_author_content_independent_of_counts(small):
    _, authors, _, _ = small
    fewer = SyntheticConfig(**{**SMALL, "n_users": 3, "n_authors": 10})
    assert generate_authors(fewer).equals(authors.slice(0, 10))


def test_attributes_and_texts(small):
    _, authors, _, _ = small
    attrs = [dict(a) for a in authors["attributes"].to_pylist()]
    for a, loc in zip(attrs, authors["location"].to_pylist(), strict=True):
        assert set(a) == {"category", "region", "scene", "lighting", "style"}
        assert a["category"] in syn.CATEGORIES and a["lighting"] in syn.LIGHTINGS
        assert loc == a["region"]
    for comments in authors["comments"].to_pylist():
        assert 2 <= len(comments) <= 5
    assert all(authors["asr_text"].to_pylist())
    # lighting is never in the profile text: that signal is left to frames and comments
    for a, text in zip(attrs, authors["profile_text"].to_pylist(), strict=True):
        assert a["lighting"] not in text.lower().split()
    ts = authors["event_timestamp"].to_pylist()
    assert set(ts) == {datetime(2026, 1, 1, tzinfo=UTC)}


def test_frames_decode_and_reflect_scene():
    from PIL import Image

    cfg = SyntheticConfig(n_users=1, n_authors=80, frames_per_author=2, frame_size=16)
    authors = generate_authors(cfg)
    blueness: dict[str, list[float]] = {"indoor": [], "outdoor": []}
    brightness: dict[str, list[float]] = {k: [] for k in syn.LIGHTINGS}
    for attrs, frames in zip(
        authors["attributes"].to_pylist(), authors["frames"].to_pylist(), strict=True
    ):
        a = dict(attrs)
        assert len(frames) == 2
        for f in frames:
            assert f["path"] is None
            img = Image.open(io.BytesIO(f["bytes"]))
            assert img.format == "PNG" and img.size == (16, 16)
            px = np.asarray(img.convert("RGB"), dtype=float)
            top = px[:4]
            blueness[a["scene"]].append(float((top[..., 2] - top[..., 0]).mean()))
            brightness[a["lighting"]].append(float(px.mean()))
    assert blueness["outdoor"] and blueness["indoor"]
    assert np.mean(blueness["outdoor"]) > np.mean(blueness["indoor"]) + 50
    assert brightness["dim"] and brightness["bright"]
    assert np.mean(brightness["dim"]) < 0.6 * np.mean(brightness["bright"])


def test_tips_follow_taste():
    cfg = SyntheticConfig(n_users=1500, n_authors=60, frames_per_author=0)
    inter = _interactions(cfg)
    tips = inter.filter(pc.equal(inter["action"], "tip"))
    u, a = _idx(tips["user_id"]), _idx(tips["author_id"])
    pref = user_latents(cfg, 0, cfg.n_users).preferred_categories()
    cat = author_latents(cfg).category
    share = pref[u, cat[a]].mean()
    # chance: share of authors in the tipping user's preferred categories
    base = pref[:, cat].mean(axis=1)[u].mean()
    assert share > 2 * base, (share, base)
    # clicks are random, so they sit near the base rate
    clicks = inter.filter(pc.equal(inter["action"], "click"))
    cu, ca = _idx(clicks["user_id"]), _idx(clicks["author_id"])
    assert abs(pref[cu, cat[ca]].mean() - pref[:, cat].mean(axis=1)[cu].mean()) < 0.05


def test_keys_unique_and_values_consistent(small):
    cfg, _, _, inter = small
    keys = list(zip(*(inter[c].to_pylist() for c in INTERACTIONS.key), strict=True))
    assert len(keys) == len(set(keys))
    is_tip = np.array(inter["action"].to_pylist()) == "tip"
    label = inter["label"].to_numpy()
    value = inter["value"].to_numpy()
    assert set(inter["action"].to_pylist()) == {"tip", "click"}
    assert (label[is_tip] == 1).all() and (value[is_tip] > 0).all()
    assert (label[~is_tip] == 0).all() and (value[~is_tip] == 1.0).all()
    # every user tips at least once; clicks are about twice the tips
    tippers = set(inter.filter(pc.equal(inter["action"], "tip"))["user_id"].to_pylist())
    assert len(tippers) == cfg.n_users
    assert 1.5 < (~is_tip).sum() / is_tip.sum() < 2.5


def test_timestamps_in_window_and_utc(small):
    cfg, _, _, inter = small
    col = inter["event_timestamp"]
    assert col.type == pa.timestamp("us", tz="UTC")
    lo, hi = cfg.start, cfg.start + timedelta(days=cfg.days)
    assert pc.min(col).as_py() >= lo and pc.max(col).as_py() < hi
    # microsecond precision is actually used
    assert (col.cast(pa.int64()).to_numpy() % 1_000_000 != 0).any()


def test_start_normalised_to_utc():
    cfg = SyntheticConfig(start=datetime(2026, 1, 1, 16, tzinfo=timezone(timedelta(hours=8))))
    assert cfg.start == datetime(2026, 1, 1, 8, tzinfo=UTC)
    assert cfg.start.utcoffset() == timedelta(0)
    assert SyntheticConfig(start="2026-02-01T00:00:00Z").start == datetime(2026, 2, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_users": 0}, "n_users"),
        ({"n_users": 10_000_001}, "n_users"),
        ({"n_authors": 100_001}, "n_authors"),
        ({"frames_per_author": 9}, "frames_per_author"),
        ({"frame_size": 4}, "frame_size"),
        ({"days": 0}, "days"),
        ({"mean_tips_per_user": 0.0}, "mean_tips_per_user"),
        ({"mean_tips_per_user": float("nan")}, "mean_tips_per_user"),
        ({"seed": -1}, "seed"),
        ({"chunk_users": 0}, "chunk_users"),
        ({"n_users": True}, "n_users"),
        ({"start": datetime(2026, 1, 1)}, "start"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_config_rejects_bad_values(kwargs, field):
    with pytest.raises(ValidationError) as exc:
        SyntheticConfig(**kwargs)
    assert field in str(exc.value)


def test_write_synthetic_counts(tmp_path):
    cfg = SyntheticConfig(**SMALL, chunk_users=20)
    counts = write_synthetic(cfg, tmp_path / "out")
    contracts = {"authors": AUTHORS, "users": USERS, "interactions": INTERACTIONS}
    assert set(counts) == set(contracts)
    for name, contract in contracts.items():
        table = pq.read_table(tmp_path / "out" / f"{name}.parquet")
        assert table.num_rows == counts[name]
        assert table.schema.equals(contract.schema)
    assert counts["users"] == cfg.n_users and counts["authors"] == cfg.n_authors
    assert pq.read_table(tmp_path / "out" / "interactions.parquet").equals(_interactions(cfg))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "authors.parquet",
        "interactions.parquet",
        "users.parquet",
    ]


# --------------------------------------------------------------------------- impressions

IMP = {**SMALL, "frames_per_author": 0, "impressions": {"enabled": True}}


def _imp(**impressions) -> dict:
    return {**IMP, "impressions": {"enabled": True, **impressions}}


def _actions(t: pa.Table) -> np.ndarray:
    return np.array(t["action"].to_pylist())


@pytest.fixture(scope="module")
def imp() -> tuple[SyntheticConfig, pa.Table]:
    cfg = SyntheticConfig(**IMP, chunk_users=25)
    return cfg, _interactions(cfg)


@pytest.fixture(scope="module")
def big_imp() -> tuple[SyntheticConfig, pa.Table]:
    cfg = SyntheticConfig(
        n_users=1500, n_authors=60, frames_per_author=0, impressions={"enabled": True}
    )
    return cfg, _interactions(cfg)


def test_impressions_row_model(imp):
    """One row per shown author and session with its strongest action; label = tipped."""
    cfg, inter = imp
    assert inter.schema.equals(INTERACTIONS.schema)
    act = _actions(inter)
    assert set(act) == set(syn.IMPRESSION_ACTIONS) == {"impression", "click", "tip"}
    label, value = inter["label"].to_numpy(), inter["value"].to_numpy()
    assert ((label == 1) == (act == "tip")).all()
    assert (value[act == "impression"] == 0.0).all() and (value[act == "click"] == 1.0).all()
    assert np.isin(value[act == "tip"], syn._TIP_VALUES).all()
    # one row per (user, author, instant): a tipped impression is not also a click row
    cols = ("user_id", "author_id", "event_timestamp")
    pairs = list(zip(*(inter[c].to_pylist() for c in cols), strict=True))
    assert len(pairs) == len(set(pairs))
    col = inter["event_timestamp"]
    assert pc.min(col).as_py() >= cfg.start
    assert pc.max(col).as_py() < cfg.start + timedelta(days=cfg.days)


def test_impression_counts_reconcile():
    """Rows = the authors shown: sessions x shown_per_session, less repeats in a session."""
    n = 2000
    one_cfg = SyntheticConfig(**{**_imp(shown_per_session=1, sessions_per_user=6.0), "n_users": n})
    per_user = np.bincount(_idx(_interactions(one_cfg)["user_id"]), minlength=n)
    # one author per session: rows per user = sessions = max(1, Poisson(6))
    assert per_user.min() >= 1 and abs(per_user.mean() - 6.0) < 0.15, per_user.mean()
    cfg = SyntheticConfig(**{**_imp(shown_per_session=8), "n_users": n, "n_authors": 1000})
    inter = _interactions(cfg)
    users = _idx(inter["user_id"])
    # sessions hold 8 impressions 10 s apart; few popularity-drawn repeats among 1000 authors
    expected = cfg.impressions.sessions_per_user * 8
    assert 0.9 * expected < inter.num_rows / n <= expected + 0.15 * 8
    act = _actions(inter)
    counts = {k: int((act == k).sum()) for k in syn.IMPRESSION_ACTIONS}
    assert sum(counts.values()) == inter.num_rows
    assert int(inter["label"].to_numpy().sum()) == counts["tip"]
    assert 0 < counts["tip"] < counts["click"] and counts["click"] < counts["impression"]
    assert len(np.unique(users)) == n  # every user saw at least one session


def test_tips_are_a_subset_of_clicks():
    """Tips are drawn among clicks: tip settings move rows between click and tip only."""
    base = _interactions(SyntheticConfig(**_imp()))
    clicked = np.isin(_actions(base), ["click", "tip"])
    for tip_bias in (-20.0, 0.0, 20.0):
        other = _interactions(SyntheticConfig(**_imp(tip_bias=tip_bias, tip_taste=0.0)))
        act = _actions(other)
        assert other.num_rows == base.num_rows
        assert (np.isin(act, ["click", "tip"]) == clicked).all(), tip_bias
        assert not (act[~clicked] == "tip").any()
    # the extremes: nearly no clicked author is tipped / nearly every one is
    assert (
        _actions(_interactions(SyntheticConfig(**_imp(tip_bias=-20.0, tip_taste=0.0))))[clicked]
        == "tip"
    ).sum() == 0
    assert (
        _actions(_interactions(SyntheticConfig(**_imp(tip_bias=20.0, tip_taste=0.0))))[clicked]
        == "tip"
    ).all()


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


def test_click_and_gift_labels_differ(big_imp):
    """Clicks follow popularity, tips follow taste: the click task is not the gift mirror."""
    cfg, inter = big_imp
    act = _actions(inter)
    click, gift = np.isin(act, ["click", "tip"]), act == "tip"
    assert (click >= gift).all()
    # the two tasks' labels differ on every click-only row: about a fifth of the rows
    assert 0.12 < (click != gift).mean() < 0.35, (click != gift).mean()
    u, a = _idx(inter["user_id"]), _idx(inter["author_id"])
    lat, auth = user_latents(cfg, 0, cfg.n_users), author_latents(cfg)
    taste = np.log(syn._taste_odds(lat, auth, u, a, 1.0))
    log_pop = np.log(auth.popularity[a])
    assert _auc(gift, taste) > _auc(click, taste) + 0.1
    assert _auc(click, log_pop) > _auc(gift, log_pop) + 0.02
    # among clicked authors, tips do not follow popularity at all (tip_taste only)
    assert abs(_auc(gift[click], log_pop[click]) - 0.5) < 0.03


def test_impressions_deterministic_and_chunk_independent(monkeypatch, imp):
    cfg, inter = imp
    assert _interactions(SyntheticConfig(**IMP, chunk_users=25)).equals(inter)
    assert _interactions(SyntheticConfig(**IMP, chunk_users=7)).equals(inter)
    monkeypatch.setattr(syn, "_MAX_CELLS", 3 * cfg.n_authors)  # sub-blocks of 3 users
    assert _interactions(SyntheticConfig(**IMP, chunk_users=1000)).equals(inter)
    assert not _interactions(SyntheticConfig(**{**IMP, "seed": 1})).equals(inter)
    # authors and users do not depend on the interaction model
    plain = SyntheticConfig(**SMALL)
    assert generate_authors(SyntheticConfig(**{**IMP, "frames_per_author": 1})).equals(
        generate_authors(plain)
    )
    assert _users(cfg).equals(_users(plain))


def test_impressions_off_changes_nothing():
    """Disabled impressions leave the data and the fingerprint (raw folder name) as before."""
    plain = SyntheticConfig(**SMALL)
    off = SyntheticConfig(**SMALL, impressions={"enabled": False, "shown_per_session": 3})
    assert off.fingerprint() == plain.fingerprint()
    assert _interactions(off).equals(_interactions(plain))
    on = SyntheticConfig(**SMALL, impressions={"enabled": True})
    other = SyntheticConfig(**SMALL, impressions={"enabled": True, "tip_bias": -1.0})
    assert len({plain.fingerprint(), on.fingerprint(), other.fingerprint()}) == 3


def test_history_reads_only_tips_point_in_time(imp):
    """The positive-history rule on impression data: as of each row's instant, the tips
    strictly before it; impressions and click-only rows never enter a history."""
    from mspa_features.snapshots.history import positive_histories

    _, inter = imp
    df = inter.to_pandas()
    us = inter["event_timestamp"].cast(pa.int64()).to_numpy()
    h = positive_histories(
        df["user_id"].to_numpy(), df["author_id"].to_numpy(), us,
        df["user_id"].to_numpy(), us, labels=df["label"].to_numpy(),
    )  # fmt: skip
    tip = (df["action"] == "tip").to_numpy()
    for r in range(len(df)):
        same = (df["user_id"].to_numpy() == df["user_id"].iat[r]) & (us < us[r])
        assert h.count[r] == int((same & tip).sum())
        assert set(h.authors_of(r)) == set(df["author_id"].to_numpy()[same & tip])


@pytest.mark.parametrize(
    ("impressions", "field"),
    [
        ({"enabled": "yes"}, "impressions.enabled"),
        ({"enabled": 1}, "impressions.enabled"),
        ({"sessions_per_user": 0.0}, "impressions.sessions_per_user"),
        ({"sessions_per_user": float("inf")}, "impressions.sessions_per_user"),
        ({"shown_per_session": 0}, "impressions.shown_per_session"),
        ({"shown_per_session": 101}, "impressions.shown_per_session"),
        ({"shown_per_session": True}, "impressions.shown_per_session"),
        ({"click_bias": float("nan")}, "impressions.click_bias"),
        ({"tip_taste": 21.0}, "impressions.tip_taste"),
        ({"click_popularity": False}, "impressions.click_popularity"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_impressions_config_rejects_bad_values(impressions, field):
    with pytest.raises(ValidationError) as exc:
        SyntheticConfig(impressions=impressions)
    assert field in str(exc.value)


def test_impressions_config_rejects_incompatible_settings():
    with pytest.raises(ValidationError, match="mean_tips_per_user=5.0.*remove mean_tips_per_user"):
        SyntheticConfig(mean_tips_per_user=5.0, impressions={"enabled": True})
    # the default written back by a saved config is not a declaration; off, it still applies
    SyntheticConfig(mean_tips_per_user=12.0, impressions={"enabled": True})
    SyntheticConfig(mean_tips_per_user=5.0, impressions={"enabled": False})
    with pytest.raises(ValidationError, match="shown_per_session.*n_authors=5"):
        SyntheticConfig(n_authors=5, impressions={"enabled": True, "shown_per_session": 6})


def test_impressions_from_a_run_config_yaml(tmp_path):
    from mspa_features.config import load_config
    from mspa_features.errors import ConfigError

    p = tmp_path / "run.yaml"
    p.write_text(
        "name: x\ndata: {source: synthetic, synthetic: {impressions: {enabled: true, "
        "shown_per_session: 4}}}\n"
    )
    cfg = load_config(p)
    assert (
        cfg.data.synthetic.impressions.enabled
        and cfg.data.synthetic.impressions.shown_per_session == 4
    )
    p.write_text("name: x\ndata: {source: synthetic, synthetic: {impressions: {showed: 4}}}\n")
    with pytest.raises(ConfigError, match=r"data\.synthetic\.impressions\.showed"):
        load_config(p)
