"""Commands typed while the daemon starts on an empty state dir: the daemon creates the
schema under its lock, a racing command never migrates, so neither can break the other."""

from __future__ import annotations

import importlib
import threading
from pathlib import Path

from dicomgate import daemon
from dicomgate.app import FEATURES
from dicomgate.cli import main
from dicomgate.config import load
from dicomgate.state.migrations import all_migrations
from tests.support import engines, gateway_toml, wait_until, write_config

# Imported here, not first in racing threads (a process imports them once, at start).
for _name in FEATURES:
    importlib.import_module(_name)
LAST = all_migrations()[-1][0]
TRIES = 25  # lost about once in a dozen tries with processes; threads race far more often
COMMANDS = (["status", "--json"], ["tasks", "list"], ["tasks", "retry", "--all-dead"])


def test_commands_racing_a_starting_daemon_break_neither(tmp_path, capsys):
    for n in range(TRIES):
        failures, codes = race_once(tmp_path / f"try{n}")
        capsys.readouterr()
        assert not failures, f"try {n}: {failures}"
        # 0: answered; 4/5: the daemon is creating or upgrading the store, try again
        assert {code for _, code in codes} <= {0, 4, 5}, f"try {n}: {codes}"
        assert main(["--config", str(tmp_path / f"try{n}" / "c.toml"), "status"]) == 0


def race_once(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Start the daemon on an empty state dir while three commands run in a loop."""
    root.mkdir()
    state = root / "state"
    config = write_config(root / "c.toml",
                          gateway_toml(state, 1, bind="127.0.0.1", min_free_disk="1MB"))
    stop, done = threading.Event(), threading.Event()
    failures: list[str] = []
    codes: list[tuple[str, int]] = []

    def run_daemon() -> None:
        try:
            daemon.run(load(config), stop)
        except Exception as exc:
            failures.append(f"daemon: {exc}")
        finally:
            done.set()

    def command(args: list[str]) -> None:
        while not done.is_set() and len(codes) < 300:  # bounded
            codes.append((args[0], main(["--config", str(config), *args])))

    racers = [threading.Thread(target=command, args=(a,)) for a in COMMANDS]
    for t in racers:
        t.start()
    runner = threading.Thread(target=run_daemon)
    runner.start()
    try:
        wait_until(lambda: failures or schema_complete(state), timeout=20,
                   what="the daemon's schema")
    finally:
        stop.set()
        runner.join(20)
        done.set()
        for t in racers:
            t.join(20)
    return failures, codes


def schema_complete(state_dir: Path) -> bool:
    """Read with the engine's own driver: opening a Store is what is under test."""
    return engines.schema_version(state_dir) == LAST
