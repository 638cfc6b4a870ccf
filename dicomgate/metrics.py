"""Prometheus metrics. Most are read from the state store at scrape time (so they survive
restarts and count work done by any process); HTTP requests are counted in-process."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .buildinfo import build_info
from .config import Config
from .state import STATES, Store
from .state.names import Fact
from .state.peek import store_schema_version

disable_created_metrics()  # *_created series only add noise for an operator
HTTP_REGISTRY = CollectorRegistry()
HTTP_REQUESTS = Counter("dicomgate_http_requests", "HTTP requests served by the shim",
                        ["endpoint", "code"], registry=HTTP_REGISTRY)
HTTP_POOL_IN_FLIGHT = Gauge("dicomgate_http_pool_in_flight",
                            "Shim requests running or waiting, per worker pool (main, lookup)",
                            ["pool"], registry=HTTP_REGISTRY)

# Written by images.echo: {"ok": bool, "latency_ms": float, "at": epoch, "error": str}
ECHO_FACT = Fact.PACS_ECHO


class StateCollector:
    def __init__(self, store: Store, config: Config):
        self.store = store
        self.config = config

    def collect(self) -> Iterator[Metric]:
        yield self._build_info()
        yield from self._instances()
        yield from self._tasks()
        yield from self._pacs()
        yield from self._sync()
        yield from self._disk()
        if self.config.state is not None:
            yield from self._nodes()

    def _nodes(self) -> Iterator[Metric]:
        from .nodes import nodes_view

        up = GaugeMetricFamily("dicomgate_node_up", "1 while the node beats (nodes sharing "
                               "a PostgreSQL store)", labels=["node"])
        lead = GaugeMetricFamily("dicomgate_node_leader", "1 on the node running the "
                                 "scheduled jobs", labels=["node"])
        done = GaugeMetricFamily("dicomgate_node_tasks_done", "tasks completed since the "
                                 "node started", labels=["node"])
        for n in nodes_view(self.config, self.store, True):
            up.add_metric([n["name"]], 1.0 if n["alive"] else 0.0)
            lead.add_metric([n["name"]], 1.0 if n["leader"] else 0.0)
            done.add_metric([n["name"]], float(n["tasks_done"] or 0))
        yield from (up, lead, done)

    def _build_info(self) -> Metric:
        b = build_info()
        g = GaugeMetricFamily("dicomgate_build_info", "always 1; what is running, as labels",
                              labels=["version", "python", "platform", "schema",
                                      "store_schema"])
        g.add_metric([str(b["version"]), str(b["python"]), str(b["platform"]),
                      str(b["schema"]),
                      str(store_schema_version(self.config.gateway.db_path))], 1)
        return g

    def _instances(self) -> Iterator[Metric]:
        by_state = self.store.overview.instances_by_state()
        received = CounterMetricFamily("dicomgate_instances_received",
                                       "instances stored in the spool (any later state)")
        received.add_metric([], sum(n for n, _ in by_state.values()))
        yield received
        total_bytes = CounterMetricFamily("dicomgate_instances_received_bytes",
                                          "bytes of instances stored in the spool")
        total_bytes.add_metric([], sum(b for _, b in by_state.values()))
        yield total_bytes
        uploaded = CounterMetricFamily("dicomgate_instances_uploaded",
                                       "instances accepted by the cloud (uploaded or delivered)")
        uploaded.add_metric([], sum(by_state.get(s, (0, 0))[0]
                                    for s in ("uploaded", "delivered", "purged")))
        yield uploaded
        rejected = CounterMetricFamily("dicomgate_instances_rejected",
                                       "instances the cloud refused")
        rejected.add_metric([], by_state.get("rejected", (0, 0))[0])
        yield rejected
        g = GaugeMetricFamily("dicomgate_instances", "instances by state", labels=["state"])
        for state, (n, _) in sorted(by_state.items()):
            g.add_metric([state], n)
        yield g
        spool = GaugeMetricFamily("dicomgate_spool_bytes", "bytes held in the spool")
        spool.add_metric([], self.store.overview.spool_bytes())
        yield spool

    def _tasks(self) -> Iterator[Metric]:
        g = GaugeMetricFamily("dicomgate_tasks", "tasks by kind and state",
                              labels=["kind", "state"])
        for kind, states in sorted(self.store.tasks.counts().items()):
            for state in STATES:
                g.add_metric([kind, state], states.get(state, 0))
        yield g
        lat = GaugeMetricFamily("dicomgate_task_latency_seconds",
                                "seconds from enqueue to done, tasks finished in the last 24h",
                                labels=["kind", "stat"])
        for kind, s in sorted(self.store.overview.task_latency().items()):
            lat.add_metric([kind, "mean"], s["mean"])
            lat.add_metric([kind, "max"], s["max"])
        yield lat
        age = GaugeMetricFamily("dicomgate_task_backlog_age_seconds",
                                "age of the oldest pending or running task", labels=["kind"])
        now = time.time()
        for kind, t in sorted(self.store.overview.oldest_pending().items()):
            age.add_metric([kind], now - t)
        yield age

    def _pacs(self) -> Iterator[Metric]:
        echo = self.store.facts.get(ECHO_FACT)
        up = GaugeMetricFamily("dicomgate_pacs_up", "1 when the last C-ECHO to the PACS succeeded")
        latency = GaugeMetricFamily("dicomgate_pacs_echo_seconds", "last C-ECHO round trip")
        if echo is not None:
            up.add_metric([], 1.0 if echo.get("ok") else 0.0)
            if echo.get("latency_ms") is not None:
                latency.add_metric([], echo["latency_ms"] / 1000.0)
        yield up
        yield latency

    def _sync(self) -> Iterator[Metric]:
        g = GaugeMetricFamily("dicomgate_job_last_success_timestamp_seconds",
                              "end of the last successful run of each scheduled job "
                              "(report sync per type, echo, ...)", labels=["job"])
        ok = GaugeMetricFamily("dicomgate_job_last_ok", "1 when the job's last run succeeded",
                               labels=["job"])
        for run in self.store.overview.job_runs():
            if run["outcome"] == "ok" and run["finished_at"]:
                g.add_metric([run["name"]], run["finished_at"])
            ok.add_metric([run["name"]], 1.0 if run["outcome"] == "ok" else 0.0)
        yield g
        yield ok

    def _disk(self) -> Iterator[Metric]:
        usage = shutil.disk_usage(self.config.gateway.state_dir)
        g = GaugeMetricFamily("dicomgate_disk_free_bytes", "free bytes in the state dir")
        g.add_metric([], usage.free)
        yield g
        floor = GaugeMetricFamily("dicomgate_disk_floor_bytes", "dicom.min_free_disk")
        floor.add_metric([], self.config.dicom.min_free_disk)
        yield floor


def render(store: Store, config: Config) -> bytes:
    """The text exposition of every metric."""
    registry = CollectorRegistry()
    registry.register(StateCollector(store, config))
    return generate_latest(registry) + generate_latest(HTTP_REGISTRY)
