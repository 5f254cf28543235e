"""REST endpoints of batch jobs (shared/spec/API.md, "Batch jobs").

The database holds the job and its items; the mode's backend runs them (embedded: a pool
of threads behind live streams; distributed: Celery tasks on the batch queue).
"""
from __future__ import annotations

import logging

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse

from api.http import json_endpoint, json_response
from batches import callbacks, services
from batches.errors import ItemNotReady
from batches.validation import BatchSpec, check_batch_id, parse_create
from core.errors import ApiError, NotReady
from tenants import audit, quotas
from tenants.auth import Caller, caller_for_request
from tenants.models import AuditEvent, Scope
from voices import tone_cache, validation
from workers import backend
from workers.executors import run_in_pool

log = logging.getLogger(__name__)

#: item indexes past this cannot exist (at most 1000 items); refused before any query
MAX_INDEX = 10**6


async def _caller(request: HttpRequest) -> Caller:
    caller = await sync_to_async(caller_for_request)(request)
    caller.require(Scope.BATCH)
    return caller


async def _audit(caller: Caller, action: str, batch_id: str, detail: str = "") -> None:
    await sync_to_async(audit.record)(caller.tenant.id, caller.actor, action, "", f"batch {batch_id}{detail}")


async def _submit(item_ids: list[int]) -> None:
    if item_ids:
        await run_in_pool("io", backend.current().submit_batch, item_ids)


@json_endpoint("GET")
async def batches(request: HttpRequest) -> dict[str, object]:
    caller = await _caller(request)
    limit = services.parse_limit(request.GET.get("limit"))
    cursor = request.GET.get("cursor") or None
    return await sync_to_async(services.list_page)(caller.tenant, limit, cursor)


@json_endpoint("GET", "PUT", "DELETE")
async def batch(request: HttpRequest, batch_id: str) -> HttpResponse | dict[str, object]:
    if request.method == "PUT":
        return await _create(request, batch_id)
    caller = await _caller(request)
    if request.method == "DELETE":
        deleted = await run_in_pool("io", services.delete, caller.tenant, batch_id)
        await _audit(caller, AuditEvent.Action.BATCH_DELETED, batch_id, f": {deleted} files deleted")
        return {"status": "ok", "id": batch_id, "files_deleted": deleted}
    return await sync_to_async(services.job_with_items)(caller.tenant, batch_id)


def _parse(body: bytes) -> BatchSpec:
    return parse_create(validation.parse_json_object(body), settings.TTS_MAX_TEXT_CHARS)


async def _create(request: HttpRequest, batch_id: str) -> HttpResponse:
    caller = await _caller(request)
    check_batch_id(batch_id)
    quota = await sync_to_async(quotas.limits_of)(caller.tenant.id)
    quotas.check_payload(quota, len(request.body))
    spec = await run_in_pool("io", _parse, request.body)  # up to 20 MB of JSON: not on the event loop
    if spec.callback_url:
        await run_in_pool("io", callbacks.check_callback_url, spec.callback_url)  # resolves its host
    if spec.destination:
        # 403 outside the caller's S3 roots (a key holder's: <TTS_S3_CACHE_ROOTS>/<tenant>)
        tone_cache.confined_s3(spec.destination, tone_cache.CacheArea.of_caller(caller.tenant, caller.keyed))
    tenant = caller.tenant
    existing = await sync_to_async(services.existing_batch)(tenant, batch_id, spec)
    if existing is None:
        await sync_to_async(services.check_can_create)(tenant, spec)
        # the characters of the whole job are taken now, and given back if it is not made after all
        await quotas.take_characters(tenant.id, quota, spec.characters)
        try:
            job, created, secret = await sync_to_async(services.create_batch)(tenant, batch_id, spec, caller.actor)
        except BaseException:
            await quotas.give_back_characters(tenant.id, quota, spec.characters)
            raise
        if not created:  # a concurrent PUT of the same id made it
            await quotas.give_back_characters(tenant.id, quota, spec.characters)
    else:
        job, created, secret = existing, False, ""
    if created:
        await _audit(caller, AuditEvent.Action.BATCH_CREATED, batch_id, f": {len(spec.items)} items, "
                     f"{spec.characters} characters")
    # Queue what is still pending, also on a retry of the same PUT (at most once a minute): a job
    # whose items could not be queued (the queue was down) starts when its client retries. A
    # second task for an item runs nothing (batches/execution.py).
    pending = await sync_to_async(services.items_to_queue)(job, created)
    try:
        await _submit(pending)
    except ApiError:
        raise
    except Exception as exc:  # noqa: BLE001 - the broker away: the job waits for the client's retry
        log.warning("batch %s stored but not queued: %s", batch_id, exc)
        raise NotReady("the job is stored but could not be queued; retry the same PUT shortly") from None
    answer = await sync_to_async(services.job_with_items)(tenant, batch_id)
    if secret:
        answer["callback_secret"] = secret
    return json_response(answer, status=201 if created else 200)


@json_endpoint("POST")
async def cancel(request: HttpRequest, batch_id: str) -> dict[str, object]:
    caller = await _caller(request)
    if await sync_to_async(services.cancel)(caller.tenant, batch_id):
        await _audit(caller, AuditEvent.Action.BATCH_CANCELLED, batch_id)
    return await sync_to_async(services.job_with_items)(caller.tenant, batch_id)


@json_endpoint("GET")
async def item(request: HttpRequest, batch_id: str, index: int) -> HttpResponse:
    caller = await _caller(request)
    if index > MAX_INDEX:
        raise ItemNotReady(f"batch job {batch_id!r} has no item {index}")
    data, mime, name = await run_in_pool("io", services.item_file, caller.tenant, batch_id, index)
    response = HttpResponse(data, content_type=mime)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@json_endpoint("GET")
async def archive(request: HttpRequest, batch_id: str) -> HttpResponse:
    caller = await _caller(request)
    spooled = await run_in_pool("io", services.archive, caller.tenant, batch_id)
    return FileResponse(spooled, content_type="application/zip", as_attachment=True, filename=f"{batch_id}.zip")
