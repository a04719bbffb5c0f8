"""The rules for names a user gives that end up inside paths, object names, URIs or queries.

One place per rule, used by the config models (so a bad name fails at load, naming the field)
and by the functions that build the strings:

* :func:`folder_name`: run (dataset) and ablation names; each becomes one folder name
  (``features/<run>/``, ``results/ablation/<ablation>-<time>/``) and an MLflow run name or tag.
  Any printable text without a path separator: ``bob's ais, v2`` is fine.
* :func:`feature_set_name`: a feature set becomes part of every Feast object it contributes
  (``user_preferences__<set>``), hence of SQLite table names, Spark SQL view names and Milvus
  collection names: letters, digits, ``_``, ``-`` and ``.``, never ``__`` (the separator).
  :func:`check_feature_set_for_store` narrows that to what the Spark offline store and Milvus
  accept.
* :func:`experiment_name`: an MLflow experiment; stored as text, never put in a filter.
* :func:`sqlite_uri`: a filesystem path as an ``sqlite:///`` URI (SQLAlchemy reads ``?`` as
  the start of a query and ``%`` as an escape in it).
* :func:`row_model_version`: the ``model_version`` a feature row carries, hence every online
  entity's hash in Redis: at most :data:`MAX_MODEL_VERSION` bytes; a longer one (a long model
  path or hub id, a long encoder name) keeps its head and gains a digest of the whole
  (:func:`model_version_digest`), and :func:`model_version_matches` finds it by either.

User text never goes into an MLflow filter string (runs are matched by name in Python, see
:mod:`ranker_hooks.ablation.tracking`), and no SQL of ours is built from it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from mspa_features.errors import InvalidValueError

MAX_FOLDER_NAME = 120
MAX_FEATURE_SET = 64
MAX_EXPERIMENT = 200
#: The longest ``model_version`` (UTF-8 bytes) written into a feature row. Feast's Redis store
#: keeps each feature value of an entity as a hash field holding its serialized ``ValueProto``
#: (a string costs 2 bytes more: field tag and length), and Redis keeps a hash as a compact
#: listpack only while every value is at most ``hash-max-listpack-value`` bytes (64 by
#: default); a longer value turns the whole hash into a hashtable, about twice the memory for
#: a compact set's handful of small fields. 62 + 2 = 64.
MAX_MODEL_VERSION = 62
#: Hex digits of sha256 in :func:`model_version_digest` (48 bits: a collision among a run's
#: few model versions is out of the question).
DIGEST_HEX = 12
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FEATURE_SET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SQL_IDENTIFIER = re.compile(r"[A-Za-z0-9_]+")


def folder_name(value: str, what: str = "name") -> str:
    """``value`` if it can be one folder name (and an MLflow run name), else ValueError.

    Raises:
        ValueError: empty, surrounded by spaces, ``.``/``..``, a path separator or a control
            character, or longer than :data:`MAX_FOLDER_NAME`; the message names the value.
    """
    problem = None
    if not value or not value.strip():
        problem = "is empty"
    elif value != value.strip():
        problem = "starts or ends with a space"
    elif value in (".", ".."):
        problem = "is a relative folder reference"
    elif "/" in value or "\\" in value:
        problem = "holds a path separator ('/' or '\\')"
    elif _CONTROL.search(value):
        problem = "holds a control character"
    elif len(value) > MAX_FOLDER_NAME:
        problem = f"is longer than {MAX_FOLDER_NAME} characters"
    if problem:
        raise InvalidValueError(
            what, value, "plain text that can name a folder", hint=f"it {problem}"
        )
    return value


def feature_set_name(value: str, what: str = "feature set") -> str:
    """``value`` if it can name a feature set (part of Feast object names), else ValueError.

    Raises:
        ValueError: not letters, digits, ``_``, ``-``, ``.`` (starting with a letter or digit),
            holds ``__``, or longer than :data:`MAX_FEATURE_SET`; the message names the value.
    """
    if (
        not isinstance(value, str)
        or not _FEATURE_SET.fullmatch(value)
        or "__" in value
        or len(value) > MAX_FEATURE_SET
    ):
        raise InvalidValueError(
            what,
            value,
            "a name Feast objects can hold",
            hint=f"use letters, digits, '_', '-' or '.' (starting with a letter or digit, at "
            f"most {MAX_FEATURE_SET}), without '__' (the name separator)",
        )
    return value


def check_feature_set_for_store(value: str, *, offline: str, online: str) -> str | None:
    """Why ``value`` cannot be used with these store kinds (None: it can).

    Feast's Spark offline store writes feature view names into Spark SQL unquoted and Milvus
    collection names allow letters, digits and ``_`` only: there, ``-`` and ``.`` break.
    """
    strict = [k for k in (offline, online) if k in ("spark", "milvus")]
    if strict and not _SQL_IDENTIFIER.fullmatch(value):
        return (
            f"feature set {value!r} cannot be used with the {' and '.join(strict)} store: its "
            "names must be letters, digits and '_' only (rename the feature set, e.g. "
            f"{re.sub(r'[^A-Za-z0-9_]', '_', value)!r})"
        )
    return None


def experiment_name(value: str, what: str = "experiment") -> str:
    """``value`` if it can name an MLflow experiment, else ValueError (empty, control
    characters, longer than :data:`MAX_EXPERIMENT`)."""
    if not value or not value.strip() or _CONTROL.search(value) or len(value) > MAX_EXPERIMENT:
        raise InvalidValueError(
            what, value, f"non-empty printable text of at most {MAX_EXPERIMENT} characters"
        )
    return value


def sqlite_uri(path: str | Path) -> str:
    """``sqlite:///<absolute path>``, with the two characters SQLAlchemy would misread escaped.

    A ``?`` would start URL query parameters (the database lands in a truncated path) and a
    ``%`` is decoded as an escape; every other character (spaces, quotes, ``#``) is left as
    is so existing URIs do not change.
    """
    p = str(Path(path).resolve())
    return "sqlite:///" + p.replace("%", "%25").replace("?", "%3F")


def model_version_digest(version: str) -> str:
    """The first :data:`DIGEST_HEX` hex digits of ``sha256(version)`` (UTF-8)."""
    return hashlib.sha256(version.encode("utf-8")).hexdigest()[:DIGEST_HEX]


def row_model_version(version: str) -> str:
    """``version`` as a feature row carries it: unchanged when it fits :data:`MAX_MODEL_VERSION`
    bytes, else its head (cut at a character boundary) + ``#`` + :func:`model_version_digest` of
    the whole, :data:`MAX_MODEL_VERSION` bytes at most. Idempotent.

    ``transformers:smollm2:<fp>|all-minilm-l6-v2:mean:<fp>`` (68 bytes) becomes
    ``transformers:smollm2:<fp>|all-minilm-l6-v#<12 hex>``. The full version is what the
    backend and encoder report (their ``model_version``, the composer cache's key), what the
    run config names, and what a compact set's manifest keeps (``source_model_versions``).
    """
    raw = version.encode("utf-8")
    if len(raw) <= MAX_MODEL_VERSION:
        return version
    head = raw[: MAX_MODEL_VERSION - 1 - DIGEST_HEX].decode("utf-8", errors="ignore")
    return f"{head}#{model_version_digest(version)}"


def model_version_matches(wanted: str, served: str) -> bool:
    """Whether a served row ``model_version`` is (or derives from) ``wanted``: it contains
    ``wanted`` as text, or its digest (a version :func:`row_model_version` shortened, or the
    source version of a compact set's row, which carries the digest of the version it was
    reduced from). A part of a long version that fell into its digest no longer matches."""
    return wanted in served or (bool(wanted) and model_version_digest(wanted) in served)


__all__ = [
    "MAX_MODEL_VERSION",
    "check_feature_set_for_store",
    "experiment_name",
    "feature_set_name",
    "folder_name",
    "model_version_digest",
    "model_version_matches",
    "row_model_version",
    "sqlite_uri",
]
