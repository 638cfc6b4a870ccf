"""Load the TOML file once into a frozen `Config`, or raise with every problem."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import model, values
from .reader import Problems, Table

DEFAULT_PATH = Path("/etc/dicomgate/dicomgate.toml")

# The canonical exam record's fields: the keys allowed under [reports.view.columns].
CANONICAL_FIELDS = (
    "accessionNo", "studyInstanceUid", "hospitalId", "patientId", "patientName", "idCardNo",
    "sex", "age", "birthDate", "patientType", "prfs", "chargeType", "mdtrtId", "psnNo",
    "modality", "imgExamType", "examPart", "examPartName", "examItemName", "applyDept",
    "applyDoctor", "examTime", "refundTime", "auditTime", "modifyTime", "reportTime",
    "examFindings", "examConclusion", "examRsltCode", "reportDoctor", "auditDoctor", "imagePath",
)


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
    log = _optional(root, "log", _log) or model.LogConfig()
    root.finish()
    _cross_checks(problems, sections)
    if problems.lines:
        raise ConfigError(path, problems.lines)
    return model.Config(path=path, gateway=gateway, dicom=dicom, tasks=tasks, log=log,
                        **sections)


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
    )


def _dicom(t: Table) -> model.DicomConfig:
    return model.DicomConfig(
        ae_title=t.value("ae_title", values.ae_title),
        bind=t.value("bind", values.host, "0.0.0.0"),
        port=t.value("port", values.port, 11112),
        min_free_disk=t.value("min_free_disk", values.size, 5 * 1024**3),
        allowed_calling_aets=t.list_of("allowed_calling_aets", values.ae_title, ()),
        network_timeout=t.value("network_timeout", values.duration, 60.0),
    )


def _pacs(t: Table) -> model.PacsConfig:
    return model.PacsConfig(
        ae_title=t.value("ae_title", values.ae_title),
        host=t.value("host", values.host),
        port=t.value("port", values.port, 104),
        echo_interval=t.value("echo_interval", values.duration, 60.0),
        timeout=t.value("timeout", values.duration, 30.0),
        move_timeout=t.value("move_timeout", values.duration, 3600.0),
    )


def _reports(t: Table) -> model.ReportsConfig:
    view = t.table("view")
    http = t.table("http")
    out = model.ReportsConfig(
        source=t.str("source", choices=("view", "http")),
        poll_interval=t.value("poll_interval", values.duration, 120.0),
        overlap=t.value("overlap", values.duration, 600.0),
        settle_delay=t.value("settle_delay", values.duration, 300.0),
        initial_lookback=t.value("initial_lookback", values.duration, 86400.0),
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
    columns: list[tuple[str, str]] = []
    ct = t.table("columns")
    if ct is not None:
        for field in CANONICAL_FIELDS:
            col = ct.str(field, None)
            if col:
                columns.append((field, col))
        ct.finish()
    out = model.ViewConfig(
        connection=t.secret("connection"),
        name=t.str("name", "View_Pacs_Text_Info"),
        columns=tuple(columns),
        batch_size=t.int("batch_size", 500, lo=1, hi=100_000),
        encoding=t.str("encoding", "", choices=("", "utf-8", "gbk", "gb18030")),
        timeout=t.value("timeout", values.duration, 30.0),
    )
    t.finish()
    return out


def _reports_http(t: Table) -> model.ReportsHttpConfig:
    out = model.ReportsHttpConfig(
        url=t.value("url", values.url),
        timeout=t.value("timeout", values.duration, 30.0),
        token=t.secret("token", required=False),
    )
    t.finish()
    return out


def _images(t: Table) -> model.ImagesConfig:
    return model.ImagesConfig(
        source=t.str("source", "dicom", choices=("dicom", "http")),
        http_timeout=t.value("http_timeout", values.duration, 60.0),
    )


def _upstream(t: Table) -> model.UpstreamConfig:
    auth = t.str("auth", "none", choices=("none", "bearer", "hmac"))
    out = model.UpstreamConfig(
        dicomweb_url=t.value("dicomweb_url", values.url),
        api_url=t.value("api_url", values.url),
        auth=auth,
        token=t.secret("token", required=auth == "bearer"),
        hmac_key_id=t.str("hmac_key_id", ""),
        hmac_secret=t.secret("hmac_secret", required=auth == "hmac"),
        verify_tls=t.bool("verify_tls", True),
        ca_bundle=t.path_value("ca_bundle", None, must_exist=True),
        client_cert=t.path_value("client_cert", None, must_exist=True),
        client_key=t.path_value("client_key", None, must_exist=True),
        concurrency=t.int("concurrency", 4, lo=1, hi=64),
        batch_max_bytes=t.value("batch_max_bytes", values.size, 32 * 1024**2),
        batch_max_instances=t.int("batch_max_instances", 100, lo=1, hi=10_000),
        timeout=t.value("timeout", values.duration, 60.0),
        retention=t.value("retention", values.duration, 7 * 86400.0),
        confirm_delay=t.value("confirm_delay", values.duration, 5.0),
    )
    if out.client_key and not out.client_cert:
        t.problems.add(t.key("client_key"), "given without client_cert",
                       "client_cert and client_key together")
    return out


def _shim(t: Table) -> model.ShimConfig:
    return model.ShimConfig(
        bind=t.value("bind", values.host, "0.0.0.0"),
        port=t.value("port", values.port, 8080),
        allow=t.list_of("allow", values.cidr, model.ShimConfig.allow),
        delete_secret=t.secret("delete_secret", required=False),
        max_body=t.value("max_body", values.size, 1024**2),
        threads=t.int("threads", 8, lo=1, hi=256),
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
    key = t.secret("sm2_private_key")
    if key is not None:
        try:
            values.hex_key(key.reveal(), 32)
        except values.BadValue as exc:
            t.problems.add(t.key("sm2_private_key"), exc.problem, exc.expected)
    return model.LoginConfig(
        sm2_private_key=key,
        sm2_mode=t.str("sm2_mode", "C1C3C2", choices=("C1C3C2", "C1C2C3")),
        session_ttl=t.value("session_ttl", values.duration, 12 * 3600.0),
    )


def _lookup(t: Table) -> model.LookupConfig:
    out = model.LookupConfig(
        province_dicomweb_url=t.value("province_dicomweb_url", values.url, None),
        national_dicomweb_url=t.value("national_dicomweb_url", values.url, None),
        timeout=t.value("timeout", values.duration, 3.0),
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
    return model.TasksConfig(
        workers=t.int("workers", 4, lo=1, hi=64),
        max_attempts=t.int("max_attempts", 12, lo=1, hi=1000),
        backoff_base=t.value("backoff_base", values.duration, 10.0),
        backoff_max=t.value("backoff_max", values.duration, 3600.0),
        lease=t.value("lease", values.duration, 300.0),
        shutdown_grace=t.value("shutdown_grace", values.duration, 20.0),
    )


def _log(t: Table) -> model.LogConfig:
    return model.LogConfig(
        level=t.str("level", "info", choices=("debug", "info", "warning", "error")),
        format=t.str("format", "auto", choices=("auto", "json", "console")),
    )


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
