"""Feast repo folders: the feature-set file beside ``feature_store.yaml``, and a run's store.

A Feast feature repo is a folder holding ``feature_store.yaml`` and the Python files that declare
its objects; ``feast plan`` / ``feast apply`` there compare the declared objects with the registry
and apply the difference, deleting registered objects the files no longer declare (Feast docs,
"Feature repository" and "feast apply": https://docs.feast.dev/reference/feature-repository).
Ours are plain folders of that kind::

    feature_repo/                      the definitions (tracked)
      feature_store.yaml               duckdb offline, SQLite online, registry data/registry.db
      feature_sets.yaml                what to declare: TTL policy, feature sets, leak/aligned sets
      feature_definitions.py           the entities, then the objects feature_sets.yaml lists
      stores/{redis,spark,milvus}.yaml store variants (``feast -f stores/redis.yaml ...``)

    <workspace>/feast/<run>/<kind>/    a run's store (written by ``mspa register`` / ``mspa lis``)
      feature_store.yaml               the store mspa opens: registry and online store here
      feature_sets.yaml                every set registered in this registry, leak sets included
      feature_definitions.py           copy of feature_repo's (so are .feastignore)
      registry.db, online_store.db, materialized_at.json

So ``mspa register``, the main job and the plain Feast CLI read one registry per store and agree
on what it holds: ``cd <workspace>/feast/movielens/sqlite && feast plan`` shows no change after
a run, never the deletion of a set mspa registered.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field

from mspa_features.config import _Strict, load_yaml_model
from mspa_features.errors import ConfigError

FEATURE_SETS_FILE = "feature_sets.yaml"
STORE_FILE = "feature_store.yaml"
DEFINITIONS_FILE = "feature_definitions.py"
#: Feast's own variable for the feature_store.yaml to use (``feast -f`` sets no variable).
FEAST_YAML_ENV = "FEAST_FS_YAML_FILE_PATH"


class FeatureSetEntry(_Strict):
    """One MSPA feature set: a backfill folder with ``preferences/`` and ``author_profiles/``."""

    path: Path = Field(description="backfill folder; relative to the file's folder")
    model_version: str | None = Field(
        None, description="model_version tag (default: the values found in the data)"
    )
    leaked: bool = Field(False, description="built from leaked (future) data: LIS only")


class FolderEntry(_Strict):
    """A leak set or an aligned set: a folder holding ``rows/`` and its JSON manifest."""

    path: Path = Field(description="set folder; relative to the file's folder")


class FeatureSetsFile(_Strict):
    """``feature_sets.yaml``: what the repo's ``feature_definitions.py`` declares.

    Attributes:
        ttl_days: the dataset's TTL policy, every view's Feast ``ttl``. A snapshot taken at S is
            visible at t iff ``S <= t <= S + ttl`` (0: never expires). Feast also starts a
            view's first ``materialize-incremental`` at now - ttl (a TTL of 0 at now - 52
            weeks), so a historical dataset (MovieLens, 1997-98) needs a TTL reaching back to
            its first snapshot, or that command loads nothing.
        emb_dim: embedding width (``vector_length`` of the indexed embeddings).
        feature_sets: feature set name -> backfill folder.
        leak_sets: leak set name -> folder (``leak.json``), declared as ``leak__<name>``.
        aligned_sets: composer feature set -> aligned set folder (``aligned.json``).
        compact_sets: compact set name -> folder (``compact.json``; ``mspa compact``).
    """

    ttl_days: float = Field(365, ge=0, description="Feast TTL of every view, days (0: never)")
    emb_dim: int = Field(384, ge=1, description="embedding width")
    feature_sets: dict[str, FeatureSetEntry] = Field(default_factory=dict)
    leak_sets: dict[str, FolderEntry] = Field(default_factory=dict)
    aligned_sets: dict[str, FolderEntry] = Field(default_factory=dict)
    compact_sets: dict[str, FolderEntry] = Field(default_factory=dict)

    @property
    def ttl(self) -> timedelta:
        return timedelta(days=self.ttl_days)


def ttl_days(ttl: timedelta) -> float:
    """``ttl`` in days as the file writes it (whole days as an int)."""
    days = ttl / timedelta(days=1)
    return int(days) if days == int(days) else days


def load_feature_sets(path: str | Path) -> FeatureSetsFile:
    """Read and validate a feature-set file; relative paths resolve against its folder.

    Raises:
        ConfigError: the file is missing, not YAML, or a field is invalid (each named).
    """
    path = Path(path)
    fsf = load_yaml_model(path, FeatureSetsFile)
    here = path.parent.resolve()
    for entries in (fsf.feature_sets, fsf.leak_sets, fsf.aligned_sets, fsf.compact_sets):
        for entry in entries.values():
            entry.path = (here / entry.path).resolve()
    return fsf


_HEADER = """\
# Feature sets of this Feast repo, read by feature_definitions.py (`feast plan` / `feast apply`).
# Written by mspa (register, lis): every set registered in this folder's registry is listed, so
# the plain Feast CLI declares what mspa registered and never deletes it.
"""


def save_feature_sets(path: str | Path, fsf: FeatureSetsFile, *, header: str = _HEADER) -> Path:
    """Write ``fsf`` to ``path`` (atomically), folders relative to the file's folder."""
    path = Path(path)
    here = path.parent.resolve()

    def rel(p: Path) -> str:
        return os.path.relpath(Path(p).resolve(), here)

    raw: dict[str, Any] = {"ttl_days": ttl_days(fsf.ttl), "emb_dim": fsf.emb_dim}
    raw["feature_sets"] = {
        name: {
            "path": rel(e.path),
            **({"model_version": e.model_version} if e.model_version else {}),
            **({"leaked": True} if e.leaked else {}),
        }
        for name, e in sorted(fsf.feature_sets.items())
    }
    raw["leak_sets"] = {n: {"path": rel(e.path)} for n, e in sorted(fsf.leak_sets.items())}
    raw["aligned_sets"] = {n: {"path": rel(e.path)} for n, e in sorted(fsf.aligned_sets.items())}
    if fsf.compact_sets:
        raw["compact_sets"] = {
            n: {"path": rel(e.path)} for n, e in sorted(fsf.compact_sets.items())
        }
    _write_atomic(path, header + yaml.safe_dump(raw, sort_keys=False))
    return path


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def offline_kind(repo_dir: str | Path) -> str:
    """The offline store type of the ``feature_store.yaml`` Feast uses for ``repo_dir``:
    ``$FEAST_FS_YAML_FILE_PATH`` when set (Feast's own variable), else the folder's own file.
    ``duckdb`` when neither says (FileSources work with it and with ``file``)."""
    env = os.environ.get(FEAST_YAML_ENV)
    path = Path(env) if env else Path(repo_dir) / STORE_FILE
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return "duckdb"
    offline = raw.get("offline_store", "duckdb") if isinstance(raw, dict) else "duckdb"
    return str(offline if isinstance(offline, str) else offline.get("type", "duckdb"))


def source_kind(offline: str) -> Literal["file", "spark"]:
    """Which data source class the offline store reads: SparkSource for ``spark``, else FileSource."""
    return "spark" if offline == "spark" else "file"


def feature_set_objects(fsf: FeatureSetsFile, *, source: Literal["file", "spark"]) -> list[Any]:
    """The entities and the MSPA feature sets' objects ``fsf`` declares
    (:func:`mspa_features.serving.definitions.build_definitions`)."""
    from mspa_features.serving.definitions import build_definitions

    return build_definitions(
        {n: e.path for n, e in fsf.feature_sets.items()},
        emb_dim=fsf.emb_dim,
        ttl=fsf.ttl,
        leaked={n: True for n, e in fsf.feature_sets.items() if e.leaked},
        model_versions={n: e.model_version for n, e in fsf.feature_sets.items() if e.model_version},
        source_kind=source,
    )


def bind(namespace: dict[str, Any], objects: list[Any]) -> list[str]:
    """Bind each Feast object to a module-level name in ``namespace``.

    ``feast apply`` collects the Feast objects bound to module-level names of the repo's files
    (``feast.repo_operations.parse_repo``). Objects of one type and name (the entities every
    builder returns) are bound once; two *different* objects of one type and name raise.

    Returns:
        The names bound.

    Raises:
        ConfigError: two different objects share a type and a name.
    """
    import re

    seen: dict[tuple[str, str], Any] = {}
    names: list[str] = []
    for obj in objects:
        key = (type(obj).__name__, obj.name)
        if key in seen:
            if seen[key] != obj:
                raise ConfigError(FEATURE_SETS_FILE, [f"two different {key[0]}s named {key[1]!r}"])
            continue
        seen[key] = obj
        base = re.sub(r"\W", "_", f"{key[0].lower()}__{obj.name}")
        name, i = base, 1
        while name in namespace:
            name, i = f"{base}_{i}", i + 1
        namespace[name] = obj
        names.append(name)
    return names


# --------------------------------------------------------------------------- a run's store


def write_store_repo(
    store_dir: Path, store_yaml: Mapping[str, Any], *, repo_path: Path, source_yaml: Path
) -> Path:
    """Make ``store_dir`` a Feast repo the plain CLI can run: ``feature_store.yaml`` (the store
    mspa opens), and copies of ``repo_path``'s ``feature_definitions.py`` and ``.feastignore``.

    Returns:
        The written ``feature_store.yaml``.
    """
    store_dir = Path(store_dir)
    header = (
        f"# Generated by mspa from {source_yaml.name} of {repo_path.resolve().name}/: the run's\n"
        "# store. `feast plan` / `feast apply` / `feast materialize-incremental` run here.\n"
    )
    out = store_dir / STORE_FILE
    text = header + yaml.safe_dump(dict(store_yaml), sort_keys=False)
    if not out.is_file() or out.read_text(encoding="utf-8") != text:
        _write_atomic(out, text)
    for name in (DEFINITIONS_FILE, ".feastignore"):
        src = Path(repo_path) / name
        if src.is_file():
            dst = store_dir / name
            if not dst.is_file() or dst.read_bytes() != src.read_bytes():
                tmp = dst.with_name(f".{name}.tmp")
                shutil.copyfile(src, tmp)
                os.replace(tmp, dst)
    return out


def update_feature_sets(
    store_dir: Path,
    change: Callable[[FeatureSetsFile], None],
    *,
    ttl: timedelta | None = None,
    default_ttl: timedelta | None = None,
) -> FeatureSetsFile:
    """Read ``store_dir/feature_sets.yaml`` (empty when missing), apply ``change``, write it back.

    Args:
        ttl: the dataset's TTL policy to record (None keeps the file's).
        default_ttl: the TTL of a file written for the first time (when ``ttl`` is None).
    """
    path = Path(store_dir) / FEATURE_SETS_FILE
    fsf = load_feature_sets(path) if path.is_file() else FeatureSetsFile()
    if ttl is None and default_ttl is not None and not path.is_file():
        ttl = default_ttl
    if ttl is not None:
        fsf.ttl_days = ttl_days(ttl)
    change(fsf)
    save_feature_sets(path, fsf)
    return fsf


__all__ = [
    "FEATURE_SETS_FILE",
    "FeatureSetEntry",
    "FeatureSetsFile",
    "FolderEntry",
    "bind",
    "feature_set_objects",
    "load_feature_sets",
    "offline_kind",
    "save_feature_sets",
    "source_kind",
    "ttl_days",
    "update_feature_sets",
    "write_store_repo",
]
