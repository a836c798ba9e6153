"""Event counters and histograms as plain numbers, turned into metric families at scrape time.

prometheus_client's `Counter` and `Histogram` take a lock on every update (a child's `inc` and
each bucket of an `observe`), so that threads may share them. Every update here comes from the
event loop's thread (the hooks run there, and so does the scrape), and a cached decision makes
five of them: plain attributes cost a third as much. The exposition is prometheus_client's own
(`CounterMetricFamily`, `HistogramMetricFamily`), with the same samples, labels and ``_created``
series its `Counter` and `Histogram` write, so a scrape reads exactly as before.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from math import isnan
from typing import Generic, TypeVar

from prometheus_client import metrics as prometheus_metrics
from prometheus_client import utils
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

_go_float: Callable[[float], str] = utils.floatToGoString
"""How prometheus_client writes a bucket's ``le`` (``0.005``, ``1.0``, ``+Inf``)."""
INF = float("inf")


def _created_series() -> bool:
    """Whether prometheus_client writes ``_created`` series: not when the environment sets
    ``PROMETHEUS_DISABLE_CREATED_SERIES`` or `disable_created_metrics` was called (it keeps
    the switch in a module variable, read here at each scrape as its own types read it)."""
    return bool(getattr(prometheus_metrics, "_use_created", True))


class Count:
    """One labelled counter: a running total and when it was created."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        """Add `amount`; a counter never goes down (a negative amount is a bug, said at once)."""
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        self.value += amount


class Buckets:
    """One labelled histogram: a count per bucket (not cumulative), the sum, when created."""

    __slots__ = ("_bounds", "counts", "created", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = bounds
        self.counts = [0.0] * len(bounds)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        """Count `value` in the first bucket whose upper bound holds it (the last is +Inf); NaN
        is in no bucket (it still reaches the sum), as prometheus_client has it."""
        self.sum += value
        if not isnan(value):
            self.counts[bisect_left(self._bounds, value)] += 1


_C = TypeVar("_C", Count, Buckets)


class _Family(ABC, Generic[_C]):
    """A metric's children by label values, in the order they were first used."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.children: dict[tuple[str, ...], _C] = {}

    def labels(self, *values: str) -> _C:
        """The child for `values` (one per label name), created at first use."""
        child = self.children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
            child = self.children[values] = self._new()
        return child

    @abstractmethod
    def _new(self) -> _C:
        """A new child."""

    @abstractmethod
    def family(self) -> Metric:
        """The family with a sample set for every child."""


class CounterFamily(_Family[Count]):
    """A labelled counter, exposed as ``<name>_total`` and ``<name>_created``."""

    def _new(self) -> Count:
        return Count()

    def family(self) -> Metric:
        """The family with a sample set for every child."""
        metric = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        created = _created_series()
        for values, child in self.children.items():
            metric.add_metric(values, child.value, created=child.created if created else None)
        return metric


class HistogramFamily(_Family[Buckets]):
    """A labelled histogram over fixed buckets (+Inf added), exposed as Prometheus writes one."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
    ) -> None:
        super().__init__(name, documentation, labelnames)
        bounds = [float(b) for b in buckets]
        if bounds != sorted(bounds):
            raise ValueError(f"{name}: buckets not in sorted order")
        if not bounds or bounds[-1] != INF:
            bounds.append(INF)
        self.bounds = tuple(bounds)
        self._les = tuple(_go_float(b) for b in self.bounds)

    def _new(self) -> Buckets:
        return Buckets(self.bounds)

    def family(self) -> Metric:
        """The family with a sample set for every child."""
        metric = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in self.children.items():
            running = 0.0
            cumulative = []
            for le, count in zip(self._les, child.counts, strict=True):
                running += count
                cumulative.append((le, running))
            metric.add_metric(values, cumulative, child.sum)
            if _created_series():
                labels = dict(zip(self.labelnames, values, strict=True))
                metric.add_sample(self.name + "_created", labels, child.created)
        return metric


class Tallies:
    """A collector for a registry: every family, in the order given, at each scrape."""

    def __init__(self, families: Iterable[CounterFamily | HistogramFamily]) -> None:
        self._families = tuple(families)

    def describe(self) -> list[Metric]:
        """The families without samples (so registering does not collect)."""
        return [_empty(f) for f in self._families]

    def collect(self) -> list[Metric]:
        """Every family with its samples now."""
        return [f.family() for f in self._families]


def _empty(family: CounterFamily | HistogramFamily) -> Metric:
    kind = CounterMetricFamily if isinstance(family, CounterFamily) else HistogramMetricFamily
    return kind(family.name, family.documentation, labels=family.labelnames)
