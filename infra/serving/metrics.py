"""What Prometheus reads at `GET /metrics`: requests by status, latency, the version serving, shadow agreement.

One registry per app (not the process-wide default), so two apps in one process (tests) keep
their counts apart. With `--workers N` each worker process counts its own requests.
"""

from collections.abc import Callable, Iterator
from dataclasses import asdict

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from mlpipe.tasks.monitoring.capture import CaptureCounters

LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServingMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mlpipe_serve_requests", "Scoring requests by HTTP status", ["code"], registry=self.registry
        )
        self.rows = Counter("mlpipe_serve_rows", "Rows scored", registry=self.registry)
        self.latency = Histogram(
            "mlpipe_serve_latency_seconds",
            "Time to answer a scoring request",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.version = Gauge(
            "mlpipe_serve_model_version",
            "1 for the version answering now",
            ["model", "version"],
            registry=self.registry,
        )
        self.shadow_rows = Counter(
            "mlpipe_serve_shadow_rows", "Rows scored by the challenger too", ["version"], registry=self.registry
        )
        self.shadow_agreeing = Counter(
            "mlpipe_serve_shadow_agreeing_rows",
            "Shadowed rows where challenger and champion agree",
            ["version"],
            registry=self.registry,
        )
        self.shadow_agreement = Gauge(
            "mlpipe_serve_shadow_agreement",
            "Share of shadowed rows where they agree, so far",
            ["version"],
            registry=self.registry,
        )
        self.shadow_dropped = Counter(
            "mlpipe_serve_shadow_dropped", "Requests not shadowed because the queue was full", registry=self.registry
        )
        self.shadow_errors = Counter(
            "mlpipe_serve_shadow_errors", "Shadow or capture failures (the caller was answered)", registry=self.registry
        )

        self._shadowed: dict[str, list[int]] = {}
        """Challenger version → [rows, agreeing rows]; written by the one shadow thread."""

    def serving(self, model: str, version: str) -> None:
        """Mark `version` as the one answering (and no other)."""
        self.version.clear()
        self.version.labels(model=model, version=version).set(1)

    def agreement(self, version: str, rows: int, agreeing: int) -> None:
        self.shadow_rows.labels(version=version).inc(rows)
        self.shadow_agreeing.labels(version=version).inc(agreeing)
        seen = self._shadowed.setdefault(version, [0, 0])
        seen[0] += rows
        seen[1] += agreeing
        self.shadow_agreement.labels(version=version).set(seen[1] / seen[0] if seen[0] else 1.0)

    def watch_capture(self, counters: Callable[[], CaptureCounters]) -> None:
        """Report the capture writer's counts (read when Prometheus scrapes)."""
        self.registry.register(_CaptureCollector(counters))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _CaptureCollector(Collector):
    """Rows through capture by outcome (offered, sampled, written, dropped, failed), files and rows pending."""

    def __init__(self, counters: Callable[[], CaptureCounters]) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        counts = asdict(self.counters())
        files, pending = counts.pop("files"), counts.pop("pending")
        rows = CounterMetricFamily("mlpipe_serve_capture_rows", "Rows through capture, by outcome", labels=["outcome"])
        for outcome, value in counts.items():
            rows.add_metric([outcome], value)
        yield rows
        yield CounterMetricFamily("mlpipe_serve_capture_files", "Capture files written", value=files)
        yield GaugeMetricFamily("mlpipe_serve_capture_pending_rows", "Captured rows not yet written", value=pending)
