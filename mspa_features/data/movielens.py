"""MovieLens-100K, obtained from the ``recbole==1.2.1`` wheel and converted to the contracts.

The data's license forbids redistribution, so it is never committed: ``fetch`` runs
``pip download --no-deps recbole==1.2.1`` and unzips only ``dataset_example/ml-100k``.

Mapping to the live-stream contracts: movies are the "authors" (profile text from title, year
and genres; an author's ``event_timestamp`` is its first rating, the moment it enters the
system), ratings are interactions (``action="rate"``, ``value`` = rating, ``label`` = rating >=
threshold), users keep their demographics with the zip code mapped to a US region.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mspa_features.data import timestamps as ts
from mspa_features.data.contracts import AUTHORS, INTERACTIONS, USERS
from mspa_features.data.validation import ValidationResult, validate
from mspa_features.errors import DataFetchError, SchemaError
from mspa_features.io import read_delimited

RECBOLE_SPEC = "recbole==1.2.1"
_MEMBER_DIR = "recbole/dataset_example/ml-100k/"
FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")

# First digit of a US ZIP code -> USPS national area.
ZIP_REGIONS = {
    "0": "northeast",  # CT MA ME NH NJ PR RI VT
    "1": "mid-atlantic",  # DE NY PA
    "2": "south-atlantic",  # DC MD NC SC VA WV
    "3": "southeast",  # AL FL GA MS TN
    "4": "great-lakes",  # IN KY MI OH
    "5": "upper-midwest",  # IA MN MT ND SD WI
    "6": "central",  # IL KS MO NE
    "7": "south-central",  # AR LA OK TX
    "8": "mountain",  # AZ CO ID NM NV UT WY
    "9": "pacific",  # AK CA HI OR WA
}


def zip_to_region(zip_code: str | None) -> str | None:
    """Map a ZIP code to a US region; letters first (Canadian postal codes) map to "non-us"."""
    if not zip_code or not zip_code.strip():
        return None
    z = zip_code.strip()
    # Only ASCII digits are ZIP codes (str.isdigit() is also true for other scripts' digits).
    return ZIP_REGIONS.get(z[0], "non-us")


def fetch(raw_dir: str | Path, *, force: bool = False) -> Path:
    """Make sure the ML-100K files are in ``raw_dir/ml-100k``; download them if missing.

    Idempotent: existing files are reused unless ``force``.

    Raises:
        DataFetchError: pip could not download the wheel or the wheel lacks the files.
    """
    target = Path(raw_dir) / "ml-100k"
    if not force and all((target / f).is_file() for f in FILES):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", RECBOLE_SPEC, "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = list(Path(tmp).glob("recbole-*.whl"))
        if proc.returncode != 0 or not wheels:
            tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
            raise DataFetchError(f"could not download {RECBOLE_SPEC} with pip: {tail}")
        with zipfile.ZipFile(wheels[0]) as zf:
            for f in FILES:
                try:
                    data = zf.read(_MEMBER_DIR + f)
                except KeyError as e:
                    raise DataFetchError(f"{wheels[0].name} has no {_MEMBER_DIR + f}") from e
                tmp_file = target / f".{f}.tmp"
                tmp_file.write_bytes(data)
                tmp_file.replace(target / f)
    return target


def read_atomic_file(path: Path, expected: tuple[str, ...]) -> pd.DataFrame:
    """Read a RecBole atomic file (TSV, headers ``name:type``) keeping every value as text.

    Raises:
        SchemaError: the file is unreadable or an expected column is missing.
    """
    try:
        # a line with too many fields quarantines its row (df.attrs["row_reasons"])
        df = read_delimited(path, "\t", quoting=3)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise SchemaError(path, f"not a readable RecBole atomic file: {e}") from e
    df.columns = [c.split(":")[0] for c in df.columns]
    for col in expected:
        if col not in df.columns:
            raise SchemaError(
                path, f"missing column (file has: {', '.join(df.columns)})", column=col
            )
    return df


def _epoch_to_utc(s: pd.Series, col: str) -> tuple[pd.Series, dict[int, list[str]]]:
    """Unix seconds -> UTC timestamps, one cell at a time.

    A cell that is not a usable epoch (text, NaN/inf, milliseconds, beyond the supported range)
    becomes null with a reason naming the value for its row: one bad cell quarantines one row,
    never the whole file.
    """
    out: list[int | None] = []
    reasons: dict[int, list[str]] = {}
    for i, v in enumerate(s.tolist()):
        if v is None or (isinstance(v, str) and not v.strip()):
            out.append(None)  # reported by validation as a missing required value
            continue
        us, problem = ts.epoch_seconds_us(v)
        if problem is not None:
            shown = v if len(str(v)) <= 60 else str(v)[:60] + "..."
            reasons[i] = [ts.reason(col, str(shown), problem)]
        out.append(us)
    return ts.us_series(out, s.index), reasons


@dataclass
class MovieLensData:
    """Validation results per contract (accepted tables and quarantine)."""

    users: ValidationResult
    authors: ValidationResult
    interactions: ValidationResult

    def results(self) -> list[ValidationResult]:
        return [self.users, self.authors, self.interactions]


def convert(ml_dir: str | Path, *, positive_threshold: float = 4.0) -> MovieLensData:
    """Convert the raw ML-100K files to the users/authors/interactions contracts.

    Users and authors are validated first; interactions then reference only accepted ids, so an
    interaction with an unknown user or movie is quarantined, not dropped.
    """
    d = Path(ml_dir)
    inter = read_atomic_file(d / "ml-100k.inter", ("user_id", "item_id", "rating", "timestamp"))
    items = read_atomic_file(
        d / "ml-100k.item", ("item_id", "movie_title", "release_year", "class")
    )
    users_raw = read_atomic_file(
        d / "ml-100k.user", ("user_id", "age", "gender", "occupation", "zip_code")
    )

    users_df = pd.DataFrame(
        {
            "user_id": users_raw["user_id"],
            "age": users_raw["age"],
            "gender": users_raw["gender"],
            "occupation": users_raw["occupation"],
            "region": users_raw["zip_code"].map(zip_to_region),
        }
    )
    users = validate(
        users_df,
        USERS,
        source=str(d / "ml-100k.user"),
        row_reasons=users_raw.attrs.get("row_reasons"),
    )

    inter_ts, ts_reasons = _epoch_to_utc(inter["timestamp"], "event_timestamp")
    # A movie enters the system at its first valid rating; one without any starts with the data.
    valid_ts = inter_ts.notna()
    first_seen = inter_ts[valid_ts].groupby(inter["item_id"][valid_ts]).min()
    start = first_seen.min() if len(first_seen) else pd.Timestamp(0, unit="s", tz="UTC")
    item_first = items["item_id"].map(first_seen).fillna(start).astype("datetime64[us, UTC]")

    def profile(title: str | None, year: str | None, genre_text: str | None) -> str | None:
        if not title:
            return None
        year = f" ({year})" if year else ""
        genres = (genre_text or "").split()
        return f"{title}{year}. Genres: {', '.join(genres) or 'unknown'}."

    authors_df = pd.DataFrame(
        {
            "author_id": items["item_id"],
            "event_timestamp": item_first,
            "profile_text": [
                profile(t, y, g)
                for t, y, g in zip(
                    items["movie_title"], items["release_year"], items["class"], strict=True
                )
            ],
            "attributes": [
                {"genres": "|".join((g or "").split()), "release_year": y or ""}
                for g, y in zip(items["class"], items["release_year"], strict=True)
            ],
        }
    )
    authors = validate(
        authors_df,
        AUTHORS,
        source=str(d / "ml-100k.item"),
        row_reasons=items.attrs.get("row_reasons"),
    )

    rating = pd.to_numeric(inter["rating"], errors="coerce")
    inter_df = pd.DataFrame(
        {
            "user_id": inter["user_id"],
            "author_id": inter["item_id"],
            "event_timestamp": inter_ts,
            "action": "rate",
            # unparseable ratings stay as text so the quarantine reason shows them
            "value": inter["rating"].where(rating.isna(), rating),
            "label": (rating >= positive_threshold).astype("Int8").where(rating.notna(), None),
        }
    )
    known = {
        "users": set(users.accepted.column("user_id").to_pylist()),
        "authors": set(authors.accepted.column("author_id").to_pylist()),
    }
    interactions = validate(
        inter_df,
        INTERACTIONS,
        source=str(d / "ml-100k.inter"),
        known_ids=known,
        row_reasons={
            i: inter.attrs.get("row_reasons", {}).get(i, []) + ts_reasons.get(i, [])
            for i in set(ts_reasons) | set(inter.attrs.get("row_reasons", {}))
        },
        raw_records=inter,
    )
    return MovieLensData(users=users, authors=authors, interactions=interactions)
