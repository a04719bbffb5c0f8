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

User text never goes into an MLflow filter string (runs are matched by name in Python, see
:mod:`ranker_hooks.ablation.tracking`), and no SQL of ours is built from it.
"""

from __future__ import annotations

import re
from pathlib import Path

from mspa_features.errors import InvalidValueError

MAX_FOLDER_NAME = 120
MAX_FEATURE_SET = 64
MAX_EXPERIMENT = 200
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


__all__ = [
    "check_feature_set_for_store",
    "experiment_name",
    "feature_set_name",
    "folder_name",
    "sqlite_uri",
]
