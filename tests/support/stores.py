"""State stores for the tests that drive the repositories directly: two nodes sharing one
PostgreSQL database, and an instance row recorded with placeholder file facts."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dicomgate.state import PgLocation, Store


@contextmanager
def two_nodes(url: str, root: Path) -> Iterator[tuple[Store, Store]]:
    """Nodes gw-a and gw-b on the database at `url`, each with its own state dir."""
    a = Store(PgLocation(url, root / "a", node="gw-a"))
    b = Store(PgLocation(url, root / "b", node="gw-b"))
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def record_instance(store: Store, sop: str, study: str) -> None:
    store.instances.record(sop_uid=sop, study_uid=study, series_uid="1", sop_class_uid="1.2",
                           transfer_syntax="1.2.840.10008.1.2.1", path=f"/spool/{sop}",
                           size=10, sha256=sop, source="test")


def drain_from_both(a: Store, b: Store, kind: str, batch: int) -> dict[str, list[int]]:
    """Both nodes claim batches of `kind` at the same time until none is left; the ids
    each took, by node ("a", "b")."""
    got: dict[str, list[int]] = {"a": [], "b": []}

    def drain(store: Store, name: str) -> None:
        for _ in range(200):  # bounded
            taken = store.tasks.claim_more(kind, f"gw-{name}:1:1", lease=60, limit=batch)
            if not taken:
                return
            assert len(taken) <= batch
            got[name] += [t.id for t in taken]

    threads = [threading.Thread(target=drain, args=(s, n)) for s, n in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return got
