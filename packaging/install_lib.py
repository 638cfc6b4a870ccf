"""Helpers of install.sh that are easier in Python (stdlib only, runs on the host's Python).

  install_lib.py odbc-check CONFIG         the ODBC driver/DSN the config names is installed
  install_lib.py new-keys OLD NEW          keys of example NEW that OLD lacks (commented too)
  install_lib.py render-unit UNIT --prefix P --config-dir C --state-dir S --user U
  install_lib.py backup DB DEST            consistent copy of a live SQLite store (0600)
  install_lib.py restore BACKUP DB         put a backup back in place of the store
"""

from __future__ import annotations

import argparse
import configparser
import os
import re
import sqlite3
import sys
import tomllib
from pathlib import Path

# Where each ODBC driver comes from, by a word of its odbcinst.ini name.
DRIVER_SOURCES = {
    "sqlite": "Debian/Ubuntu: libsqliteodbc; openEuler/Kylin/UOS: sqliteodbc",
    "postgres": "Debian/Ubuntu: odbc-postgresql; openEuler/Kylin/UOS: postgresql-odbc",
    "mariadb": "Debian/Ubuntu: odbc-mariadb; openEuler/Kylin/UOS: mariadb-connector-odbc",
    "mysql": "Debian/Ubuntu: odbc-mariadb; openEuler/Kylin/UOS: mariadb-connector-odbc "
             "(or MySQL Connector/ODBC from the vendor)",
    "sql server": "Microsoft's msodbcsql18 package (from Microsoft, not the distribution)",
    "oracle": "Oracle Instant Client ODBC (from Oracle)",
    "dm": "达梦 DM8 ODBC driver (from the DM installation)",
    "kingbase": "人大金仓 KingbaseES ODBC driver (from the Kingbase installation)",
}


def _ini(paths: list[str]) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None, strict=False)
    cp.optionxform = str  # keep key case
    for p in paths:
        try:
            cp.read(p, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError):
            pass
    return cp


def _odbc_paths(name: str) -> list[str]:
    sysini = os.environ.get("ODBCSYSINI", "/etc")
    return [f"{sysini}/{name}", f"/etc/{name}", f"/usr/local/etc/{name}"]


def _source_hint(driver: str) -> str:
    low = driver.lower()
    for word, where in DRIVER_SOURCES.items():
        if word in low:
            return where
    return "the PACS database vendor's ODBC driver"


def odbc_check(config: Path) -> int:
    try:
        data = tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        print(f"{config} cannot be read: {exc}")
        return 1
    reports = data.get("reports", {})
    if reports.get("source", "view") != "view" or "view" not in reports:
        return 0
    view = reports["view"]
    conn = view.get("connection")
    if conn is None and "connection_file" in view:
        try:
            conn = Path(view["connection_file"]).read_text(encoding="utf-8").strip()
        except OSError:
            return 0  # check-config names an unreadable secret file
    if not conn:
        return 0  # from the environment: not visible here
    parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
    parts = {k.strip().upper(): v.strip() for k, v in parts.items()}
    drivers = _ini(_odbc_paths("odbcinst.ini"))
    driver = parts.get("DRIVER", "").strip("{}")
    if not driver and "DSN" in parts:
        dsns = _ini(_odbc_paths("odbc.ini"))
        dsn = parts["DSN"]
        if not dsns.has_section(dsn):
            print(f"ODBC data source {dsn!r} (reports.view.connection) is not in "
                  f"/etc/odbc.ini: define it there, naming its Driver")
            return 1
        driver = dsns.get(dsn, "Driver", fallback="")
        if "/" in driver or driver.endswith(".so"):
            return _driver_file(driver, f"DSN {dsn}")
    if not driver:
        return 0
    if "/" in driver or driver.endswith(".so"):
        return _driver_file(driver, "reports.view.connection")
    if not drivers.has_section(driver):
        print(f"ODBC driver {driver!r} (reports.view.connection) is not in odbcinst.ini; "
              f"it comes from {_source_hint(driver)}")
        return 1
    lib = drivers.get(driver, "Driver", fallback="")
    return _driver_file(lib, f"driver {driver!r}") if lib else 0


# Where unixODBC's dlopen finds a driver named without a folder (Debian keeps them in odbc/).
LIB_DIRS = ("/usr/lib/*/odbc", "/usr/lib64/odbc", "/usr/lib/odbc", "/usr/lib/*-linux-gnu",
            "/usr/lib64", "/usr/lib", "/usr/local/lib", "/usr/local/lib64", "/lib64", "/lib")


def _driver_found(path: str) -> bool:
    if "/" in path:
        return Path(path).exists()
    import glob

    return any(glob.glob(f"{d}/{path}") for d in LIB_DIRS)


def _driver_file(path: str, what: str) -> int:
    if _driver_found(path):
        return 0
    print(f"ODBC {what} names {path}, which is missing; it comes from {_source_hint(path)}")
    return 1


KEY = re.compile(r"^\s*#?\s*([A-Za-z_][A-Za-z0-9_]*)\s*=")
SECTION = re.compile(r"^\s*#?\s*\[([A-Za-z0-9_.]+)\]\s*(#.*)?$")


def example_keys(path: Path) -> dict[str, str]:
    """section.key -> its line, commented-out keys included (the example documents them)."""
    out: dict[str, str] = {}
    section = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        m = SECTION.match(line)
        if m:
            section = m.group(1)
            continue
        m = KEY.match(line)
        if m:
            out.setdefault(f"{section}.{m.group(1)}" if section else m.group(1), line.strip())
    return out


def new_keys(old: Path, new: Path) -> int:
    before = example_keys(old)
    for key, line in example_keys(new).items():
        if key not in before:
            print(f"[{key.rsplit('.', 1)[0]}] {line}" if "." in key else line)
    return 0


def render_unit(unit: Path, prefix: str, config_dir: str, state_dir: str, user: str) -> int:
    text = unit.read_text(encoding="utf-8")
    text = text.replace("/opt/dicomgate", prefix)
    text = text.replace("/etc/dicomgate", config_dir).replace("/var/lib/dicomgate", state_dir)
    text = re.sub(r"^User=.*$", f"User={user}", text, flags=re.M)
    text = re.sub(r"^Group=.*$", f"Group={user}", text, flags=re.M)
    # StateDirectory=/ConfigurationDirectory= only name folders under /var/lib and /etc.
    if state_dir != "/var/lib/dicomgate":
        text = re.sub(r"^StateDirectory(Mode)?=.*\n", "", text, flags=re.M)
    if config_dir != "/etc/dicomgate":
        text = re.sub(r"^ConfigurationDirectory(Mode)?=.*\n", "", text, flags=re.M)
    sys.stdout.write(text)
    return 0


def backup(db: Path, dest: Path) -> int:
    """SQLite's online backup: a consistent copy even of a WAL store with readers."""
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = dest.with_name(dest.name + ".part")
    old = os.umask(0o077)
    try:
        src = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        out = sqlite3.connect(tmp)
        with out:
            src.backup(out)
        out.close()
        src.close()
        os.replace(tmp, dest)
    except sqlite3.Error as exc:
        tmp.unlink(missing_ok=True)
        print(f"backup of {db} failed: {exc}", file=sys.stderr)
        return 1
    finally:
        os.umask(old)
    return 0


def restore(src: Path, db: Path) -> int:
    """Replace the store by a backup (the daemon is stopped): the WAL of the replaced store
    must go with it, or SQLite would replay it onto the restored file."""
    tmp = db.with_name(db.name + ".restore")
    old = os.umask(0o077)
    try:
        s = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
        out = sqlite3.connect(tmp)
        with out:
            s.backup(out)
        out.close()
        s.close()
        for suffix in ("-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        os.replace(tmp, db)
    except sqlite3.Error as exc:
        tmp.unlink(missing_ok=True)
        print(f"restoring {db} from {src} failed: {exc}", file=sys.stderr)
        return 1
    finally:
        os.umask(old)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="install_lib.py")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("odbc-check").add_argument("config", type=Path)
    p = sub.add_parser("new-keys")
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path)
    p = sub.add_parser("render-unit")
    p.add_argument("unit", type=Path)
    for opt in ("--prefix", "--config-dir", "--state-dir", "--user"):
        p.add_argument(opt, required=True)
    for name in ("backup", "restore"):
        p = sub.add_parser(name)
        p.add_argument("src", type=Path)
        p.add_argument("dest", type=Path)
    a = ap.parse_args(argv)
    if a.cmd == "odbc-check":
        return odbc_check(a.config)
    if a.cmd == "new-keys":
        return new_keys(a.old, a.new)
    if a.cmd == "render-unit":
        return render_unit(a.unit, a.prefix, a.config_dir, a.state_dir, a.user)
    if a.cmd == "backup":
        return backup(a.src, a.dest)
    return restore(a.src, a.dest)


if __name__ == "__main__":
    sys.exit(main())
