"""Schemathesis over GET /openapi.json against the real server, in both modes, with an API key:
every built-in check (no 5xx, responses match the document, schema-valid requests are not
refused, schema-invalid ones are), a bounded number of examples per operation.

The positive-data check (a schema-valid request is not refused with 400) is left out where the
verdict is not the JSON's: a /clone body still needs real audio in ``prompt_audio``, a cache
path with a component longer than the filesystem's NAME_MAX bytes cannot be used, a batch
list cursor must be one the server gave out, and a batch callback URL must resolve to a
public address. No JSON schema can say any of these.
"""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.e2e.test_tenants import make_tenant
from tests.server import RunningServer

NAME_MAX = 255


@pytest.fixture(scope="module")
def fuzz_key(server: RunningServer) -> str:
    return make_tenant(server, "fuzz").key


@pytest.fixture(scope="module")
def api_schema(server: RunningServer):
    return schemathesis.openapi.from_url(f"{server.http}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_every_operation_answers_as_documented(case, fuzz_key: str) -> None:
    excluded = [positive_data_acceptance] if _judged_beyond_json(case) else []
    checks = [check for check in CHECKS.get_all() if check not in excluded]
    case.call_and_validate(headers={"Authorization": f"Bearer {fuzz_key}"}, checks=checks, timeout=60)


def _judged_beyond_json(case) -> bool:
    if case.operation.path == "/clone":
        return True
    query = case.query if isinstance(case.query, dict) else {}
    if case.operation.path == "/batches" and query.get("cursor"):
        return True  # a cursor is one this server gave out: no schema can say which
    body = case.body if isinstance(case.body, dict) else {}
    if case.operation.path == "/batches/{batch_id}" and (body.get("callback_url") or body.get("destination")):
        # a callback URL must resolve to a public address (DNS, not JSON, says whether it does); an S3
        # destination has no '.' or '..' segment and a prefix of at most 1024 characters (no pattern says it)
        return True
    paths = [body.get(field) for field in ("cache_dir", "cache_path")]
    return any(isinstance(p, str) and any(len(part.encode()) > NAME_MAX for part in p.split("/")) for p in paths)
