"""One declared schema per endpoint: what the caller may send, used both to parse each
request and to write /openapi.json (openapi.py builds its parameters and bodies from these
models, so the document cannot drift from the parser).

The boundary rules every field shares: a string (a JSON number, boolean, list or object is
refused, never turned into text with `str()`), at most `max_length` characters, no control
characters, and given once: by one spelling (hospitalId or hospitalld), in one place (query
string or body, never both). A refusal is the spec's code 202 naming the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .params import ALIASES, ParamError

# no C0/C1 control characters nor line/paragraph separators (a log line stays one line)
NO_CONTROL = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$"


class JsonNumber:
    """A number in a JSON body, kept as its text: no field takes one, and converting it
    (a 5,000-digit integer, 1e999999, NaN) is where the trouble starts."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text[:20]


def text(description: str, max_length: int = 64, required: bool = True,
         pattern: str = NO_CONTROL) -> Any:
    """A string field: required ones must be non-empty."""
    return Field(... if required else "", description=description, max_length=max_length,
                 min_length=1 if required else 0, pattern=pattern)


class Schema(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
    # where the fields may come from: "query", "body" or both (never both for one request)
    places: ClassVar[tuple[str, ...]] = ("query",)

    def values(self) -> dict[str, str]:
        """The fields given (non-empty), by their canonical names."""
        return {k: v for k, v in self.model_dump().items() if v}


def _fields(model: type[Schema]) -> dict[str, Any]:
    return dict(model.model_fields)


M = TypeVar("M", bound=Schema)


def parse(model: type[M], query: Iterable[tuple[str, str]],
          body: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None) -> M:
    """The validated fields of one request, or ParamError naming every bad field."""
    values, problems = read(model, query, body)
    if problems:
        raise ParamError(problems)
    return model.model_validate(values)


def read(model: type[Schema], query: Iterable[tuple[str, str]],
         body: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None
         ) -> tuple[dict[str, str], list[str]]:
    """(the fields that passed, by canonical name; one problem per field that did not),
    so an endpoint can add its own checks of the rest and answer every problem at once."""
    found: dict[str, list[tuple[str, str, Any]]] = {}
    problems: dict[str, str] = {}
    spellings = {alias: name for name in _fields(model)
                 for alias in ALIASES.get(name, (name,))}
    body_pairs = body.items() if isinstance(body, Mapping) else (body or ())
    for where, pairs in (("query string", query), ("body", body_pairs)):
        for key, value in pairs:
            name = spellings.get(key)
            if name is None or value is None:
                continue  # a parameter no endpoint declares is ignored (PACS send extras)
            found.setdefault(name, []).append((where, key, value))
    data: dict[str, Any] = {}
    for name, seen in found.items():
        where = seen[0][0]
        if len(seen) > 1:
            problems[name] = (f"{name} given {len(seen)} times "
                              f"({', '.join(f'{k} in the {w}' for w, k, _ in seen)}): send "
                              "it once, in one place")
        elif where.split(" ")[0] not in model.places:
            problems[name] = (f"{name} not accepted in the {where} (send it in the "
                              f"{' or '.join(model.places)})")
        else:
            value = seen[0][2]
            data[name] = value.strip() if isinstance(value, str) else value
    try:
        model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            name = str(err["loc"][0]) if err["loc"] else "body"
            if name not in problems:
                problems[name] = _problem(model, err)
    values = {k: v for k, v in data.items() if k not in problems and isinstance(v, str)}
    return values, list(problems.values())


def _problem(model: type[Schema], err: Any) -> str:
    name = str(err["loc"][0]) if err["loc"] else "body"
    field = _fields(model).get(name)
    what = field.description if field is not None and field.description else name
    kind, value = err["type"], err.get("input")
    if kind == "missing" or (kind == "string_too_short" and value == ""):
        return f"{name} missing ({what})"
    if kind == "string_type":
        return f"{name} invalid: expected a string ({what}), got {_json_type(value)}"
    if kind == "string_too_long":
        return (f"{name} too long: {len(value)} characters ({what}, at most "
                f"{err['ctx']['max_length']})")
    if kind == "string_pattern_mismatch":
        return f"{name} contains characters not allowed ({what}: no control characters)"
    return f"{name} invalid: {err['msg']} ({what})"


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, JsonNumber | int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def json_schema(model: type[Schema]) -> dict[str, Any]:
    """The model as an OpenAPI 3.0 schema object (a body)."""
    props = {}
    for name, field in _fields(model).items():
        props[name] = field_schema(name, field)
    required = [n for n, f in _fields(model).items() if f.is_required()]
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    return out


def field_schema(name: str, field: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "string"}
    for meta in field.metadata:
        for attr, key in (("max_length", "maxLength"), ("min_length", "minLength"),
                          ("pattern", "pattern")):
            value = getattr(meta, attr, None)
            if value is not None:
                out[key] = value
    aliases = [a for a in ALIASES.get(name, (name,)) if a != name]
    out["description"] = (field.description or name) + (
        f" (also spelled {', '.join(aliases)})" if aliases else "")
    return out


def query_parameters(model: type[Schema]) -> list[dict[str, Any]]:
    """The model as OpenAPI query parameters."""
    out = []
    for name, field in _fields(model).items():
        schema = field_schema(name, field)
        desc = schema.pop("description")
        out.append({"name": name, "in": "query", "required": field.is_required(),
                    "description": desc, "schema": schema})
    return out
