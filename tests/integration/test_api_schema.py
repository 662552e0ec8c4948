"""The OpenAPI schema, its docs served without a CDN, and schemathesis fuzzing every operation."""

from __future__ import annotations

import contextlib
import re

import pytest
import schemathesis
from django.contrib.staticfiles import finders
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from jobs.models import Job
from tests.support.api import make_user

pytestmark = pytest.mark.django_db(transaction=True)

MY_PATHS = {
    "/api/jobs/",
    "/api/jobs/{id}/",
    "/api/jobs/{id}/retry/",
    "/api/jobs/{id}/cancel/",
    "/api/dead-letters/",
    "/api/dead-letters/{id}/",
    "/api/dead-letters/{id}/retry/",
    "/api/workers/",
    "/api/job-types/",
    "/api/stats/",
    "/api/metrics/",
    "/api/health/",
    "/metrics",
}
EXAMPLES_PER_MODE = 12  # per operation, for valid and for schema-violating inputs: bounded suite time


@pytest.fixture(autouse=True)
def _isolated(broker) -> None:
    """Own Redis prefix per test."""


def signed_in() -> APIClient:
    """The schema and docs need a signed-in user (unless JOBQUEUE_PUBLIC_API_DOCS=1)."""
    client = APIClient()
    client.force_authenticate(make_user("reader"))
    return client


def test_the_schema_is_openapi_3_and_documents_every_endpoint():
    response = signed_in().get("/api/schema/?format=json")

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert set(schema["paths"]) >= MY_PATHS
    create = schema["paths"]["/api/jobs/"]["post"]
    assert {"in": "header", "name": "Idempotency-Key"}.items() <= create["parameters"][0].items()
    assert {"201", "200", "400", "401", "403", "409", "413", "429", "503"} <= set(create["responses"])
    job_create = schema["components"]["schemas"]["JobCreate"]
    assert job_create["required"] == ["type"]
    assert set(job_create["properties"]) == {
        "type",
        "payload",
        "args",
        "queue",
        "priority",
        "max_attempts",
        "run_at",
        "delay",
        "timeout",
    }
    assert schema["components"]["securitySchemes"]["apiToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A DRF API token: 'Authorization: Bearer <key>' (or 'Token <key>').",
    }
    listed = {p["name"] for p in schema["paths"]["/api/jobs/"]["get"]["parameters"]}
    assert {
        "status",
        "type",
        "queue",
        "created_after",
        "created_before",
        "search",
        "ordering",
        "cursor",
    } <= listed


def test_the_docs_load_their_assets_from_this_server_not_a_cdn():
    response = signed_in().get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets, html
    assert not [a for a in assets if a.startswith(("http:", "https:", "//"))], assets
    assert not re.search(r"https?://[^\"' ]*(cdn|jsdelivr|unpkg)", html)
    local = [a for a in assets if a.startswith("/static/drf_spectacular_sidecar/")]
    assert local, assets
    for asset in local:
        assert finders.find(asset.removeprefix("/static/")), f"{asset} is not a static file of this project"


def test_no_request_generated_from_the_schema_gets_a_5xx(settings):
    """Every operation, with valid and schema-violating inputs, as a superuser: 4xx is fine, 5xx never."""
    from jobqueue_site.wsgi import application

    settings.JOBQUEUE_API_STATS_PG_TTL = 0
    fuzzer = make_user("fuzzer", staff=True)
    fuzzer.is_superuser = True
    fuzzer.save(update_fields=["is_superuser"])
    token = Token.objects.create(user=fuzzer).key
    schema = schemathesis.openapi.from_wsgi(
        "/api/schema/", application, headers={"Authorization": f"Token {token}"}
    )
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {operation.path for operation in operations} >= MY_PATHS

    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis_settings(
                max_examples=EXAMPLES_PER_MODE,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def call(case: schemathesis.Case) -> None:
                response = case.call(headers={"Authorization": f"Token {token}"})
                if response.status_code >= 500:
                    failures.append(f"{response.status_code} from {case.as_curl_command()}")

            # An operation without parameters or body has no schema-violating inputs to generate.
            with contextlib.suppress(Unsatisfiable):
                call()

    assert not failures, "\n".join(failures)
    assert Job.objects.exists(), "the fuzzer never got a job submitted: is the create schema too strict?"
