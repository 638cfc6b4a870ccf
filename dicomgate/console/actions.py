"""Operator actions from the console: who may act, what each action does, the audit line.

Each action changes state through the code path its CLI command uses:
`tasks retry ID` -> TaskStore.retry, `tasks retry --all-dead` -> TaskStore.retry_all_dead,
`sync --once --accession ACC` -> the reports feature's `reports.reread`,
`push --retry-rejected --study UID` -> the upstream feature's `upstream.resend_rejected`.
Acting needs the operator token (`[console] operator_token`, sent as `Authorization: Bearer`)
or, with `[console] local_actions = true`, a caller on this host; read-only otherwise.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from ..app import ActionError, App
from ..config.model import ConsoleConfig
from ..netaddr import client_ip

log = structlog.get_logger("dicomgate.console")

# The reports feature's reconciliation pass: the console offers its button when a feature
# registers an action under this name.
RECONCILE = "reports.reconcile"


class Refused(Exception):
    """The caller may not act (HTTP 401/403); the message says how to get the right."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Caller:
    client: str
    operator: str  # the name the person gave in the page
    via: str  # "token" | "local"

    @property
    def actor(self) -> str:
        return f"console:{self.operator}@{self.client}"


class Gate:
    def __init__(self, cfg: ConsoleConfig):
        self.cfg = cfg

    def how(self, client: str, authorization: str) -> str | None:
        """'token', 'local' or None (read-only)."""
        token = self.cfg.operator_token
        if token is not None and authorization.startswith("Bearer "):
            given = authorization[7:].strip().encode()
            if hmac.compare_digest(given, token.reveal().encode()):
                return "token"
        if self.cfg.local_actions and _loopback(client):
            return "local"
        return None

    def caller(self, client: str, authorization: str, operator: str) -> Caller:
        via = self.how(client, authorization)
        if via is None:
            if authorization.startswith("Bearer ") and self.cfg.operator_token is not None:
                raise Refused(403, "operator token not accepted")
            raise Refused(401, "this action needs the operator token ([console] "
                               "operator_token)" + ("" if self.cfg.operator_token else
                                                    ", which is not configured"))
        name = " ".join(operator.split())
        if not 1 <= len(name) <= 40:
            raise Refused(400, "give your name (1-40 characters): the audit records who acted")
        return Caller(client, name, via)


def _loopback(client: str) -> bool:
    addr = client_ip(client)
    return addr is not None and addr.is_loopback


@dataclass(frozen=True)
class Action:
    name: str
    run: Callable[[App, dict[str, Any]], tuple[str, str]]  # -> (subject, message)


def _retry_task(app: App, body: dict[str, Any]) -> tuple[str, str]:
    task_id = _int(body, "task_id")
    task = app.store.tasks.get(task_id)
    if task is None:
        raise ActionError(f"no task {task_id}")
    if not app.store.tasks.retry(task_id):  # what `dicomgate tasks retry ID` does
        raise ActionError(f"task {task_id} is {task.state}: only dead or cancelled tasks "
                          "can be retried")
    app.pool.wake()
    return f"task:{task_id}", f"task {task_id} ({task.kind} {task.key}) queued to run again"


def _retry_all_dead(app: App, body: dict[str, Any]) -> tuple[str, str]:
    n = app.store.tasks.retry_all_dead()  # what `dicomgate tasks retry --all-dead` does
    if not n:
        raise ActionError("no dead task to retry")
    app.pool.wake()
    return "tasks:dead", f"{n} dead task(s) queued to run again"


def _reread(app: App, body: dict[str, Any]) -> tuple[str, str]:
    accession = _text(body, "accession_no")
    return f"exam:{accession}", _registered(app, "reports.reread")(accession=accession)


def _resend(app: App, body: dict[str, Any]) -> tuple[str, str]:
    uid = _text(body, "study_uid")
    return f"study:{uid}", _registered(app, "upstream.resend_rejected")(study_uid=uid)


def _reconcile(app: App, body: dict[str, Any]) -> tuple[str, str]:
    return "reports", _registered(app, RECONCILE)()


ACTIONS = {a.name: a for a in (Action("retry_task", _retry_task),
                               Action("retry_all_dead", _retry_all_dead),
                               Action("reread_exam", _reread),
                               Action("resend_rejected", _resend),
                               Action("reconcile", _reconcile))}
_NEEDS = {"reread_exam": "reports.reread", "resend_rejected": "upstream.resend_rejected",
          "reconcile": RECONCILE}


def available(app: App) -> list[str]:
    """The actions this configuration offers (the page shows only their buttons)."""
    return [n for n in ACTIONS if n not in _NEEDS or _NEEDS[n] in app.actions]


def perform(app: App, name: str, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
    """Run one action and audit it, whether it worked or not."""
    action = ACTIONS.get(name)
    if action is None or name not in available(app):
        raise Refused(404, f"no action {name} here (available: {', '.join(available(app))})")
    subject = None
    try:
        subject, message = action.run(app, body)
        outcome = "ok"
    except ActionError as exc:
        message, outcome = str(exc), "refused"
    except Exception as exc:  # audited too; the person sees a sentence, the log the trace
        log.exception("console.action_failed", action=name, error_type=type(exc).__name__)
        message, outcome = f"internal error ({type(exc).__name__}); see the gateway log", \
            "failed"
    app.store.audit.record(caller.actor, f"console.{name}", subject or _subject(body),
                           outcome, {"via": caller.via, "message": message})
    log.info("console.action", action=name, operator=caller.operator, client=caller.client,
             via=caller.via, outcome=outcome, subject=subject)
    return {"ok": outcome == "ok", "message": message}


def _subject(body: dict[str, Any]) -> str:
    return ",".join(f"{k}={body[k]}" for k in sorted(body))[:200]


def _registered(app: App, name: str) -> Callable[..., str]:
    fn = app.actions.get(name)
    if fn is None:
        raise ActionError(f"{name} is not available with this configuration")
    return fn


MAX_ID = 2**63 - 1  # the store's integer keys are 64-bit


def _int(body: dict[str, Any], key: str) -> int:
    value = body.get(key)
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    if not (text.isascii() and text.isdigit() and len(text) <= 19 and
            1 <= int(text) <= MAX_ID):
        raise ActionError(f"{key}: expected a task number (1 to {MAX_ID}), got "
                          f"{str(value)[:24]!r}")
    return int(text)


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > 128:
        raise ActionError(f"{key}: expected a non-empty string of at most 128 characters")
    return value.strip()
