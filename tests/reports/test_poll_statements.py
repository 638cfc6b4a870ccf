"""The poll's statements per batch are bounded whatever the batch's size: the stored exams of
a batch are read together, and an unchanged row (the overlap re-read) costs none of its own.
Counted at the real database: SQLite's trace callback, PostgreSQL's libpq protocol trace."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator

from reports_pacs import Exam, insert_exam_sql
from reports_support import Pacs, open_store, reports_config, view_reports

from dicomgate.config import load
from dicomgate.reports.feature import make_source
from dicomgate.reports.poller import Poller
from dicomgate.state import Store


@contextlib.contextmanager
def statements(store: Store) -> Iterator[list[int]]:
    """Counts the statements this thread's store connection sends while open: one element,
    filled in on exit."""
    out = [0]
    conn = store.db.conn()
    if store.db.engine == "sqlite":
        seen: list[str] = []
        conn.set_trace_callback(seen.append)  # type: ignore[attr-defined]
        try:
            yield out
        finally:
            conn.set_trace_callback(None)  # type: ignore[attr-defined]
        out[0] = len(seen)
        return
    from psycopg.pq import Trace

    pgconn = conn.raw.pgconn  # type: ignore[attr-defined]
    with tempfile.TemporaryFile("w+") as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS)
        try:
            yield out
        finally:
            pgconn.untrace()
        trace.seek(0)
        # each statement is one Parse (extended protocol) or Query (simple) from the client
        out[0] = sum(1 for line in trace if line.split("\t")[:1] == ["F"]
                     and line.split("\t")[2] in ("Parse", "Query"))


def test_unchanged_batch_costs_the_same_few_statements_whatever_its_size(tmp_path):
    pacs = Pacs(tmp_path / "pacs.db")
    config = reports_config(tmp_path, view_reports(
        f"Driver=SQLite3;Database={pacs.path}").replace("batch_size = 7", "batch_size = 500"))
    store = open_store(config)
    poller = Poller(load(config), store, lambda: make_source(load(config)))

    def reread() -> int:
        poller.sync(types=[1])  # the first read of new rows: inserts
        with statements(store) as n:
            (result,) = poller.sync(types=[1])  # the overlap re-read: nothing changed
        assert result.error is None and result.counts.unchanged == result.counts.read
        return n[0]

    try:
        for i in range(5):
            pacs.run(insert_exam_sql(), Exam(f"S{i}", minutes_ago=5 + i / 10).values())
        few = reread()
        for i in range(5, 300):
            pacs.run(insert_exam_sql(), Exam(f"S{i}", minutes_ago=5 + i / 10).values())
        many = reread()
    finally:
        poller.close()
        store.close()
    # measured: 8 on SQLite, 10 on PostgreSQL (BEGIN, its lock, the exams, their tasks,
    # COMMIT; the watermark's own transaction); one look-up per row made it 900
    assert many == few, (few, many)
    assert many <= 12, many


def test_batch_lookups_span_parameter_chunks_and_hospitals(tmp_path):
    """More keys than one statement may carry (900 parameters): every exam is found, each
    under its own hospital, and a key with no exam is absent."""
    from dicomgate.state.kinds import Retrieve
    from tests.support import gateway_toml, write_config

    config = write_config(tmp_path / "dicomgate.toml", gateway_toml(tmp_path / "state", 11112))
    store = open_store(config)
    try:
        ids = {}
        with store.transaction():
            for i in range(1000):
                hid = "H1" if i % 3 else "H2"
                ids[(hid, f"K{i}")] = store.exams.insert(hospital_id=hid, accession_no=f"K{i}")
            store.tasks.enqueue(Retrieve(study_uid=None, accession_no="K1", hospital_id="H1",
                                         exam_id=ids[("H1", "K1")], reason="test"),
                                exam_id=ids[("H1", "K1")])
        wanted = [*ids, ("H1", "K0"), ("H3", "K1"), ("H1", "missing")]
        found = store.exams.by_keys(wanted)
        assert {k: e.id for k, e in found.items()} == ids
        kinds = store.exams.task_kinds(ids.values())
        assert kinds == {ids[("H1", "K1")]: {"retrieve"}}
    finally:
        store.close()
