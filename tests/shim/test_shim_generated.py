"""Generated requests (Schemathesis) against a running `dicomgate run`, from the OpenAPI it
serves: valid and invalid queries and bodies for every shim and console operation. No 500,
every answer is one the document declares (status, content type, body schema), and the
gateway's log holds no traceback. A fixed seed and a bounded example count keep it short."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
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
EXAMPLES = 12  # per operation and mode: ~20 operations, well under a minute here
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
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                                    max_examples=EXAMPLES)
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_generated_requests(case):
    case.call_and_validate(checks=CHECKS, headers={
        "X-Console": "1", "X-Operator": "gen", "Authorization": f"Bearer {TOKEN}"})


def test_no_traceback_in_the_log(served):
    """Runs after the generated requests (same module, file order)."""
    lines = served.log.read_text(encoding="utf-8", errors="replace").splitlines()
    assert len(lines) > 50  # the generated requests were logged
    bad = [line for line in lines if "Traceback" in line or "internal_error" in line
           or '"level": "error"' in line]
    assert not bad, "\n".join(bad[:5])
    events = [json.loads(line).get("event") for line in lines if line.startswith("{")]
    assert "shim.request" in events
