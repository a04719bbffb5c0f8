"""The one errors module: every exception the library raises derives from :class:`MspaError`.

Each class builds its message from the values that matter (the field, the value it got, the
valid choices, the record). Where a class replaces a built-in error the library used to raise
(``ValueError``, ``TypeError``, ``RuntimeError``), it also derives from that built-in, so
``except ValueError`` in callers (and pydantic, which turns a ``ValueError`` raised in a
validator into a ``ValidationError``) keeps working. ``tests/unit/test_code_rules.py`` fails
when the library raises a bare built-in again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path


class MspaError(Exception):
    """Root of all mspa-features errors."""


def _where(record: object) -> str:
    return "" if record is None else f"{record}: "


def _located(who: str, message: str, record: object, field: str | None) -> str:
    """``<who>: record <r> field '<f>' <message>`` (the parts given): what went wrong, where."""
    where = "".join(
        [
            f" record {record}" if record is not None else "",
            f" field {field!r}" if field is not None else "",
        ]
    )
    return f"{who}:{where} {message}" if where else f"{who}: {message}"


class InvalidValueError(MspaError, ValueError):
    """A value outside its domain: names the field, the value it got and what is valid.

    ``record`` (optional) says where: a row, a conversation, a group.
    """

    def __init__(
        self,
        field: str,
        value: object,
        expected: str,
        *,
        record: object = None,
        hint: str | None = None,
    ):
        self.field, self.value, self.expected, self.record = field, value, expected, record
        msg = f"{_where(record)}{field} must be {expected}, got {value!r}"
        super().__init__(msg + (f"; {hint}" if hint else ""))


class InvalidTypeError(MspaError, TypeError):
    """A value of the wrong type: names the field, the type expected and the type it got."""

    def __init__(
        self,
        field: str,
        value: object,
        expected: str,
        *,
        record: object = None,
        hint: str | None = None,
    ):
        self.field, self.value, self.expected, self.record = field, value, expected, record
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        msg = f"{_where(record)}{field} must be {expected}, got {type(value).__name__} {shown}"
        super().__init__(msg + (f"; {hint}" if hint else ""))


class UnknownNameError(MspaError, ValueError):
    """A name that is not one of the registered ones; lists the valid choices."""

    def __init__(
        self, kind: str, name: object, valid: Iterable[object], *, hint: str | None = None
    ):
        self.kind, self.name, self.valid = kind, name, [str(v) for v in valid]
        msg = f"unknown {kind} {name!r}; valid: {', '.join(self.valid)}"
        super().__init__(msg + (f" ({hint})" if hint else ""))


class InputMismatchError(MspaError, ValueError):
    """Inputs that must agree (lengths, shapes, counts) do not; names each with what it has."""

    def __init__(
        self,
        requirement: str,
        inputs: Mapping[str, object],
        *,
        record: object = None,
        hint: str | None = None,
    ):
        self.requirement, self.inputs, self.record = requirement, dict(inputs), record
        got = ", ".join(f"{k} {v}" for k, v in self.inputs.items())
        msg = f"{_where(record)}{' and '.join(self.inputs)} {requirement}, got {got}"
        super().__init__(msg + (f"; {hint}" if hint else ""))


class IncompatibleSettingsError(MspaError, ValueError):
    """Settings that are valid alone but not together; names each setting and its value."""

    def __init__(self, settings: Mapping[str, object], reason: str, *, fix: str | None = None):
        self.settings, self.reason = dict(settings), reason
        got = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        super().__init__(f"{got}: {reason}" + (f"; {fix}" if fix else ""))


class DataError(MspaError, ValueError):
    """Rows or arrays a computation cannot use (NaN, labels that are not 0/1, a duplicate id,
    a missing column); names the input, the record and the field where known."""

    def __init__(
        self,
        source: str,
        message: str,
        *,
        record: object = None,
        field: str | None = None,
    ):
        self.source, self.record, self.field = source, record, field
        where = "".join(
            [
                f" record {record}" if record is not None else "",
                f" field {field!r}" if field is not None else "",
            ]
        )
        super().__init__(f"{source}{where}: {message}")


class BackendError(MspaError, RuntimeError):
    """A generation or encoding backend cannot serve a call (closed, a native call failed, a
    model it cannot load); names the backend and what failed."""

    def __init__(self, backend: str, message: str):
        self.backend = backend
        super().__init__(f"{backend}: {message}")


class BackendInputError(MspaError, ValueError):
    """A backend got a request it cannot serve (a prompt longer than its context, an image it
    cannot decode, frames for a text-only model); names the backend and the conversation."""

    def __init__(self, backend: str, message: str, *, record: object = None):
        self.backend, self.record = backend, record
        super().__init__(f"{backend}: {_where(record)}{message}")


class ConfigError(MspaError):
    """A configuration file failed validation; names the file and each offending field."""

    def __init__(self, path: str | Path, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        joined = "\n  - ".join(problems)
        super().__init__(f"invalid config {self.path}:\n  - {joined}")


class SchemaConstraintError(MspaError, ValueError):
    """An answer schema that decoding cannot be constrained to (not an object schema, a
    property a converter does not handle, a schema list of the wrong length)."""


class SchemaError(MspaError):
    """An input file is malformed as a whole (wrong format, missing or mistyped column).

    Row-level problems never raise: those rows go to quarantine. This error is for files that
    cannot be read at all, so the stage fails fast.
    """

    def __init__(self, path: str | Path, message: str, *, column: str | None = None):
        self.path = str(path)
        self.column = column
        where = f" column {column!r}:" if column else ":"
        super().__init__(f"{self.path}{where} {message}")


class NothingAcceptedError(MspaError):
    """No row of a required contract was accepted: the load failed although nothing crashed.

    ``counts`` holds, per failed contract, ``(contract, n_input, n_quarantined, top reasons)``;
    ``results`` (optional) whatever the caller wants to print before failing.
    """

    def __init__(
        self,
        counts: list[tuple[str, int, int, list[str]]],
        *,
        quarantine: str | Path | None = None,
        results: object = None,
    ):
        self.counts = counts
        self.results = results
        parts = []
        for contract, n_input, n_quarantined, reasons in counts:
            why = f"; top reasons: {', '.join(reasons)}" if reasons else ""
            parts.append(
                f"no row of contract {contract!r} accepted (input {n_input:,} = accepted 0 + "
                f"quarantined {n_quarantined:,}{why})"
            )
        where = f"; quarantine -> {quarantine}" if quarantine is not None else ""
        super().__init__("; ".join(parts) + where)


class DataFetchError(MspaError):
    """A dataset could not be obtained (download or unpack failed)."""


class ReconciliationError(MspaError):
    """Row counts do not reconcile (input != accepted + quarantined): a bug, never expected."""

    def __init__(self, stage: str, n_input: int, n_accepted: int, n_quarantined: int):
        super().__init__(
            f"{stage}: counts do not reconcile: input={n_input} accepted={n_accepted} "
            f"quarantined={n_quarantined}"
        )


class MissingExtraError(MspaError, ImportError):
    """An optional dependency is missing; names the extra that provides it."""

    def __init__(self, module: str, extra: str, hint: str | None = None):
        self.module = module
        self.extra = extra
        msg = (
            f"{module!r} is not installed; it comes with the '{extra}' extra: "
            f"pip install 'mspa-features[{extra}]'"
        )
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


class FeatureRepoError(MspaError):
    """Registration cannot proceed: no feature set to register, or a named one is missing."""

    def __init__(self, message: str, *, feature_sets: Mapping[str, Path] | None = None):
        self.feature_sets = dict(feature_sets or {})
        if feature_sets is not None:
            found = ", ".join(f"{k} ({v})" for k, v in feature_sets.items()) or "none"
            message = f"{message}; feature sets found: {found}"
        super().__init__(message)


class LeakBuildError(MspaError):
    """A leak builder got unusable input; names the record (row / id) and the field."""

    def __init__(
        self, builder: str, message: str, *, record: str | None = None, field: str | None = None
    ):
        self.builder, self.record, self.field = builder, record, field
        super().__init__(_located(builder, message, record, field))


class LeakedFeatureError(MspaError):
    """A non-LIS ablation variant would train on a feature view tagged ``leaked=true``.

    Leaked (future) features belong to LIS variants only; anywhere else they inflate AUC.
    """

    def __init__(self, variant: str, kind: str, service: str, views: list[str]):
        self.variant = variant
        self.kind = kind
        self.service = service
        self.views = list(views)
        super().__init__(
            f"variant {variant!r} (kind {kind!r}) reads feature service {service!r} whose "
            f"view(s) {self.views} are tagged leaked=true; only kind 'lis' variants may use "
            "leaked features"
        )


class AblationError(MspaError):
    """An ablation cannot run: no usable rows in a window, a missing feature service, ..."""


class RunNotFoundError(MspaError):
    """An MLflow run named on the command line does not exist or is not an ablation."""


class RankerInputError(MspaError, ValueError):
    """A ranker got unusable rows; names the ranker, the record (row) and the field."""

    def __init__(
        self,
        ranker: str,
        message: str,
        *,
        record: int | str | None = None,
        field: str | None = None,
    ):
        self.ranker, self.record, self.field = ranker, record, field
        super().__init__(_located(ranker, message, record, field))


class TfraEnvironmentError(MspaError):
    """The TFRA environment's python is missing; names where it was looked for and the fix."""

    def __init__(self, python: str | Path, source: str):
        self.python = str(python)
        super().__init__(
            f"TFRA environment not found: no python at {self.python} (from {source}); create it "
            "with scripts/setup_tfra.sh, or point MSPA_TFRA_PYTHON at its python"
        )


class TfraWorkerError(MspaError):
    """The TFRA worker process failed; carries the command, exit status and stderr tail."""

    def __init__(self, command: str, returncode: int, stderr: str):
        self.command, self.returncode, self.stderr = command, returncode, stderr
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        super().__init__(f"TFRA worker {command!r} failed with exit status {returncode}:\n{tail}")


class WorkspaceBusyError(MspaError):
    """Another command holds the lock of this run's features and Feast store for too long."""


class TrackingError(MspaError):
    """The MLflow tracking store could not be written; results stay on disk to log later."""

    def __init__(self, tracking_uri: str, reason: str, *, results_path: str | Path | None = None):
        self.tracking_uri = tracking_uri
        self.reason = reason
        self.results_path = None if results_path is None else str(results_path)
        msg = f"MLflow tracking store {tracking_uri} unreachable: {reason}"
        if results_path is not None:
            msg += (
                f"; results and reports are in {Path(results_path).parent}; log them without "
                f"training again: mspa runs log {Path(results_path).parent}"
            )
        super().__init__(msg)


class EntityNotFoundError(MspaError):
    """An entity has no value of a feature in the online store (never materialized, or
    expired); names the entity, the feature and the feature set."""

    def __init__(self, entity: str, entity_id: str, feature: str, feature_set: str, hint: str):
        self.entity, self.entity_id, self.feature = entity, entity_id, feature
        self.feature_set = feature_set
        super().__init__(
            f"{entity} {entity_id!r} has no {feature} online in feature set {feature_set!r}: {hint}"
        )


class OnlineStoreUnavailableError(MspaError):
    """The online store's server (Redis) cannot be reached or refuses the connection; names
    its address, the reason and what to do. Raised before anything is written when it is
    down at the start; a write it interrupts is safe to rerun (each entity's row is keyed by
    its id and event time, so a rerun writes the same rows once)."""

    def __init__(self, store: str, address: str, reason: str, *, fix: str):
        self.store, self.address, self.reason = store, address, reason
        super().__init__(f"{store} online store at {address} is unreachable ({reason}): {fix}")


class NotFittedError(MspaError, RuntimeError):
    """A model was asked to predict, export or save before :meth:`fit`; names the model."""

    def __init__(self, model: str, action: str = "predict"):
        self.model, self.action = model, action
        super().__init__(f"{model}: not fitted, cannot {action}; call fit() first")
