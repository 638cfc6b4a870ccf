"""Registers the HTTP shim with the app: its routes, its server, a session-expiry job."""

from __future__ import annotations

import json
from typing import Any

import structlog

from ..app import App
from ..config.model import Config
from . import deletion, login, lookup, ops, qr_endpoint
from .deletion import DeletionEndpoint
from .http import Request, Response, RouteTable
from .login import LoginEndpoint
from .lookup import LookupEndpoint
from .openapi import build as build_openapi
from .openapi import front_responses
from .ops import healthz, metrics_endpoint
from .params import ForeignHospital
from .qr import FilmLinks
from .qr_endpoint import QrEndpoints
from .server import ShimService

OPENAPI_PATH = "/openapi.json"  # served here: it describes the routes set up here

log = structlog.get_logger("dicomgate.shim")


def setup(app: App) -> None:
    cfg = app.config
    if cfg.shim is None:
        return
    routes = RouteTable()
    served = cfg.gateway.served_hospitals  # ours first
    closers = []
    if cfg.qr is not None:
        links = FilmLinks(cfg.qr.film_url, bytes.fromhex(cfg.qr.sm4_key.reveal()),
                          cfg.qr.font_path)
        qr = QrEndpoints(links, served, on_issue=lambda e: app.store.qr.issued(
            e.hospital_id, e.accession_no, e.modality))
        # report printing has its own workers: nothing else queues in front of it
        routes.add(qr_endpoint.QR_URL_PATH, qr.qrurl, summary="QR code URL (4.3)",
                   pool="print")
        routes.add(qr_endpoint.QR_CODE_PATH, qr.qrcode, summary="QR code PNG (4.3)",
                   pool="print", cost=qr_endpoint.QR_CODE_COST)
    if cfg.login is not None:
        routes.add(login.PATH, LoginEndpoint(cfg.login, app.store.sessions, served[0], served),
                   ("GET", "POST"), summary="doctor login sync (4.4.3.1)")
        app.every("shim.expire_sessions", 600.0, app.store.sessions.close_expired)
    if cfg.lookup is not None:
        lookup_endpoint = LookupEndpoint(cfg.lookup, app.store, served, cfg.shim.lookup_threads)
        closers.append(lookup_endpoint.close)
        routes.add(lookup.PATH, lookup_endpoint, ("GET", "POST"),
                   summary="external exam lookup (4.4.3.2)", pool="lookup")
    secret = cfg.shim.delete_secret
    deleter = DeletionEndpoint(app.store, cfg.gateway.spool_dir, served,
                               secret.reveal() if secret else None, app.pool.wake)
    routes.add(deletion.PATH, deleter, ("POST",), summary="image deletion (4.5)")
    routes.add(ops.HEALTHZ_PATH, healthz(app), summary="health: 200 or 503 with the reasons")
    routes.add(ops.METRICS_PATH, metrics_endpoint(app), summary="Prometheus metrics")
    routes.add(OPENAPI_PATH, _openapi_handler(routes, app.mounts), summary="this API")
    service = ShimService(cfg.shim, routes, on_stop=lambda: [c() for c in closers],  # type: ignore[arg-type]
                          on_foreign=_audit_foreign(app), mounts=app.mounts)
    app.add_service(service, health=service.health)
    app.add_status("shim", lambda: _status(app, cfg))


def _audit_foreign(app: App):
    """A request naming a hospital we do not act for is refused (202) and audited."""
    def record(req: Request, exc: ForeignHospital) -> None:
        app.store.audit.record(f"client:{req.client}", "shim.refused_hospital",
                               exc.hospital_id, "refused", {
                                   "path": req.path, "method": req.method,
                                   "requestId": req.request_id,
                                   "accessionNo": req.context.get("accession_no"),
                                   "hisUserId": req.context.get("his_user_id")})
        log.warning("shim.refused_hospital", client=req.client, path=req.path,
                    hospital_id=exc.hospital_id, request_id=req.request_id)
    return record


def _openapi_handler(routes: RouteTable, mounts: dict):
    def handler(_req: Request) -> Response:
        documented = set(build_openapi()["paths"])
        extra = {r.path: {m.lower(): {"summary": r.summary or r.path,
                                      "responses": {"200": {"description": "OK"},
                                                    **front_responses(r.open_access)}}
                          for m in r.methods}
                 for r in routes.all() if r.path not in documented}
        for mounted in mounts.values():  # a mounted app (the console) declares its own
            declare = getattr(mounted, "openapi", None)
            if declare is not None:
                extra.update(declare())
        body = json.dumps(build_openapi(extra), ensure_ascii=False).encode("utf-8")
        return Response(200, body, code=200)
    return handler


def _status(app: App, cfg: Config) -> dict[str, Any]:
    shim = cfg.shim
    assert shim is not None
    return {
        "listen": f"{shim.bind}:{shim.port}",
        "allow": [str(n) for n in shim.allow],
        "serves_hospitals": list(cfg.gateway.served_hospitals),
        "limits": {"threads": shim.threads, "queue": shim.queue,
                   "lookup_threads": shim.lookup_threads, "lookup_queue": shim.lookup_queue,
                   "max_connections": shim.max_connections,
                   "max_connections_per_source": shim.max_connections_per_source,
                   "request_timeout_s": shim.request_timeout,
                   "keepalive_timeout_s": shim.keepalive_timeout,
                   "rate_per_source": shim.rate, "burst_per_source": shim.burst},
        "host_names": list(shim.host_names),
        "endpoints": {"qr": cfg.qr is not None, "login": cfg.login is not None,
                      "lookup": cfg.lookup is not None, "deletion": True},
        "deletion_signed": shim.delete_secret is not None,
        "open_doctor_sessions": app.store.sessions.count_open(),
        "deletions_received": len(app.store.deletions.list(limit=1000)),
    }
