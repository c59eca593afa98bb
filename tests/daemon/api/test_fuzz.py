"""Schemathesis against a real daemon's /api/openapi.json with an admin token.

Every operation gets a bounded number of generated requests, valid (positive) and
invalid (negative) for its declared schema; the test fails on any 5xx, on a status
the document does not declare, and on a body or content type that does not match the
declared schema. A stateful run then follows the document's links (a created silence is
expired, a queued job read back).
"""

from __future__ import annotations

import json
import urllib.request

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mlwarden.daemon.api.auth import mint_token

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
#: Generated requests per operation and mode (2 modes, ~45 operations).
EXAMPLES = 6
TOKEN, DIGEST = mint_token()
CONFIG = (
    f'[[auth.tokens]]\nname = "fuzzer"\nsha256 = "{DIGEST}"\nrole = "admin"\n'
    '[[models]]\nname = "cls"\ntask = "classification"\nfeatures = ["x", "kind"]\n'
    'categorical = ["kind"]\n'
)
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def schema(daemon_factory):
    daemon = daemon_factory(CONFIG, name="fuzzed").start()
    request = urllib.request.Request(daemon.url + "/api/openapi.json", headers=HEADERS)
    with urllib.request.urlopen(request, timeout=10) as resp:
        document = json.load(resp)
    loaded = schemathesis.openapi.from_dict(document)
    loaded.config.update(base_url=daemon.url, headers=HEADERS)
    return loaded


def test_fuzzing_finds_no_server_error_and_no_schema_violation(schema):
    session = requests.Session()
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 40
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            )
            def run(case):
                case.call_and_validate(session=session, headers=HEADERS, checks=CHECKS)

            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                # Nothing to make invalid (no body, no query, string path parameters).
                assert mode is GenerationMode.NEGATIVE, operation.label
            except Exception as exc:  # one line per failing operation, then fail
                failures.append(f"{operation.label} [{mode.value}]: {exc}")
    assert not failures, "\n\n".join(failures)


def test_stateful_links_hold_the_schema(schema):
    class Links(schema.as_state_machine()):  # type: ignore[misc]
        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=CHECKS, headers=HEADERS)

    Links.run(
        settings=settings(
            max_examples=10,
            stateful_step_count=4,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
