"""The metrics' storage and its conversion: counts written by ``Tally`` (to an in-process
fakeredis) come back from ``SluiceCollector`` as the Prometheus families they stand for,
parsed from the text format with prometheus_client's own parser."""

from __future__ import annotations

import math

import fakeredis
import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sluice.ops.metrics.families import (
    BATCH_SECONDS,
    DEAD_LETTERS,
    EVENTS,
    FAMILIES,
    HTTP_SECONDS,
    TRIGGERS,
    bound_name,
)
from sluice.ops.metrics.prometheus import SluiceCollector, metric_families
from sluice.ops.metrics.tally import Tally, add_counts, flush
from sluice.producer import keys


def scrape(client: fakeredis.FakeRedis) -> dict[str, dict[tuple, float]]:
    """Each family's samples as ``{(sample name, sorted labels): value}``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SluiceCollector(client))
    text = generate_latest(registry).decode()
    return {
        family.name: {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for sample in family.samples
        }
        for family in text_string_to_metric_families(text)
    }


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


def test_counters_add_up_across_tallies_as_separate_processes_would(client) -> None:
    for _ in range(3):  # three workers, each with its own batch
        tally = Tally()
        tally.count(EVENTS, ("accepted", "", "native"))
        tally.count(EVENTS, ("discarded", "duplicate_order", "native"), 2)
        assert flush(client, tally)
    add_counts(client, TRIGGERS, {"delivered": 4, "retrying": 1})
    found = scrape(client)
    assert found["sluice_events"] == {
        ("sluice_events_total", (("reason", ""), ("source", "native"), ("status", "accepted"))): 3,
        (
            "sluice_events_total",
            (("reason", "duplicate_order"), ("source", "native"), ("status", "discarded")),
        ): 6,
    }
    assert found["sluice_triggers"] == {
        ("sluice_triggers_total", (("status", "delivered"),)): 4,
        ("sluice_triggers_total", (("status", "retrying"),)): 1,
    }
    # Nothing dead-lettered yet: the label-less counter shows 0 rather than nothing.
    assert found["sluice_dead_letters"] == {("sluice_dead_letters_total", ()): 0}


def test_a_histogram_is_cumulative_with_its_count_and_sum(client) -> None:
    tally = Tally()
    for seconds in (0.003, 0.02, 0.02, 0.7, 400.0, -1.0):  # -1: clocks apart, counts as 0
        tally.observe(BATCH_SECONDS, (), seconds)
    flush(client, tally)
    samples = scrape(client)["sluice_batch_duration_seconds"]
    buckets = {
        dict(labels)["le"]: value
        for (name, labels), value in samples.items()
        if name.endswith("_bucket")
    }
    assert list(buckets) == [bound_name(b) for b in (*BATCH_SECONDS.buckets_s, math.inf)]
    assert buckets["0.005"] == 2  # 0.003 and the negative one
    assert buckets["0.025"] == 4
    assert buckets["1.0"] == 5
    assert buckets["150.0"] == 5
    assert buckets["+Inf"] == 6
    assert samples[("sluice_batch_duration_seconds_count", ())] == 6
    assert samples[("sluice_batch_duration_seconds_sum", ())] == pytest.approx(400.743)


def test_labelled_histograms_keep_their_series_apart(client) -> None:
    tally = Tally()
    tally.observe(HTTP_SECONDS, ("/v1/batch", "POST"), 0.004)
    tally.observe(HTTP_SECONDS, ("/metrics", "GET"), 0.2)
    tally.observe(HTTP_SECONDS, ("/metrics", "GET"), 0.3)
    flush(client, tally)
    samples = scrape(client)["sluice_http_request_duration_seconds"]
    counts = {
        dict(labels)["route"]: value
        for (name, labels), value in samples.items()
        if name.endswith("_count")
    }
    assert counts == {"/v1/batch": 1, "/metrics": 2}


def test_a_failed_write_can_be_merged_and_written_later(client) -> None:
    kept, later = Tally(), Tally()
    kept.count(DEAD_LETTERS)
    later.count(DEAD_LETTERS)
    later.merge(kept)
    flush(client, later)
    assert scrape(client)["sluice_dead_letters"] == {("sluice_dead_letters_total", ()): 2}


def test_fields_of_another_shape_are_skipped_and_other_bounds_kept_in_order() -> None:
    stored = {
        EVENTS.name: {
            orjson.dumps(["accepted", "", "native"]): b"5",
            orjson.dumps(["accepted", "native"]): b"9",  # an older label set
            b"not json": b"1",
        },
        BATCH_SECONDS.name: {
            orjson.dumps(["0.003"]): b"1",  # a bound the table no longer has
            orjson.dumps(["0.5"]): b"2",
            orjson.dumps(["sum"]): b"1.003",
        },
    }
    families = {family.name: family for family in metric_families(stored)}
    assert [s.value for s in families["sluice_events"].samples] == [5.0]
    batch = families["sluice_batch_duration_seconds"].samples
    bucket_values = [(s.labels["le"], s.value) for s in batch if s.name.endswith("_bucket")]
    assert bucket_values[:3] == [("0.003", 1.0), ("0.005", 1.0), ("0.01", 1.0)]
    assert ("0.5", 3.0) in bucket_values and bucket_values[-1] == ("+Inf", 3.0)
    assert {family.name for family in metric_families({})} == {
        family.name.removesuffix("_total") for family in FAMILIES
    }


def test_every_family_has_its_own_redis_key() -> None:
    assert len({keys.metric(family.name) for family in FAMILIES}) == len(FAMILIES)
