"""A small folder of "your own data" in a layout of its own: a podcast catalogue.

``mspa data example FOLDER`` writes it (``configs/own_data_example.yaml`` reads it): 30
listeners, 40 shows and a few hundred plays over three months, in names that are not the
contracts' (``listener_id``, ``show_id``, ``played_at`` in epoch milliseconds,
``description``), plus a few rows that are wrong on purpose, so the quarantine has something to
say. Nothing here is real data; it is generated from a seed.

Listeners have a favourite category; a play of a show in it is completed more often (the
positive label), so preferences carry signal the ranker can use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

CATEGORIES = {
    "true-crime": ("cold cases", "courtroom drama", "forensic science", "unsolved mysteries"),
    "technology": ("startups", "programming", "hardware reviews", "AI research"),
    "comedy": ("improv", "sketches", "stand-up interviews", "sitcom rewatch"),
    "history": ("ancient Rome", "world wars", "medieval Europe", "space race"),
    "science": ("astronomy", "biology", "climate", "physics explained"),
}
REGIONS = ("north", "south", "east", "west")
START = datetime(2026, 5, 4, tzinfo=UTC)  # a Monday; plays span 13 weeks from here
DAYS = 91

#: The rows written wrong on purpose: (contract, row number in the file, reason it gets).
BAD_ROWS = (
    ("users", 30, "duplicate key (user_id=L001) first seen at row 0"),
    ("authors", 40, "profile_text: missing required value"),
    ("interactions", -5, "user_id: unknown user 'L999'"),
    ("interactions", -4, "event_timestamp: unparseable timestamp 'last tuesday'"),
    ("interactions", -3, "label: must be one of [0, 1], got 2"),
    ("interactions", -2, "value: not finite (nan)"),
    ("interactions", -1, "author_id: unknown author 'S999'"),
)


@dataclass
class ExampleFolder:
    """What was written: the folder, rows per file, and the rows meant for the quarantine."""

    path: Path
    rows: dict[str, int]
    bad_rows: dict[str, dict[int, str]] = field(default_factory=dict)


def write_example_folder(
    out: str | Path, *, users: int = 30, shows: int = 40, plays_per_user: int = 14, seed: int = 0
) -> ExampleFolder:
    """Write ``users.csv``, ``authors.csv`` and ``interactions.csv`` into ``out``.

    Args:
        out: the folder (created).
        users: listeners (ids ``L001``...).
        shows: podcast shows, the authors (ids ``S001``...).
        plays_per_user: mean plays per listener over the 13 weeks.
        seed: everything is drawn from it.
    """
    rng = np.random.default_rng(seed)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    cats = list(CATEGORIES)

    user_ids = [f"L{i + 1:03d}" for i in range(users)]
    favourite = {u: cats[int(rng.integers(len(cats)))] for u in user_ids}
    users_df = pd.DataFrame(
        {
            "user_id": user_ids,
            "age": [int(x) for x in rng.integers(18, 70, size=users)],
            "region": [REGIONS[int(i)] for i in rng.integers(len(REGIONS), size=users)],
        }
    )
    # A listener exported twice: the second row is a duplicate key.
    users_df = pd.concat([users_df, users_df.iloc[[0]]], ignore_index=True)

    show_ids = [f"S{i + 1:03d}" for i in range(shows)]
    show_cat = {s: cats[i % len(cats)] for i, s in enumerate(show_ids)}
    rows = []
    for i, s in enumerate(show_ids):
        cat = show_cat[s]
        topic = CATEGORIES[cat][int(rng.integers(4))]
        rows.append(
            {
                "show_id": s,
                "first_published": (START - timedelta(days=int(rng.integers(30, 400)))).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
                "description": f"A {cat.replace('-', ' ')} podcast about {topic}, episode {i + 1}",
                "attributes": json.dumps({"category": cat, "topic": topic}),
            }
        )
    # A show exported without its description.
    rows.append(
        {
            "show_id": "S041",
            "first_published": START.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "description": "",
            "attributes": json.dumps({"category": "comedy"}),
        }
    )
    authors_df = pd.DataFrame(rows)

    plays = []
    for u in user_ids:
        liked = [s for s in show_ids if show_cat[s] == favourite[u]]
        for _ in range(int(rng.poisson(plays_per_user)) + 3):
            fav = rng.random() < 0.6
            s = liked[int(rng.integers(len(liked)))] if fav else show_ids[int(rng.integers(shows))]
            minutes = float(np.round(rng.uniform(1, 60), 1))
            done = rng.random() < (0.75 if show_cat[s] == favourite[u] else 0.2)
            at = START + timedelta(seconds=int(rng.integers(DAYS * 86400)))
            plays.append(
                {
                    "listener_id": u,
                    "show_id": s,
                    "played_at": int(at.timestamp() * 1000) + int(rng.integers(1000)),
                    "action": "play",
                    "minutes": minutes,
                    "completed": int(done),
                }
            )
    plays.sort(key=lambda r: (r["played_at"], r["listener_id"]))
    ok_ms = int((START + timedelta(days=10)).timestamp() * 1000)
    plays += [
        {"listener_id": "L999", "show_id": "S001", "played_at": ok_ms, "action": "play",
         "minutes": 5.0, "completed": 1},
        {"listener_id": "L002", "show_id": "S002", "played_at": "last tuesday", "action": "play",
         "minutes": 5.0, "completed": 1},
        {"listener_id": "L003", "show_id": "S003", "played_at": ok_ms + 1, "action": "play",
         "minutes": 5.0, "completed": 2},
        {"listener_id": "L004", "show_id": "S004", "played_at": ok_ms + 2, "action": "play",
         "minutes": "nan", "completed": 1},
        {"listener_id": "L005", "show_id": "S999", "played_at": ok_ms + 3, "action": "play",
         "minutes": 5.0, "completed": 0},
    ]  # fmt: skip
    plays_df = pd.DataFrame(plays)

    users_df.to_csv(folder / "users.csv", index=False)
    authors_df.to_csv(folder / "authors.csv", index=False)
    plays_df.to_csv(folder / "interactions.csv", index=False)
    n = {"users": len(users_df), "authors": len(authors_df), "interactions": len(plays_df)}
    bad: dict[str, dict[int, str]] = {}
    for contract, row, reason in BAD_ROWS:
        bad.setdefault(contract, {})[row % n[contract]] = reason
    return ExampleFolder(path=folder, rows=n, bad_rows=bad)


#: The run config's ``data:`` section for this folder (configs/own_data_example.yaml).
EXAMPLE_DATA_CONFIG = {
    "source": "files",
    "columns": {
        "authors": {
            "author_id": "show_id",
            "event_timestamp": "first_published",
            "profile_text": "description",
        },
        "interactions": {
            "user_id": "listener_id",
            "author_id": "show_id",
            "event_timestamp": "played_at",
            "value": "minutes",
            "label": "completed",
        },
    },
    "timestamps": {"interactions": {"unit": "ms"}},
}

__all__ = ["BAD_ROWS", "EXAMPLE_DATA_CONFIG", "ExampleFolder", "write_example_folder"]
