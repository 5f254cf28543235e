"""GET /health and GET /metrics: for load balancers, orchestrators and Prometheus.

Embedded mode is ready when its engine is loaded and warm; distributed mode's web
process is ready when at least one synthesis worker has registered in Redis. Both also
need a database that answers a read of a real table (a corrupt SQLite file still answers
``SELECT 1``).
/metrics is this web process's Prometheus exposition (see api/metrics.py).
"""
from __future__ import annotations

import logging

from asgiref.sync import sync_to_async
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST

from api import metrics
from api.http import json_endpoint, json_response
from core.errors import Unauthorized
from voices.models import Tenant, Voice
from workers import backend

log = logging.getLogger(__name__)


@json_endpoint("GET")
async def health(request: HttpRequest) -> HttpResponse:
    ready, body = await backend.current().health()
    body["database"] = await sync_to_async(_database_answers)()
    ready = ready and body["database"]
    response = json_response({"status": "ok" if ready else "starting", **body}, status=200 if ready else 503)
    # "Still warming up" is an expected answer, not a server error worth an ERROR log line.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def _database_answers() -> bool:
    try:
        Voice.objects.order_by().values_list("pk").first()
        Tenant.objects.order_by().values_list("pk").first()
    except DatabaseError as exc:
        log.error("health: the database does not answer: %s", exc)
        return False
    return True


@json_endpoint("GET")
async def metrics_view(request: HttpRequest) -> HttpResponse:
    if not metrics.authorized(request):
        raise Unauthorized("GET /metrics needs Authorization: Bearer <TTS_METRICS_TOKEN>")
    return HttpResponse(await metrics.render(), content_type=CONTENT_TYPE_LATEST)
