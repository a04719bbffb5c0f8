"""Feature service kinds: one service per kind and feature set, named ``<kind>__<fs>``; the old
serving word "variant" (now the ablation's only) still imports, with a DeprecationWarning."""

from __future__ import annotations

import importlib

import pytest

from mspa_features.errors import UnknownNameError
from mspa_features.serving import definitions
from mspa_features.serving.definitions import SERVICE_KINDS, feature_services, service_name
from mspa_features.serving.materialize import ServiceReport


def test_service_name_is_kind_then_feature_set() -> None:
    assert [service_name(k, "llm") for k in SERVICE_KINDS] == [
        "baseline__llm",
        "with_preference__llm",
        "with_author__llm",
        "all__llm",
    ]


def test_an_unknown_kind_is_refused_with_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError) as e:
        service_name("preference", "llm")  # an ablation variant's name, not a service kind
    assert str(e.value) == (
        "unknown feature service kind 'preference'; valid: baseline, with_preference, "
        "with_author, all"
    )


def test_feature_services_serve_each_kind_and_tag_it() -> None:
    from feast import FeatureView, Field, FileSource
    from feast.types import String

    user, _ = definitions.entities()
    src = FileSource(name="s", path="x.parquet", timestamp_field="event_timestamp")

    def view(name: str) -> FeatureView:
        return FeatureView(
            name=name, entities=[user], source=src, schema=[Field(name="f", dtype=String)]
        )

    pref, author, cos = view("p"), view("a"), view("c")
    services = feature_services(
        "t", pref=[pref], author=[author], cosine=cos, tags={"leaked": "false"}, of="compact set"
    )
    got = {s.name: [p.name for p in s.feature_view_projections] for s in services}
    assert got == {
        "baseline__t": [],
        "with_preference__t": ["p"],
        "with_author__t": ["a"],
        "all__t": ["p", "a", "c"],
    }
    assert [s.tags for s in services] == [
        {"leaked": "false", "service_kind": k} for k in SERVICE_KINDS
    ]
    assert services[1].description == "feature service 'with_preference' of compact set 't'"


def test_old_names_still_work_and_warn() -> None:
    with pytest.warns(DeprecationWarning, match="use SERVICE_KINDS"):
        from mspa_features.serving.definitions import VARIANTS
    assert VARIANTS == SERVICE_KINDS
    with pytest.warns(DeprecationWarning, match="use SERVICE_KINDS"):
        old = importlib.import_module("mspa_features.serving.definitions").VARIANTS
    assert old is SERVICE_KINDS
    with pytest.raises(AttributeError, match="no attribute 'NOPE'"):
        definitions.NOPE  # noqa: B018

    rep = ServiceReport(name="all__t", feature_set="t", kind="all", feature_refs=[], tags={})
    with pytest.warns(DeprecationWarning, match="use ServiceReport.kind"):
        assert rep.variant == "all"
