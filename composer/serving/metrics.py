"""Prometheus metrics of one service process (its own registry, so tests and replicas don't clash).

Contract: `Metrics()` holds the counters; `observe(endpoint, status, seconds)` records a
request; `decided(plan)` counts a routing decision per router and per expert (merged
experts each count; token-level plans count as expert "per-token", base as "(base)");
`generated(router, n, cost=None)` counts generated tokens and their price (non-streaming
requests); per endpoint expert `composer_endpoint{expert,stat}` says up (its last call
succeeded), calls, failures and the seconds they took (from the backend's `stats()`);
`render(stats, in_flight, quarantined={})` returns the exposition text, after setting the
residency and batching gauges from a backend's `stats()`, the admitted requests in flight
(rejections are the 429s of `composer_requests`) and one `composer_expert_quarantined` series
per quarantined expert version.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

disable_created_metrics()  # no *_created series: they double the output and nobody graphs them

CONTENT_TYPE = CONTENT_TYPE_LATEST
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self):
        self.registry = r = CollectorRegistry()
        self.requests = Counter("composer_requests", "HTTP requests", ["endpoint", "status"], registry=r)
        self.latency = Histogram(
            "composer_request_seconds", "HTTP request latency", ["endpoint"], buckets=BUCKETS, registry=r
        )
        self.decisions = Counter(
            "composer_routing_decisions", "routing decisions", ["router", "expert"], registry=r
        )
        self.tokens = Counter("composer_completion_tokens", "generated tokens", ["router"], registry=r)
        self.adapters = Gauge(
            "composer_adapters_resident", "LoRA adapters loaded in the host", ["base"], registry=r
        )
        self.residency = Gauge(
            "composer_adapter_residency",
            "one host replica's adapter residency: resident, bytes, loads, evictions, load_seconds (sum)",
            ["base", "stat"],
            registry=r,
        )
        self.models = Gauge("composer_models_resident", "whole-model experts resident", registry=r)
        self.batching = Gauge(
            "composer_host_batching",
            "host batches since start: batches, rows, max_rows, "
            "shared (batches mixing requests); one replica",
            ["base", "stat"],
            registry=r,
        )
        self.quarantined = Gauge(
            "composer_expert_quarantined",
            "expert versions out of routing because a host could not load or run them",
            ["expert", "version"],
            registry=r,
        )
        self.endpoint = Gauge(
            "composer_endpoint",
            "endpoint experts as this replica sees them: up (1/0, last call), calls, failures, "
            "seconds (sum of call latencies)",
            ["expert", "stat"],
            registry=r,
        )
        self.cost = Counter(
            "composer_request_cost", "price of served requests (experts' prices)", ["router"], registry=r
        )
        self.in_flight = Gauge(
            "composer_requests_in_flight",
            "admitted model requests in flight (this ingress; 429 beyond COMPOSER_MAX_QUEUE)",
            registry=r,
        )

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def decided(self, plan) -> None:
        experts = ["per-token"] if plan.mode == "token" else plan.experts or ["(base)"]
        for e in experts:
            self.decisions.labels(plan.router, e).inc()

    def generated(self, router: str, tokens: int, cost: float | None = None) -> None:
        self.tokens.labels(router).inc(tokens)
        if cost:
            self.cost.labels(router).inc(cost)

    def render(self, stats: dict, in_flight: int = 0, quarantined: dict | None = None) -> bytes:
        self.in_flight.set(in_flight)
        self.quarantined.clear()
        for name, version in quarantined or {}:
            self.quarantined.labels(name, str(version)).set(1)
        for base, residency in stats.get("residency", {}).items():
            for stat, v in residency.items():
                self.residency.labels(base, stat).set(v)
        for base, n in stats.get("adapters_resident", {}).items():
            self.adapters.labels(base).set(n)
        self.models.set(len(stats.get("models_resident", [])))
        for name, health in stats.get("endpoints", {}).items():
            for stat in ("up", "calls", "failures", "seconds"):
                self.endpoint.labels(name, stat).set(float(health[stat]))
        for base, counts in stats.get("batches", {}).items():
            for stat, n in counts.items():
                self.batching.labels(base, stat).set(n)
        return generate_latest(self.registry)
