"""Fixtures every test package may use."""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from tests.support import engines, write_config


def pytest_configure(config: pytest.Config) -> None:
    # pytest keeps only the newest 3 /tmp/pytest-of-<user>/pytest-N dirs and deletes older
    # ones at start: two checkouts testing at once would delete each other's live temp dirs.
    if config.option.basetemp is None:
        tag = hashlib.sha1(str(config.rootpath).encode()).hexdigest()[:8]
        config.option.basetemp = Path(tempfile.gettempdir()) / f"pytest-dicomgate-{tag}"
    if not hasattr(config, "workerinput"):  # the controller, before any worker starts
        # what the workers of an earlier run built for each other (tests/install)
        for old in Path(config.option.basetemp).glob("shared-*"):
            shutil.rmtree(old, ignore_errors=True)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """A command run in-process (`pull`, `sync`, `push --once`) configures structlog and the
    root logger onto the test's captured stderr: undo it, so no later test's logger writes
    to a closed capture stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


# pytest-xdist (--dist loadscope) hands out modules in collection order, two to each worker at
# the start (worker k gets the k-th and the (k+7)-th), then one to whichever frees first. The
# long modules go first so that none starts late and runs alone at the end: the seven longest
# one per worker, then the next seven shortest first, so each worker's pair evens out. Figures:
# a module's seconds in a whole run on two cores (durations summed). The OCI image test goes
# last: it waits for the build scripts/test started in the background at the beginning.
LONG = (
    "tests/install/test_offline_install.py",  # 171: it builds the run's bundle
    "tests/install/test_schema_upgrade.py",  # 140
    "tests/healing/test_cmove_faults.py",  # 86
    "tests/ha/test_two_nodes_node_killed.py",  # 72: waits out a 30 s node timeout
    "tests/demo/test_demo.py",  # 65
    "tests/foundation/test_config.py",  # 45
    "tests/console/test_console_browser.py",  # 44
    "tests/ha/test_two_nodes_backlog.py",  # 21
    "tests/shim/test_shim_generated.py",  # 23
    "tests/healing/test_spool_filesystem.py",  # 32
    "tests/cli/test_cli_migrate.py",  # 33
    "tests/ha/test_two_nodes_leader_killed.py",  # 35
    "tests/reports/test_view_every_database.py",  # 37
    "tests/ha/test_two_nodes_store_restart.py",  # 40
    "tests/install/test_bundle_without_wheel.py",  # 43
    "tests/images/test_images_repair.py",  # 38
)
LAST = "tests/install/test_oci_image.py"


def _rank(item: pytest.Item) -> int:
    path = item.nodeid.split("::")[0]
    return LONG.index(path) if path in LONG else len(LONG) + (path == LAST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: the order within each module and among the rest is pytest's


@pytest.fixture(autouse=True)
def _engine(request: pytest.FixtureRequest) -> Iterator[None]:
    """The state store's engine for this test (tests/support/engines.py): the suite's
    choice, or SQLite for a test marked sqlite_only."""
    sqlite_only = request.node.get_closest_marker("sqlite_only") is not None
    engines.use("sqlite" if sqlite_only else engines.CHOSEN)
    yield
    engines.use(engines.CHOSEN)


def pytest_report_header(config: pytest.Config) -> str:
    return f"dicomgate state store engine: {engines.CHOSEN} (DICOMGATE_TEST_ENGINE)"


@pytest.fixture
def minimal_config(tmp_path: Path) -> Path:
    """[gateway] + [dicom] only, state under tmp_path, SCP on a port nobody uses."""
    return write_config(tmp_path / "dicomgate.toml", f"""
[gateway]
hospital_id = "H33010200001"
state_dir = "{tmp_path / 'state'}"

[dicom]
ae_title = "DICOMGATE"
bind = "127.0.0.1"
port = 1
min_free_disk = "1MB"
{engines.state_toml(tmp_path / 'state')}""")

