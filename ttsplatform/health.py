"""GET /health: for load balancers and orchestrators."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from synthesis.engines.registry import engine_status
from ttsplatform.http import json_endpoint, json_response


@json_endpoint("GET")
async def health(request: HttpRequest) -> HttpResponse:
    status = engine_status()
    ready = bool(status["loaded"] and status["warm"])
    body = {"status": "ok" if ready else "starting", **status}
    response = json_response(body, status=200 if ready else 503)
    # "Still warming up" is an expected answer, not a server error worth an ERROR log line.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response
