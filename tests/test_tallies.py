"""Plain-number counters and histograms expose exactly what prometheus_client's own would."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    enable_created_metrics,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from connector.metrics import SECONDS_BUCKETS
from connector.tallies import CounterFamily, HistogramFamily, Tallies

LABELS = ("webhook", "code")
# On bounds, between them, below the first, past the last, zero, negative, infinite and NaN.
SECONDS = (0.0, 0.0001, 0.005, 0.0050001, 0.3, 1.0, 2.5, 10.0, 11.0, -1.0, math.inf, math.nan)


def _same_times(text: str) -> str:
    """The exposition with every ``_created`` value written as T (they differ by design)."""
    return re.sub(r"(_created(?:\{[^}]*\})?) \S+", r"\1 T", text)


def _registries() -> tuple[CollectorRegistry, CollectorRegistry]:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    counter = Counter("t_decisions", "Decisions.", LABELS, registry=theirs)
    seconds = Histogram(
        "t_seconds", "Seconds.", ("webhook",), registry=theirs, buckets=SECONDS_BUCKETS
    )
    tallied = CounterFamily("t_decisions", "Decisions.", LABELS)
    timed = HistogramFamily("t_seconds", "Seconds.", ("webhook",), SECONDS_BUCKETS)
    ours.register(Tallies([tallied, timed]))
    counter.labels("gate", "")  # created before use: exposed at zero
    tallied.labels("gate", "")
    for n, value in enumerate(SECONDS):
        code = "" if n % 3 else "device-unmanaged"
        counter.labels("people", code).inc()
        tallied.labels("people", code).inc()
        seconds.labels("people" if n % 2 else "gate").observe(value)
        timed.labels("people" if n % 2 else "gate").observe(value)
    counter.labels("people", "").inc(2.5)
    tallied.labels("people", "").inc(2.5)
    quoted = ('say "no"\n', "back\\slash")
    counter.labels(*quoted).inc()
    tallied.labels(*quoted).inc()
    return theirs, ours


@pytest.mark.parametrize(
    "encode", [generate_latest, generate_openmetrics], ids=["prometheus-text", "openmetrics"]
)
def test_the_exposition_is_prometheus_clients_own(
    encode: Callable[[CollectorRegistry], bytes],
) -> None:
    """Same families, samples, labels, bucket counts and order, in both formats."""
    theirs, ours = _registries()
    expected = _same_times(encode(theirs).decode())
    assert "t_seconds_bucket" in expected
    assert _same_times(encode(ours).decode()) == expected


@pytest.mark.parametrize(
    "encode", [generate_latest, generate_openmetrics], ids=["prometheus-text", "openmetrics"]
)
def test_created_series_follow_prometheus_clients_switch(
    encode: Callable[[CollectorRegistry], bytes],
) -> None:
    """With ``_created`` series turned off (``PROMETHEUS_DISABLE_CREATED_SERIES``), neither
    writes them."""
    disable_created_metrics()  # type: ignore[no-untyped-call]
    try:
        theirs, ours = _registries()
        expected = encode(theirs).decode()
        assert "_created" not in expected
        assert encode(ours).decode() == expected
    finally:
        enable_created_metrics()  # type: ignore[no-untyped-call]


def test_a_counter_never_goes_down() -> None:
    """A negative increment is refused, as prometheus_client refuses it."""
    with pytest.raises(ValueError, match="non-negative"):
        CounterFamily("t_decisions", "Decisions.", LABELS).labels("gate", "").inc(-1)


def test_buckets_must_be_sorted() -> None:
    """Unsorted buckets are a programming error, not sorted silently; +Inf is added once."""
    with pytest.raises(ValueError, match="t_seconds: buckets not in sorted order"):
        HistogramFamily("t_seconds", "Seconds.", (), (1.0, 0.5))
    assert HistogramFamily("t_seconds", "Seconds.", (), (1.0, math.inf)).bounds == (1.0, math.inf)


def test_a_child_takes_exactly_its_labels() -> None:
    """A wrong number of label values is a programming error, said at once."""
    with pytest.raises(ValueError, match=r"t_decisions takes labels \('webhook', 'code'\)"):
        CounterFamily("t_decisions", "Decisions.", LABELS).labels("gate")
