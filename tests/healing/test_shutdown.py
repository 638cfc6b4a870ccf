"""A daemon stopped (SIGTERM, as systemd does) while C-MOVEs run: it claims nothing new,
cancels its retrieves before the Portal AET stops, and hands them back without counting
an attempt or blaming the PACS; the next start delivers the studies."""

from __future__ import annotations

import signal

from healing_harness import study_at

from dicomgate.state.names import TaskState


def _index(events: list[dict], name: str, **match) -> int:
    for i, e in enumerate(events):
        if e.get("event") == name and all(e.get(k) == v for k, v in match.items()):
            return i
    raise AssertionError(f"no {name} {match} in the log")


def test_sigterm_mid_cmove_hands_retrieves_back(daemon_factory, pacs, cloud, tmp_path):
    studies = [study_at(pacs, f"ACC-STOP{n}", 60) for n in range(3)]
    d = daemon_factory(max_attempts=1)  # one counted failure would make a task dead
    tasks = [d.retrieve(uid) for uid, _ in studies]
    d.wait(lambda: sum(d.instances_received(uid) for uid, _ in studies) >= 10, 30,
           "C-MOVEs to be under way", every=0.02)
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(40) == 0
    events = d.events()
    stopping = _index(events, "daemon.stopping")
    assert not [e for e in events[stopping:] if e.get("event") == "task.started"], \
        "a task was claimed after daemon.stopping"
    # the retrieves were cancelled and handed back before the Portal AET stopped
    assert _index(events, "retrieves.stopped") < _index(events, "scp.stopping")
    handed = [e for e in events[stopping:] if e.get("event") == "task.waiting"]
    assert handed and all(e["waiting_for"] == "dicomgate stopping" for e in handed), handed
    for e in events[stopping:]:
        text = str(e.get("error") or "")
        assert "add AE" not in text and "refused the C-MOVE" not in text, e
    assert not [e for e in events if e.get("event") in ("task.dead", "task.retry")]
    for task_id in tasks:
        task = d.task(task_id)
        assert task.state in ("pending", "done"), task
        if task.state == "pending":
            assert task.attempts == 0, task  # our stopping is not an attempt
            if task.last_error is not None:  # started, then handed back (2 run at once)
                assert "dicomgate stopped" in task.last_error, task
                assert "PACS" not in task.last_error, task
    d.stop()

    again = daemon_factory(max_attempts=1)  # same state dir: the next start finishes them
    for (uid, sops), task_id in zip(studies, tasks, strict=True):
        again.wait(lambda uid=uid, sops=sops: cloud.sop_uids(uid) == sops, 120,
                   f"all of {uid} in the cloud")
        again.wait(lambda task_id=task_id: again.task(task_id).state == "done", 30,
                   "the retrieve task to be done")
    assert not again.store.tasks.list(state=TaskState.DEAD)
