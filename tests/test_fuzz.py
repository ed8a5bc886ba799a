"""The HTTP API fuzzed from its own OpenAPI schema (schemathesis): whatever a client sends, no 5xx (a real outage
aside: storage is up here) and every answer matches the schema the API publishes."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from picmetric.interfaces.api import create_app
from picmetric.service.analyses import AnalysisService
from picmetric.settings import Settings

from .services import ApiServer


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory, analyzer):
    data = tmp_path_factory.mktemp("fuzz")
    config = Settings(data_dir=data, admin_token="fuzz-admin", max_upload_bytes=2_000_000)
    with ApiServer(create_app(config, AnalysisService(config, analyzer=analyzer))) as url:
        yield schemathesis.openapi.from_url(f"{url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_fails_and_answers_as_documented(case):
    case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])
