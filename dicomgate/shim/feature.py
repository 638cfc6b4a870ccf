"""Registers the HTTP shim with the app: its routes, its server, a session-expiry job."""

from __future__ import annotations

import json
from typing import Any

from ..app import App
from ..config.model import Config
from . import deletion, login, lookup, ops, qr_endpoint
from .deletion import DeletionEndpoint
from .http import Request, Response, RouteTable
from .login import LoginEndpoint
from .lookup import LookupEndpoint
from .openapi import build as build_openapi
from .ops import healthz, metrics_endpoint
from .qr import FilmLinks
from .qr_endpoint import QrEndpoints
from .server import ShimService

OPENAPI_PATH = "/openapi.json"  # served here: it describes the routes set up here


def setup(app: App) -> None:
    cfg = app.config
    if cfg.shim is None:
        return
    routes = RouteTable()
    hospital = cfg.gateway.hospital_id
    closers = []
    if cfg.qr is not None:
        links = FilmLinks(cfg.qr.film_url, bytes.fromhex(cfg.qr.sm4_key.reveal()),
                          cfg.qr.font_path)
        qr = QrEndpoints(links, hospital, on_issue=lambda e: app.store.qr.issued(
            e.hospital_id, e.accession_no, e.modality))
        routes.add(qr_endpoint.QR_URL_PATH, qr.qrurl, summary="QR code URL (4.3)")
        routes.add(qr_endpoint.QR_CODE_PATH, qr.qrcode, summary="QR code PNG (4.3)")
    if cfg.login is not None:
        routes.add(login.PATH, LoginEndpoint(cfg.login, app.store.sessions, hospital),
                   ("GET", "POST"), summary="doctor login sync (4.4.3.1)")
        app.every("shim.expire_sessions", 600.0, app.store.sessions.close_expired)
    if cfg.lookup is not None:
        lookup_endpoint = LookupEndpoint(cfg.lookup, app.store, hospital)
        closers.append(lookup_endpoint.close)
        routes.add(lookup.PATH, lookup_endpoint, ("GET", "POST"),
                   summary="external exam lookup (4.4.3.2)")
    secret = cfg.shim.delete_secret
    deleter = DeletionEndpoint(app.store, cfg.gateway.spool_dir, hospital,
                               secret.reveal() if secret else None, app.pool.wake)
    routes.add(deletion.PATH, deleter, ("POST",), summary="image deletion (4.5)")
    routes.add(ops.HEALTHZ_PATH, healthz(app), summary="health: 200 or 503 with the reasons")
    routes.add(ops.METRICS_PATH, metrics_endpoint(app), summary="Prometheus metrics")
    routes.add(OPENAPI_PATH, _openapi_handler(routes), summary="this API")
    service = ShimService(cfg.shim, routes, on_stop=lambda: [c() for c in closers],
                          mounts=app.mounts)
    app.add_service(service, health=service.health)
    app.add_status("shim", lambda: _status(app, cfg))


def _openapi_handler(routes: RouteTable):
    def handler(_req: Request) -> Response:
        documented = set(build_openapi()["paths"])
        extra = {r.path: {m.lower(): {"summary": r.summary or r.path,
                                      "responses": {"200": {"description": "OK"}}}
                          for m in r.methods}
                 for r in routes.all() if r.path not in documented}
        body = json.dumps(build_openapi(extra), ensure_ascii=False).encode("utf-8")
        return Response(200, body, code=200)
    return handler


def _status(app: App, cfg: Config) -> dict[str, Any]:
    shim = cfg.shim
    assert shim is not None
    return {
        "listen": f"{shim.bind}:{shim.port}",
        "allow": [str(n) for n in shim.allow],
        "endpoints": {"qr": cfg.qr is not None, "login": cfg.login is not None,
                      "lookup": cfg.lookup is not None, "deletion": True},
        "deletion_signed": shim.delete_secret is not None,
        "open_doctor_sessions": app.store.sessions.count_open(),
        "deletions_received": len(app.store.deletions.list(limit=1000)),
    }
