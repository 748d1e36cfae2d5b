"""Every store operation counted and timed, per operation, backend and outcome.

Counts are always kept in process (``Metrics.snapshot``), so tests and the CLI
can read them without extra packages. With the optional ``prometheus_client``
installed they are also Prometheus counters and histograms in a registry of the
app's own, served at ``SMG_HISTORY_METRICS_ROUTE`` when that is set, together
with the backend's connection-pool usage.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backends.base import Backend

try:  # optional: the ``metrics`` extra
    import prometheus_client
    from prometheus_client.core import GaugeMetricFamily
except ImportError:  # pragma: no cover - exercised where it is missing
    prometheus_client = None


class Metrics:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._seconds: Counter[tuple[str, str]] = Counter()
        self.registry = None
        self._labelled: dict[tuple[str, str], tuple[Any, Any]] = {}
        if prometheus_client is not None:
            self.registry = prometheus_client.CollectorRegistry(auto_describe=True)
            self._operations = prometheus_client.Counter(
                "smg_history_operations",
                "History store operations by operation, backend and outcome.",
                ["operation", "backend", "outcome"],
                registry=self.registry,
            )
            self._latency = prometheus_client.Histogram(
                "smg_history_operation_seconds",
                "Latency of history store operations.",
                ["operation", "backend"],
                registry=self.registry,
            )
            self._errors = prometheus_client.Counter(
                "smg_history_errors",
                "Failed history store operations by kind.",
                ["backend", "kind"],
                registry=self.registry,
            )
            self.registry.register(_PoolCollector(backend))

    def record(self, operation: str, outcome: str, seconds: float, error_kind: str | None = None) -> None:
        backend = self._backend.name
        with self._lock:
            self._counts[(operation, backend, outcome)] += 1
            self._seconds[(operation, backend)] += seconds
        if self.registry is not None:
            counter, histogram = self._children(operation, outcome)
            counter.inc()
            histogram.observe(seconds)
            if error_kind is not None:
                self._errors.labels(backend, error_kind).inc()

    def _children(self, operation: str, outcome: str) -> tuple[Any, Any]:
        """The labelled counter and histogram of an (operation, outcome),
        looked up once: ``labels()`` costs as much as the rest of ``record``,
        which runs on every call."""
        key = (operation, outcome)
        found = self._labelled.get(key)
        if found is None:
            backend = self._backend.name
            found = self._operations.labels(operation, backend, outcome), self._latency.labels(operation, backend)
            self._labelled[key] = found
        return found

    def snapshot(self) -> dict[str, Any]:
        """``{"operations": {(operation, backend, outcome): count},
        "seconds": {(operation, backend): total}}``."""
        with self._lock:
            return {"operations": dict(self._counts), "seconds": dict(self._seconds)}

    def exposition(self) -> bytes:
        """The Prometheus text format of this app's metrics."""
        if self.registry is None:
            raise RuntimeError("prometheus_client is not installed (pip install 'flask-smg-history[metrics]')")
        return prometheus_client.generate_latest(self.registry)


class _PoolCollector:
    """Reads the backend's pool usage at scrape time."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def collect(self):
        gauge = GaugeMetricFamily(
            "smg_history_pool_connections", "Connections of the backend's pool by state.", labels=["backend", "state"]
        )
        for state, value in self._backend.pool_stats().items():
            gauge.add_metric([self._backend.name, state], value)
        yield gauge
