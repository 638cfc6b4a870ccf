"""Load the TOML file once into a frozen `Config`, or raise with every problem."""

from __future__ import annotations

import dataclasses
import os
import socket
import tomllib
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..exam_record import CANONICAL_FIELDS, TIME_FIELDS  # keys of [reports.view.columns]
from . import model, values
from .reader import Problems, Table

DEFAULT_PATH = Path("/etc/dicomgate/dicomgate.toml")


class ConfigError(Exception):
    """Every problem found in the file, one line each: `key.path: problem (expected)`."""

    def __init__(self, path: Path, lines: list[str]):
        super().__init__("\n".join(lines))
        self.path = path
        self.lines = lines


def config_path(cli_value: str | None) -> Path:
    """--config PATH, else $DICOMGATE_CONFIG, else /etc/dicomgate/dicomgate.toml."""
    if cli_value:
        return Path(cli_value)
    env = os.environ.get("DICOMGATE_CONFIG")
    return Path(env) if env else DEFAULT_PATH


def load(path: Path) -> model.Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, [f"{path}: file not found (a dicomgate TOML file; "
                                 "see conf/dicomgate.toml)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [f"{path}: cannot read: {exc} (a UTF-8 file readable "
                                 "by this user)"]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"{path}: TOML syntax error: {exc} (valid TOML)"]) from None
    return parse(raw, path)


def parse(raw: dict, path: Path) -> model.Config:
    problems = Problems()
    root = Table(problems, "", raw, path.parent.resolve())
    gateway = _required(root, "gateway", _gateway)
    dicom = _required(root, "dicom", _dicom)
    sections = {name: _optional(root, name, fn) for name, fn in _OPTIONAL.items()}
    tasks = _optional(root, "tasks", _tasks) or model.TasksConfig()
    state = _optional(root, "state", _state)
    log = _optional(root, "log", _log) or model.LogConfig()
    root.finish()
    _cross_checks(problems, sections)
    if problems.lines:
        raise ConfigError(path, problems.lines)
    return model.Config(path=path, gateway=gateway, dicom=dicom, tasks=tasks, log=log,
                        state=state, **sections)


def _defaults(cls: type) -> dict[str, Any]:
    """A section's defaults as the model declares them: each default is written once."""
    return {f.name: f.default for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING}


def _required(root: Table, name: str, fn):
    t = root.table(name)
    if t is None:
        if name not in root.raw:
            root.problems.add(name, "section missing", f"a [{name}] section")
        return None
    out = fn(t)
    t.finish()
    return out


def _optional(root: Table, name: str, fn):
    t = root.table(name)
    if t is None:
        return None
    out = fn(t)
    t.finish()
    return out


def _gateway(t: Table) -> model.GatewayConfig:
    def tz(raw: object) -> ZoneInfo:
        try:
            return ZoneInfo(str(raw))
        except (ZoneInfoNotFoundError, ValueError):
            raise values.BadValue(f"{raw!r} is not a known time zone",
                                  'an IANA zone such as "Asia/Shanghai"') from None

    return model.GatewayConfig(
        hospital_id=t.str("hospital_id"),
        state_dir=t.path_value("state_dir", Path("/var/lib/dicomgate")),
        timezone=t.value("timezone", tz, ZoneInfo("Asia/Shanghai")),
        group_hospital_ids=tuple(t.list_of("group_hospital_ids", values.hospital_code, ())),
        node_name=t.value("node_name", values.node_name, socket.gethostname()),
    )


def _dicom(t: Table) -> model.DicomConfig:
    d = _defaults(model.DicomConfig)
    return model.DicomConfig(
        ae_title=t.value("ae_title", values.ae_title),
        bind=t.value("bind", values.host, d["bind"]),
        port=t.value("port", values.port, d["port"]),
        min_free_disk=t.value("min_free_disk", values.size, d["min_free_disk"]),
        allowed_calling_aets=t.list_of("allowed_calling_aets", values.ae_title,
                                       d["allowed_calling_aets"]),
        extra_sop_classes=t.list_of("extra_sop_classes", values.uid, d["extra_sop_classes"]),
        network_timeout=t.value("network_timeout", values.duration, d["network_timeout"]),
        scp_processes=t.int("scp_processes", d["scp_processes"], lo=1, hi=16),
    )


def _pacs(t: Table) -> model.PacsConfig:
    d = _defaults(model.PacsConfig)
    return model.PacsConfig(
        ae_title=t.value("ae_title", values.ae_title),
        host=t.value("host", values.host),
        port=t.value("port", values.port, d["port"]),
        echo_interval=t.value("echo_interval", values.duration, d["echo_interval"]),
        timeout=t.value("timeout", values.duration, d["timeout"]),
        move_timeout=t.value("move_timeout", values.duration, d["move_timeout"]),
        max_associations=t.int("max_associations", d["max_associations"], lo=1, hi=32),
        move_batch=t.int("move_batch", d["move_batch"], lo=1, hi=64),
        move_batch_instances=t.int("move_batch_instances", d["move_batch_instances"], lo=1,
                                   hi=1_000_000),
        list_moves=t.str("list_moves", d["list_moves"], choices=("auto", "on", "off")),
    )


def _reports(t: Table) -> model.ReportsConfig:
    d = _defaults(model.ReportsConfig)
    view = t.table("view")
    http = t.table("http")
    out = model.ReportsConfig(
        source=t.str("source", choices=("view", "http")),
        poll_interval=t.value("poll_interval", values.duration, d["poll_interval"]),
        overlap=t.value("overlap", values.duration, d["overlap"]),
        settle_delay=t.value("settle_delay", values.duration, d["settle_delay"]),
        initial_lookback=t.value("initial_lookback", values.duration, d["initial_lookback"]),
        reconcile_interval=t.value("reconcile_interval", values.duration,
                                   d["reconcile_interval"]),
        reconcile_lookback=t.value("reconcile_lookback", values.duration,
                                   d["reconcile_lookback"]),
        view=_view(view) if view else None,
        http=_reports_http(http) if http else None,
    )
    if out.source == "view" and view is None:
        t.problems.add("reports.view", 'section missing while reports.source = "view"',
                       "a [reports.view] section with connection and name")
    if out.source == "http" and http is None:
        t.problems.add("reports.http", 'section missing while reports.source = "http"',
                       "a [reports.http] section with url")
    return out


def _view(t: Table) -> model.ViewConfig:
    d = _defaults(model.ViewConfig)
    columns: list[tuple[str, str]] = []
    ct = t.table("columns")
    if ct is not None:
        for field in CANONICAL_FIELDS:
            col = ct.value(field, values.sql_identifier, None)
            if col:
                columns.append((field, col))
        ct.finish()
    formats: list[tuple[str, str]] = []
    ft = t.table("time_formats")
    if ft is not None:
        for field in TIME_FIELDS:
            fmt = ft.value(field, values.time_format, None)
            if fmt:
                formats.append((field, fmt))
        ft.finish()
    out = model.ViewConfig(
        connection=t.secret("connection"),
        name=t.value("name", lambda raw: values.sql_identifier(raw, dotted=True), d["name"]),
        columns=tuple(columns),
        batch_size=t.int("batch_size", d["batch_size"], lo=1, hi=100_000),
        encoding=t.str("encoding", d["encoding"], choices=("", "utf-8", "gbk", "gb18030")),
        text_decoding=t.str("text_decoding", d["text_decoding"],
                            choices=("auto", "utf-16le", "utf-8", "gbk", "gb18030")),
        timeout=t.value("timeout", values.duration, d["timeout"]),
        time_format=t.value("time_format", values.time_format, d["time_format"]),
        time_formats=tuple(formats),
    )
    t.finish()
    return out


def _reports_http(t: Table) -> model.ReportsHttpConfig:
    d = _defaults(model.ReportsHttpConfig)
    out = model.ReportsHttpConfig(
        url=t.value("url", values.url),
        timeout=t.value("timeout", values.duration, d["timeout"]),
        token=t.secret("token", required=False),
    )
    t.finish()
    return out


def _images(t: Table) -> model.ImagesConfig:
    d = _defaults(model.ImagesConfig)
    return model.ImagesConfig(
        source=t.str("source", d["source"], choices=("dicom", "http")),
        http_timeout=t.value("http_timeout", values.duration, d["http_timeout"]),
    )


def _upstream(t: Table) -> model.UpstreamConfig:
    d = _defaults(model.UpstreamConfig)
    return model.UpstreamConfig(
        dicomweb_url=t.value("dicomweb_url", values.url),
        api_url=t.value("api_url", values.url),
        **_http_client(t),
        concurrency=t.int("concurrency", d["concurrency"], lo=1, hi=64),
        batch_max_bytes=t.value("batch_max_bytes", values.size, d["batch_max_bytes"]),
        batch_max_instances=t.int("batch_max_instances", d["batch_max_instances"],
                                  lo=1, hi=10_000),
        batch_max_studies=t.int("batch_max_studies", d["batch_max_studies"], lo=1, hi=1000),
        batch_wait=t.value("batch_wait", values.duration, d["batch_wait"]),
        timeout=t.value("timeout", values.duration, d["timeout"]),
        retention=t.value("retention", values.duration, d["retention"]),
        confirm_delay=t.value("confirm_delay", values.duration, d["confirm_delay"]),
    )


def _http_client(t: Table) -> dict[str, Any]:
    """TLS and authentication keys, the same in every section that makes HTTP requests."""
    d = _defaults(model.HttpClientConfig)
    auth = t.str("auth", d["auth"], choices=("none", "bearer", "hmac"))
    out = dict(
        auth=auth,
        token=t.secret("token", required=auth == "bearer"),
        hmac_key_id=t.str("hmac_key_id", d["hmac_key_id"]),
        hmac_secret=t.secret("hmac_secret", required=auth == "hmac"),
        verify_tls=t.bool("verify_tls", d["verify_tls"]),
        ca_bundle=t.path_value("ca_bundle", None, must_exist=True),
        client_cert=t.path_value("client_cert", None, must_exist=True),
        client_key=t.path_value("client_key", None, must_exist=True),
    )
    if out["client_key"] and not out["client_cert"]:
        t.problems.add(t.key("client_key"), "given without client_cert",
                       "client_cert and client_key together")
    return out


def _shim(t: Table) -> model.ShimConfig:
    d = _defaults(model.ShimConfig)
    return model.ShimConfig(
        bind=t.value("bind", values.host, d["bind"]),
        port=t.value("port", values.port, d["port"]),
        allow=t.list_of("allow", values.cidr, d["allow"]),
        delete_secret=t.secret("delete_secret", required=False),
        max_body=t.value("max_body", values.size, d["max_body"]),
        threads=t.int("threads", d["threads"], lo=1, hi=256),
        queue=t.int("queue", d["queue"], lo=1, hi=10000),
        lookup_threads=t.int("lookup_threads", d["lookup_threads"], lo=1, hi=64),
        lookup_queue=t.int("lookup_queue", d["lookup_queue"], lo=0, hi=1000),
        max_connections=t.int("max_connections", d["max_connections"], lo=8, hi=100000),
        max_connections_per_source=t.int("max_connections_per_source",
                                         d["max_connections_per_source"], lo=1, hi=100000),
        request_timeout=t.value("request_timeout", values.duration, d["request_timeout"]),
        keepalive_timeout=t.value("keepalive_timeout", values.duration,
                                  d["keepalive_timeout"]),
        host_names=tuple(h.lower() for h in t.list_of("host_names", values.host,
                                                      d["host_names"])),
        rate=float(t.int("rate", int(d["rate"]), lo=0, hi=1_000_000)),
        burst=t.int("burst", d["burst"], lo=1, hi=1_000_000),
    )


def _qr(t: Table) -> model.QrConfig:
    key = t.secret("sm4_key")
    if key is not None:
        try:
            values.hex_key(key.reveal(), 16)
        except values.BadValue as exc:
            t.problems.add(t.key("sm4_key"), exc.problem, exc.expected)
    return model.QrConfig(
        film_url=t.value("film_url", values.url),
        sm4_key=key,
        font_path=t.path_value("font_path", None, must_exist=True),
    )


def _login(t: Table) -> model.LoginConfig:
    d = _defaults(model.LoginConfig)
    key = t.secret("sm2_private_key")
    if key is not None:
        try:
            values.hex_key(key.reveal(), 32)
        except values.BadValue as exc:
            t.problems.add(t.key("sm2_private_key"), exc.problem, exc.expected)
    return model.LoginConfig(
        sm2_private_key=key,
        sm2_mode=t.str("sm2_mode", d["sm2_mode"], choices=("C1C3C2", "C1C2C3")),
        session_ttl=t.value("session_ttl", values.duration, d["session_ttl"]),
    )


def _lookup(t: Table) -> model.LookupConfig:
    d = _defaults(model.LookupConfig)
    out = model.LookupConfig(
        province_dicomweb_url=t.value("province_dicomweb_url", values.url, None),
        national_dicomweb_url=t.value("national_dicomweb_url", values.url, None),
        timeout=t.value("timeout", values.duration, d["timeout"]),
        **_http_client(t),
    )
    if not out.province_dicomweb_url and not out.national_dicomweb_url:
        t.problems.add("lookup", "no platform URL",
                       "province_dicomweb_url and/or national_dicomweb_url")
    return out


def _console(t: Table) -> model.ConsoleConfig:
    token = t.secret("operator_token", required=False)
    if token is not None and len(token.reveal().strip()) < 16:
        t.problems.add(t.key("operator_token"), "shorter than 16 characters",
                       "a long random string, e.g. from `openssl rand -hex 24`")
    return model.ConsoleConfig(
        operator_token=token,
        local_actions=t.bool("local_actions", False),
        refresh=t.value("refresh", values.duration, 5.0),
        language=t.str("language", "zh", choices=("zh", "en")),
    )


def _tasks(t: Table) -> model.TasksConfig:
    d = _defaults(model.TasksConfig)
    return model.TasksConfig(
        workers=t.int("workers", d["workers"], lo=1, hi=64),
        max_attempts=t.int("max_attempts", d["max_attempts"], lo=1, hi=1000),
        backoff_base=t.value("backoff_base", values.duration, d["backoff_base"]),
        backoff_max=t.value("backoff_max", values.duration, d["backoff_max"]),
        lease=t.value("lease", values.duration, d["lease"]),
        shutdown_grace=t.value("shutdown_grace", values.duration, d["shutdown_grace"]),
    )


def _log(t: Table) -> model.LogConfig:
    d = _defaults(model.LogConfig)
    return model.LogConfig(
        level=t.str("level", d["level"], choices=("debug", "info", "warning", "error")),
        format=t.str("format", d["format"], choices=("auto", "json", "console")),
    )


def _state(t: Table) -> model.StateConfig | None:
    url = t.secret("url")
    if url is None:
        return None
    if not url.reveal().startswith(("postgresql://", "postgres://")):
        t.problems.add(t.key("url"), f"not a PostgreSQL URL (from {url.source})",
                       '"postgresql://user@host:5432/dbname" (the password in url_file or '
                       "url_env, or in the service user's ~/.pgpass)")
        return None
    return model.StateConfig(url=url)


_OPTIONAL = {
    "pacs": _pacs, "reports": _reports, "images": _images, "upstream": _upstream,
    "shim": _shim, "qr": _qr, "login": _login, "lookup": _lookup, "console": _console,
}


def _cross_checks(problems: Problems, s: dict) -> None:
    console = s.get("console")
    if console is not None and s.get("shim") is None:
        problems.add("console", "section given without [shim]",
                     "a [shim] section: the console is served on the shim's listener")
    if console is not None and console.refresh < 1.0:
        problems.add("console.refresh", f"{console.refresh:g}s is too often",
                     'at least "1s" (each open page reads the state store this often)')
    images = s.get("images")
    if (images is None or images.source == "dicom") and s.get("pacs") is None \
            and s.get("reports") is not None:
        problems.add("pacs", "section missing while images come by C-MOVE",
                     'a [pacs] section, or [images] source = "http"')
