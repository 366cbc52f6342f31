"""Schemathesis against /v1/openapi.json of a live `facecast serve` (a child process on 127.0.0.1): every
operation, generated bodies, ids and parameters, valid and invalid. No response may be a 5xx, every error
is the JSON envelope, and replies conform to the document.

Bounded for the default suite (FUZZ_EXAMPLES per operation); FACECAST_FUZZ_EXAMPLES raises it, as the slow
test below does."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import positive_data_acceptance

from facecast.bench.loopback import ServerProcess, facecast_serve

TOKEN = "fuzz-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FUZZ_EXAMPLES = int(os.environ.get("FACECAST_FUZZ_EXAMPLES", "12"))
# The event stream never ends (an SSE client reads it for the session's life); deleting the one live
# session would leave nothing for the other operations to reach.
schemathesis.serializer.alias("application/sdp", "text/plain")  # WHEP/WHIP offers are SDP text
SKIPPED = {("GET", "/v1/sessions/{sid}/events"), ("DELETE", "/v1/sessions/{sid}")}


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    config = f"  api_token: {TOKEN}\n  max_sessions: 2\n"  # under server:
    with facecast_serve(tmp_path_factory.mktemp("fuzz"), config) as server:
        reply = requests.post(f"{server.base_url}/v1/sessions", json={}, headers=AUTH, timeout=60)
        assert reply.status_code == 201, reply.text
        yield server, reply.json()["id"]


def _envelope(ctx: Any, response: schemathesis.Response, case: Case) -> None:
    """Every error is {"error": {"code", "message"}}, the message one short sentence."""
    if response.status_code < 400:
        return
    body = json.loads(response.content)
    error = body["error"]
    assert isinstance(error["code"], str) and 0 < len(error["message"]) <= 400, body


def _fuzz(operation: APIOperation, mode: GenerationMode, base_url: str, sid: str) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,  # the same cases every run: a failure is reproducible, not luck
        database=None,
    )
    def run(case: Case) -> None:
        if mode is GenerationMode.POSITIVE and "sid" in case.path_parameters and len(repr(case.body)) % 2:
            case.path_parameters["sid"] = sid  # about half the valid cases reach the live session, not a 404
        case.call_and_validate(
            base_url=base_url,
            headers=AUTH,
            additional_checks=[_envelope],
            # A schema-valid body can still be refused for what it holds (not a photo, not an SDP offer,
            # not an installed voice): a 4xx there is right, so only that check is left out.
            excluded_checks=[positive_data_acceptance],
            timeout=30,
        )

    run()


def test_no_operation_fails_or_leaves_the_envelope(fuzz_server: tuple[ServerProcess, str]) -> None:
    server, sid = fuzz_server
    schema = schemathesis.openapi.from_url(f"{server.base_url}/v1/openapi.json", headers=AUTH)
    failures, tried = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue
        # Without parameters or a body there is nothing to make invalid.
        invalid = bool(operation.path_parameters or operation.body)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)[: 1 + invalid]:
            tried += 1
            try:
                _fuzz(operation, mode, server.base_url, sid)
            except Exception as exc:  # one line per failing operation, all reported together
                failures.append(f"{operation.label} ({mode.value}): {str(exc)[:1500]}")
    assert tried > 35 and failures == [], "\n\n".join(failures)


def test_the_server_survived_the_fuzzing(fuzz_server: tuple[ServerProcess, str]) -> None:
    server, sid = fuzz_server
    health = requests.get(f"{server.base_url}/healthz", timeout=10).json()
    assert health["status"] == "ok" and health["failed"] == 0
    assert (
        requests.get(f"{server.base_url}/v1/sessions/{sid}", headers=AUTH, timeout=10).json()["state"]
        == "live"
    )
    assert "Traceback" not in Path(server.log_path).read_text(errors="replace")
