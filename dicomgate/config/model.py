"""Frozen, typed configuration objects. Durations are seconds, sizes bytes."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from .. import spool_layout
from ..state.pg import PgLocation

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Secret:
    """A secret value that never prints itself (repr, str, logs, status)."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str):
        self._value = value
        self.source = source  # "config", "file:/path" or "env:NAME": safe to show

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(<hidden>, from {self.source})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class GatewayConfig:
    hospital_id: str
    state_dir: Path
    timezone: ZoneInfo
    # Other institution codes of the same hospital group that this gateway also acts for.
    group_hospital_ids: tuple[str, ...] = ()
    # This node's name among nodes sharing a [state] url (default: the host name).
    node_name: str = ""

    @property
    def served_hospitals(self) -> tuple[str, ...]:
        """Every hospitalId the HTTP shim accepts, ours first."""
        return (self.hospital_id, *(h for h in self.group_hospital_ids
                                    if h != self.hospital_id))

    @property
    def spool_dir(self) -> Path:
        return spool_layout.spool_dir(self.state_dir)

    @property
    def quarantine_dir(self) -> Path:
        return spool_layout.quarantine_dir(self.state_dir)

    @property
    def db_path(self) -> Path:
        return self.state_dir / "state.db"


@dataclass(frozen=True)
class DicomConfig:
    ae_title: str
    bind: str = "0.0.0.0"
    port: int = 11112
    min_free_disk: int = 5 * 1024**3
    allowed_calling_aets: tuple[str, ...] = ()  # besides pacs.ae_title
    # private storage SOP classes the Portal AET accepts too (e.g. Siemens CSA Non-Image)
    extra_sop_classes: tuple[str, ...] = ()
    network_timeout: float = 60.0
    # Portal AET processes accepting on the one port (SO_REUSEPORT): associations from a
    # PACS sending several at once are spread over them instead of sharing one GIL.
    scp_processes: int = 1


@dataclass(frozen=True)
class PacsConfig:
    ae_title: str
    host: str
    port: int = 104
    echo_interval: float = 60.0
    timeout: float = 30.0
    move_timeout: float = 3600.0
    # Associations dicomgate opens to the PACS at once (retrieve tasks running together):
    # a hung C-MOVE holds one of these, never the workers of other kinds.
    max_associations: int = 2
    # Due retrieves moved by one C-MOVE (a list of Study Instance UIDs): at most this many
    # studies, and this many instances (the PACS's NumberOfStudyRelatedInstances) in all.
    move_batch: int = 16
    move_batch_instances: int = 2000
    # "auto": learned per PACS from what arrives; "on"/"off": forced
    list_moves: str = "auto"


@dataclass(frozen=True)
class ViewConfig:
    connection: Secret
    name: str = "View_Pacs_Text_Info"
    columns: tuple[tuple[str, str], ...] = ()  # (canonical field, site column)
    batch_size: int = 500
    encoding: str = ""  # "" = driver default; "gbk"/"gb18030" for GBK databases
    # How the driver's wide (SQL_WCHAR) text is decoded: "auto" chooses per driver
    # (reports/view_dialect.py); "utf-16le" is ODBC's own, "utf-8" what some drivers send.
    text_decoding: str = "auto"
    timeout: float = 30.0
    time_format: str = "auto"  # how the time columns are kept; "auto": learned by sampling
    time_formats: tuple[tuple[str, str], ...] = ()  # (canonical time field, format)

    def column(self, canonical: str) -> str:
        return dict(self.columns).get(canonical, canonical)

    def format_of(self, canonical: str) -> str:
        return dict(self.time_formats).get(canonical, self.time_format)


@dataclass(frozen=True)
class ReportsHttpConfig:
    url: str
    timeout: float = 30.0
    token: Secret | None = None


@dataclass(frozen=True)
class ReportsConfig:
    source: str  # "view" | "http"
    poll_interval: float = 120.0
    overlap: float = 600.0
    settle_delay: float = 300.0
    initial_lookback: float = 86400.0
    reconcile_interval: float = 6 * 3600.0  # 0: the daemon does not reconcile
    reconcile_lookback: float = 2 * 86400.0  # each reconciliation checks this far back
    view: ViewConfig | None = None
    http: ReportsHttpConfig | None = None


@dataclass(frozen=True)
class ImagesConfig:
    source: str = "dicom"  # "dicom" | "http"
    http_timeout: float = 60.0


@dataclass(frozen=True, kw_only=True)
class HttpClientConfig:
    """TLS and authentication of outgoing HTTP (dicomgate.http_client builds the session)."""
    auth: str = "none"  # "none" | "bearer" | "hmac"
    token: Secret | None = None
    hmac_key_id: str = ""
    hmac_secret: Secret | None = None
    verify_tls: bool = True
    ca_bundle: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None


@dataclass(frozen=True)
class UpstreamConfig(HttpClientConfig):
    dicomweb_url: str
    api_url: str
    concurrency: int = 4
    batch_max_bytes: int = 32 * 1024**2
    batch_max_instances: int = 100
    batch_max_studies: int = 16  # studies whose uploads one worker takes together (1: alone)
    batch_wait: float = 1.0  # a study being retrieved waits this long to go in one request
    timeout: float = 60.0
    retention: float = 7 * 86400.0
    confirm_delay: float = 5.0


@dataclass(frozen=True)
class ShimConfig:
    bind: str = "0.0.0.0"
    port: int = 8080
    allow: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.1/32"),)
    delete_secret: Secret | None = None
    max_body: int = 1024**2
    threads: int = 8  # workers for QR, login, deletion and operations endpoints
    queue: int = 64  # requests waiting for those workers before "busy" (503)
    lookup_threads: int = 4  # lookups run apart so a hung platform never delays printing
    lookup_queue: int = 8  # lookups waiting before "busy" (202)
    max_connections: int = 1000
    max_connections_per_source: int = 64
    request_timeout: float = 10.0  # the whole request head and body must arrive within this
    keepalive_timeout: float = 15.0  # an idle keep-alive connection is closed after this
    host_names: tuple[str, ...] = ()  # names callers may put in Host/Origin (besides our IPs)
    rate: float = 250.0  # requests per second per calling address (token bucket; 0: off)
    burst: int = 500  # requests a calling address may send at once before `rate` applies


@dataclass(frozen=True)
class QrConfig:
    film_url: str
    sm4_key: Secret
    font_path: Path | None = None


@dataclass(frozen=True)
class LoginConfig:
    sm2_private_key: Secret
    sm2_mode: str = "C1C3C2"  # or "C1C2C3"
    session_ttl: float = 12 * 3600.0


@dataclass(frozen=True)
class LookupConfig(HttpClientConfig):
    province_dicomweb_url: str | None = None
    national_dicomweb_url: str | None = None
    timeout: float = 3.0


@dataclass(frozen=True)
class ConsoleConfig:
    """The operator console at /console/ on the shim's listener."""

    operator_token: Secret | None = None  # actions (retry, re-read) need it; read-only without
    local_actions: bool = False  # callers on this host (loopback) may act without the token
    refresh: float = 5.0  # how often an open page asks for fresh figures
    language: str = "zh"  # "zh" | "en": the page's first language (a switch changes it)


@dataclass(frozen=True)
class TasksConfig:
    workers: int = 4
    max_attempts: int = 12
    backoff_base: float = 10.0
    backoff_max: float = 3600.0
    lease: float = 300.0
    shutdown_grace: float = 20.0


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    format: str = "auto"  # "auto" | "json" | "console"


@dataclass(frozen=True)
class StateConfig:
    """[state]: absent, SQLite under gateway.state_dir; with `url`, a PostgreSQL store
    shared by every node of this gateway."""

    url: Secret  # postgresql://user@host:port/db (a password inside is kept secret)


@dataclass(frozen=True)
class Config:
    path: Path
    gateway: GatewayConfig
    dicom: DicomConfig
    pacs: PacsConfig | None = None
    reports: ReportsConfig | None = None
    images: ImagesConfig | None = None
    upstream: UpstreamConfig | None = None
    shim: ShimConfig | None = None
    qr: QrConfig | None = None
    login: LoginConfig | None = None
    lookup: LookupConfig | None = None
    console: ConsoleConfig | None = None
    tasks: TasksConfig = field(default_factory=TasksConfig)
    log: LogConfig = field(default_factory=LogConfig)
    state: StateConfig | None = None

    @property
    def store_location(self) -> Path | PgLocation:
        """Where the state store is: SQLite's file in the state dir, or the shared
        PostgreSQL store (this node's own files stay in its state dir)."""
        if self.state is None:
            return self.gateway.db_path
        return PgLocation(self.state.url.reveal(), self.gateway.state_dir,
                          self.gateway.node_name)

    def features(self) -> dict[str, bool]:
        """Which features this configuration turns on (shown by check-config)."""
        return {
            # With no PACS and no allowed sender, nobody may store: the SCP does not start.
            "storage SCP (Portal AET)": self.pacs is not None
            or bool(self.dicom.allowed_calling_aets),
            "PACS echo / C-MOVE retrieve": self.pacs is not None,
            "report polling": self.reports is not None,
            "HTTP image download": self.images is not None and self.images.source == "http",
            "upstream delivery": self.upstream is not None,
            "HTTP shim": self.shim is not None,
            "QR code": self.shim is not None and self.qr is not None,
            "doctor login sync": self.shim is not None and self.login is not None,
            "cross-hospital lookup": self.shim is not None and self.lookup is not None,
            "operator console": self.shim is not None and self.console is not None,
        }
