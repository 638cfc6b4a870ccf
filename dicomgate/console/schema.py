"""The console API's declared schemas: they parse each query and action body (wsgi.py,
actions.py) and are what /openapi.json publishes for /console/api (`openapi_paths`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .views import STAGES

NO_CONTROL = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$"
DAY = r"^([0-9]{4}-[0-9]{2}-[0-9]{2})?$"
MAX_ID = 2**63 - 1  # the store's integer keys are 64-bit


class Query(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, strict=True)


class ExamsQuery(Query):
    accession: str = Field("", max_length=64, pattern=NO_CONTROL,
                           description="accession number (exact)")
    day_from: str = Field("", alias="from", pattern=DAY, description="first day, YYYY-MM-DD")
    to: str = Field("", pattern=DAY, description="last day, YYYY-MM-DD")
    stage: str = Field("", pattern="^(" + "|".join(STAGES) + ")?$",
                       description="one of " + ", ".join(STAGES))
    limit: str = Field("200", pattern=r"^[0-9]{1,4}$", description="1-1000 (default 200)")


class AuditQuery(Query):
    action: str = Field("", max_length=64, pattern=NO_CONTROL, description="e.g. image.delete")
    q: str = Field("", max_length=128, pattern=NO_CONTROL, description="text in the entry")
    day_from: str = Field("", alias="from", pattern=DAY, description="first day, YYYY-MM-DD")
    to: str = Field("", pattern=DAY, description="last day, YYYY-MM-DD")


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryTaskBody(Body):
    task_id: int = Field(ge=1, le=MAX_ID, description="the task number (dicomgate tasks)")


class RereadBody(Body):
    accession_no: str = Field(min_length=1, max_length=128, pattern=NO_CONTROL)


class ResendBody(Body):
    study_uid: str = Field(min_length=1, max_length=128, pattern=r"^[0-9.]+$")


ACTION_BODIES: dict[str, type[Body]] = {
    "retry_task": RetryTaskBody, "retry_all_dead": Body, "reread_exam": RereadBody,
    "resend_rejected": ResendBody, "reconcile": Body}


class Invalid(ValueError):
    """The message names each field and what is expected."""


def parse(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Invalid("; ".join(_problem(model, e) for e in exc.errors(include_url=False))
                      ) from None


def _problem(model: type[BaseModel], err: Any) -> str:
    name = str(err["loc"][0]) if err["loc"] else "body"
    field = model.model_fields.get(name)
    shown = (field.alias if field is not None and field.alias else name)
    hint = f" ({field.description})" if field is not None and field.description else ""
    if err["type"] == "extra_forbidden":
        return f"{shown}: not a field of this action"
    value = repr(err.get("input"))[:24]
    return f"{shown}: {err['msg'].lower()}, got {value}{hint}"


# -- OpenAPI --------------------------------------------------------------------------------

_ERROR = {"type": "object", "required": ["error"],
          "properties": {"error": {"type": "string"}}}
_FRONT = {"type": "object", "required": ["code", "message"],
          "properties": {"code": {"type": "integer"}, "message": {"type": "string"}}}


def _answers(ok: dict[str, Any], statuses: tuple[int, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"200": {"description": "OK", "content": {
        "application/json": {"schema": ok}}}}
    for status in (*statuses, 408, 431, 505):  # the last three: the front's own refusals
        schema = {"anyOf": [_ERROR, _FRONT]} if status in (400, 403, 413, 500, 503) else \
            _FRONT if status in (408, 431, 505) else _ERROR
        out[str(status)] = {"description": "refused: {\"error\": ...} (the console) or the "
                                           "front's {code, message, data}",
                            "content": {"application/json": {"schema": schema}}}
    return out


def _params(model: type[Query]) -> list[dict[str, Any]]:
    out = []
    for name, field in model.model_fields.items():
        schema: dict[str, Any] = {"type": "string"}
        for meta in field.metadata:
            for attr, key in (("max_length", "maxLength"), ("pattern", "pattern")):
                if getattr(meta, attr, None) is not None:
                    schema[key] = getattr(meta, attr)
        out.append({"name": field.alias or name, "in": "query", "required": False,
                    "description": field.description or "", "schema": schema})
    return out


def _body(model: type[Body]) -> dict[str, Any]:
    schema = model.model_json_schema()
    props = {k: {kk: vv for kk, vv in v.items() if kk != "title"}
             for k, v in schema.get("properties", {}).items()}
    out: dict[str, Any] = {"type": "object", "properties": props,
                           "additionalProperties": False}
    if schema.get("required"):
        out["required"] = schema["required"]
    return out


def openapi_paths(prefix: str, actions: list[str]) -> dict[str, Any]:
    """The console API's operations under `prefix` (read endpoints, and the actions this
    configuration offers)."""
    refusals = (400, 403, 404, 405, 413, 500, 503)
    obj = {"type": "object"}
    get = {f"{prefix}/api/{name}": {"get": {"summary": summary, "parameters": params,
                                            "responses": _answers(obj, refusals)}}
           for name, summary, params in (
               ("session", "what the caller may do", []),
               ("overview", "peers, backlog, today's exams, problems, health", []),
               ("exams", "exams found, newest first", _params(ExamsQuery)),
               ("problems", "dead tasks, quarantine, rejected instances", []),
               ("audit", "the audit trail", _params(AuditQuery)))}
    get[f"{prefix}/api/exams/{{exam_id}}"] = {"get": {
        "summary": "one exam with its pipeline", "parameters": [{
            "name": "exam_id", "in": "path", "required": True,
            "schema": {"type": "integer", "minimum": 1, "maximum": 999_999_999_999}}],
        "responses": _answers(obj, refusals)}}
    result = {"type": "object", "required": ["ok", "message"],
              "properties": {"ok": {"type": "boolean"}, "message": {"type": "string"}}}
    for name in actions:
        get[f"{prefix}/api/actions/{name}"] = {"post": {
            "summary": f"operator action {name} (operator token, X-Console: 1, X-Operator)",
            "requestBody": {"required": False, "content": {"application/json": {
                "schema": _body(ACTION_BODIES[name])}}},
            "responses": {**_answers(result, (400, 401, 403, 404, 405, 413, 500, 503)),
                          "409": {"description": "done nothing (the message says why)",
                                  "content": {"application/json": {"schema": result}}}}}}
    return get
