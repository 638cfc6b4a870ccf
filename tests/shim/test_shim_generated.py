"""Generated requests (Schemathesis) against a running `dicomgate run`, from the OpenAPI it
serves: valid and invalid queries and bodies for every shim and console operation. No 500,
every answer is one the document declares (status, content type, body schema), and the
gateway's log holds no traceback. A fixed seed and a bounded example count keep it short."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from shim_fixtures import FILM_URL, HOSPITAL, SM2_KEY, SM4_KEY, Shim, wait_http

from dicomgate.sandbox.orthanc import free_port
from tests.support import gateway_toml, start_daemon, stop_daemon, toml_table, write_config

TOKEN = "generated-tests-operator-token-0123456789"
EXAMPLES = 25  # per operation and mode: ~20 operations, under a minute here
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Shim]:
    """Every endpoint and the console; deletions unsigned so their bodies reach the schema;
    the lookup platforms are closed ports."""
    tmp = tmp_path_factory.mktemp("generated")
    port, dead = free_port(), f"http://127.0.0.1:{free_port()}/dicom-web"
    config = write_config(tmp / "dicomgate.toml", (
        gateway_toml(tmp / "state", free_port(), hospital_id=HOSPITAL)
        + toml_table("shim", bind="127.0.0.1", port=port, allow=["127.0.0.1/32"])
        + toml_table("qr", film_url=FILM_URL, sm4_key=SM4_KEY)
        + toml_table("login", sm2_private_key=SM2_KEY)
        + toml_table("lookup", province_dicomweb_url=dead, national_dicomweb_url=dead,
                     timeout="1s")
        + toml_table("console", operator_token=TOKEN)
        + toml_table("log", format="json")))
    log = tmp / "daemon.log"
    proc = start_daemon(config, log)
    shim = Shim(f"http://127.0.0.1:{port}", port, config, tmp / "state", log, proc)
    try:
        wait_http(shim.base + "/openapi.json", proc, "dicomgate run")
        yield shim
    finally:
        stop_daemon(proc)


@pytest.fixture(scope="module")
def api_schema(served):
    schema = schemathesis.openapi.from_url(served.base + "/openapi.json")
    schema.config.update(base_url=served.base)
    return schema


def operations(schema) -> list:
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generated_requests(api_schema, mode):
    """Hypothesis drives Schemathesis' strategies directly (its pytest plugin does not run
    under pytest 9): every operation, valid or invalid inputs, fixed seed."""
    ops = operations(api_schema)
    assert len(ops) >= 15, [op.label for op in ops]  # shim and console both published
    headers = {"X-Console": "1", "X-Operator": "gen", "Authorization": f"Bearer {TOKEN}"}
    exercised = []
    for op in ops:
        @seed(20261204)
        @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.generate])
        @given(case=op.as_strategy(generation_mode=mode))
        def run(case):
            case.call_and_validate(checks=CHECKS, headers=headers)

        try:
            run()
            exercised.append(op.label)
        except Unsatisfiable:  # no input to get wrong (e.g. GET /healthz): nothing negative
            assert mode is GenerationMode.NEGATIVE, op.label
    assert len(exercised) >= 10, exercised


def test_no_traceback_in_the_log(served):
    """Runs after the generated requests (same module, file order)."""
    lines = served.log.read_text(encoding="utf-8", errors="replace").split("\n")[:-1]
    assert len(lines) > 50  # the generated requests were logged
    bad = [line for line in lines if "Traceback" in line or "internal_error" in line
           or '"level": "error"' in line]
    assert not bad, "\n".join(bad[:5])
    events = []
    for line in lines:
        try:
            events.append(json.loads(line).get("event"))
        except ValueError:
            pytest.fail(f"a log line that is not JSON (a trace?): {line[:200]}")
    assert events.count("shim.request") > 100, events[-5:]
