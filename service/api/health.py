"""``/healthz`` (the process answers), ``/readyz`` (database and a cube vintage are there) and
``/metrics`` (Prometheus text format, one registry per app)."""

from __future__ import annotations

import time

import sqlalchemy as sa
from apiflask import APIFlask, Schema, fields
from flask import Response, g, request

from service.api.state import state


class HealthOut(Schema):
    status = fields.String(required=True, metadata={"description": "ok or unavailable"})
    checks = fields.Dict(keys=fields.String(), values=fields.String())


def init_app(app: APIFlask) -> None:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    registry = CollectorRegistry()
    requests = Counter("vigie_http_requests", "HTTP requests answered",
                       ["method", "endpoint", "status"], registry=registry)
    latency = Histogram("vigie_http_request_duration_seconds", "Time to answer a request",
                        ["endpoint"], registry=registry,
                        buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))
    registry.register(_StateCollector(app))
    state_ = app.extensions["vigie"]
    state_.metrics = {"registry": registry, "requests": requests, "latency": latency,
                      "up": Gauge("vigie_up", "1 while the app serves", registry=registry)}
    state_.metrics["up"].set(1)
    limiter = state_.extra.get("limiter")

    @app.before_request
    def _start_timer():
        g.started = time.perf_counter()

    @app.after_request
    def _observe(response):
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        requests.labels(request.method, endpoint, str(response.status_code)).inc()
        started = getattr(g, "started", None)
        if started is not None:
            latency.labels(endpoint).observe(time.perf_counter() - started)
        return response

    @app.get("/healthz")
    @app.output(HealthOut)
    @app.doc(tags=["health"], summary="Liveness: the process answers")
    def healthz():
        return {"status": "ok", "checks": {}}

    @app.get("/readyz")
    @app.output(HealthOut)
    @app.doc(tags=["health"], summary="Readiness: database reachable and a cube vintage served",
             responses={503: {"description": "not ready", "content": {"application/json": {
                 "schema": HealthOut}}}})
    def readyz():
        st = state()
        checks, ok = {}, True
        try:
            with st.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"], ok = f"error: {type(exc).__name__}", False
        try:
            checks["vintage"] = st.store.current_vintage()["id"]
        except Exception as exc:
            checks["vintage"], ok = f"missing: {type(exc).__name__}", False
        if st.scheduler is not None:
            checks["scheduler"] = "leader" if st.scheduler.is_leader else "standby"
        return {"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503

    @app.get("/metrics")
    @app.doc(tags=["health"], summary="Prometheus metrics",
             responses={200: {"description": "Prometheus text format",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}})
    def metrics():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST.split(";")[0])

    if limiter is not None:
        for view in (healthz, readyz, metrics):
            limiter.exempt(view)


class _StateCollector:
    """Gauges read at scrape time: cache hits, scheduler leadership, job runs by status."""

    def __init__(self, app: APIFlask) -> None:
        self.app = app

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        st = self.app.extensions["vigie"]
        hits = CounterMetricFamily("vigie_response_cache_hits", "Answers served from cache")
        hits.add_metric([], st.cache.hits)
        yield hits
        misses = CounterMetricFamily("vigie_response_cache_misses", "Answers rendered")
        misses.add_metric([], st.cache.misses)
        yield misses
        size = GaugeMetricFamily("vigie_response_cache_bytes",
                                 "Bytes held by the response cache (capped at "
                                 "RESPONSE_CACHE_BYTES)")
        size.add_metric([], st.cache.bytes)
        yield size
        entries = GaugeMetricFamily("vigie_response_cache_entries", "Answers in the cache")
        entries.add_metric([], len(st.cache))
        yield entries
        leader = GaugeMetricFamily("vigie_scheduler_leader", "1 when this process runs jobs")
        leader.add_metric([], 1 if st.scheduler is not None and st.scheduler.is_leader else 0)
        yield leader
        try:
            from service.db import job_runs

            with st.engine.connect() as conn:
                rows = conn.execute(sa.select(job_runs.c.job, job_runs.c.status, sa.func.count())
                                    .group_by(job_runs.c.job, job_runs.c.status)).all()
            runs = GaugeMetricFamily("vigie_job_runs", "Job runs in the history, by status",
                                     labels=["job", "status"])
            for job, status, n in rows:
                runs.add_metric([job, status], n)
            yield runs
        except Exception:  # a scrape must not fail because the database is away
            pass
