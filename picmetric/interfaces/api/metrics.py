"""Prometheus metrics: requests, latency per route and per model, errors. One registry per app instance."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector


def queue_metrics(broker_up: bool, depth: int | None, jobs: dict[str, int]) -> bytes:
    """The job queue as this scrape sees it (read now from the broker and the database, shared by every process,
    so never added up across API workers)."""
    registry = CollectorRegistry()
    Gauge("picmetric_broker_up", "1 when the job broker answers (always 1 in-process)", registry=registry).set(
        int(broker_up)
    )
    waiting = Gauge("picmetric_queue_depth", "jobs waiting in the broker for a worker", registry=registry)
    waiting.set(depth if depth is not None else float("nan"))
    per_state = Gauge("picmetric_jobs", "jobs recorded, by state", ["state"], registry=registry)
    for state, count in jobs.items():
        per_state.labels(state).set(count)
    return generate_latest(registry)


_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 2, 5, 10)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "picmetric_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "picmetric_http_request_seconds", "HTTP request latency", ["method", "route"],
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.model_latency = Histogram(
            "picmetric_model_seconds", "Inference latency per model (including its render)", ["model"],
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.errors = Counter(
            "picmetric_errors_total", "Requests refused or failed, by error type", ["type"], registry=self.registry
        )
        self.analyses = Counter(
            "picmetric_analyses_total",
            "Analyses served, by whether the models ran",
            ["outcome"],
            registry=self.registry,
        )

    def observe_models(self, timings_ms: dict[str, float]) -> None:
        for task in ("labels", "objects", "faces"):
            if task in timings_ms:
                seconds = (timings_ms[task] + timings_ms.get(f"{task}_render", 0.0)) / 1000
                self.model_latency.labels(task).observe(seconds)

    def render(self) -> bytes:
        """This process's metrics; under several worker processes (``PROMETHEUS_MULTIPROC_DIR``, set by
        ``picmetric serve --workers N``), every worker's, added up."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            combined = CollectorRegistry()
            MultiProcessCollector(combined)
            return generate_latest(combined)
        return generate_latest(self.registry)
