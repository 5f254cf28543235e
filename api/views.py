"""REST endpoints of the public API (wire format: shared/spec/API.md).

Each view: parse and validate, find the caller (API key or open mode) and check its
scope and quotas, do the work off the event loop, then meter and audit it.
"""
from __future__ import annotations

from asgiref.sync import sync_to_async
from django.http import HttpRequest

from api import metrics
from api.http import json_endpoint
from tenants import audit, quotas, usage
from tenants.auth import Caller, caller_for_request
from tenants.models import AuditEvent, SavedBundle, Scope
from voices import services, tone_cache, validation
from voices.cloning import clone_voice
from voices.errors import InvalidRequest
from workers.executors import run_in_pool


async def _caller(request: HttpRequest, scope: str | None = None) -> Caller:
    caller = await sync_to_async(caller_for_request)(request)
    if scope is not None:
        caller.require(scope)
    return caller


def _area(caller: Caller) -> tone_cache.CacheArea:
    return tone_cache.CacheArea.of_caller(caller.tenant, caller.keyed)


async def _audit(caller: Caller, action: str, prompt_id: str = "", detail: str = "") -> None:
    await sync_to_async(audit.record)(caller.tenant.id, caller.actor, action, prompt_id, detail)


@json_endpoint("GET")
async def speakers(request: HttpRequest) -> list[str]:
    caller = await _caller(request)
    return await sync_to_async(services.list_prompt_ids)(caller.tenant)


@json_endpoint("POST")
async def remove(request: HttpRequest) -> dict[str, str]:
    data = validation.parse_json_object(request.body)
    prompt_id = validation.prompt_id(data)
    caller = await _caller(request, Scope.MANAGE_VOICES)
    await sync_to_async(services.remove_voice)(caller.tenant, prompt_id)
    await _audit(caller, AuditEvent.Action.REMOVE, prompt_id)
    return {"status": "ok"}


@json_endpoint("POST")
async def clone(request: HttpRequest) -> dict[str, object]:
    caller = await _caller(request, Scope.CLONE)
    quota = await sync_to_async(quotas.limits_of)(caller.tenant.id)
    quotas.check_payload(quota, len(request.body))
    data = validation.parse_json_object(request.body)
    prompt_id = validation.prompt_id(data)
    prompt_text = validation.required_text(data, "prompt_text", validation.MAX_PROMPT_TEXT_CHARS)
    source = data.get("prompt_audio")
    if not isinstance(source, str) or not source.strip():
        raise InvalidRequest("prompt_audio is required: base64 audio, an http(s) URL or a local file path")
    raw_rate = validation.optional_sample_rate(data)
    note = validation.optional_text(data, "provenance_note", 2000)
    tenant = caller.tenant
    if await sync_to_async(services.voice_exists)(tenant, prompt_id):
        metrics.count_clone_existed()
        return {"existed": True, "prompt_id": prompt_id}
    await sync_to_async(quotas.check_voice_count)(tenant.id, quota)
    await quotas.take_clone(tenant.id, quota)
    existed = await metrics.timed_clone(run_in_pool("clone", clone_voice, tenant, prompt_id, source, prompt_text,
                                                    raw_rate, note, _area(caller).local_roots))
    if not existed:
        await sync_to_async(usage.record)(tenant.id, clones=1)
        await _audit(caller, AuditEvent.Action.CLONE, prompt_id, note)
    return {"existed": existed, "prompt_id": prompt_id}


@json_endpoint("POST")
async def cache_save(request: HttpRequest) -> dict[str, str]:
    data = validation.parse_json_object(request.body)
    cache_dir = validation.required_text(data, "cache_dir", 4096)
    prompt_ids = validation.optional_prompt_ids(data)
    caller = await _caller(request, Scope.MANAGE_CACHES)
    path = await run_in_pool("io", tone_cache.save_bundle, caller.tenant, cache_dir, prompt_ids, _area(caller))
    saved = prompt_ids or await sync_to_async(services.list_prompt_ids)(caller.tenant)
    await sync_to_async(SavedBundle.objects.create)(tenant=caller.tenant, location=path, prompt_ids=saved,
                                                    actor=caller.actor)
    await _audit(caller, AuditEvent.Action.SAVE, detail=f"{path}: {', '.join(saved)}")
    return {"cache_path": path}


@json_endpoint("POST")
async def cache_load(request: HttpRequest) -> dict[str, list[str]]:
    data = validation.parse_json_object(request.body)
    cache_path = validation.required_text(data, "cache_path", 4096)
    prompt_ids = validation.optional_prompt_ids(data)
    caller = await _caller(request, Scope.MANAGE_CACHES)
    loaded = await run_in_pool("io", tone_cache.load_bundle, caller.tenant, cache_path, prompt_ids, _area(caller))
    for prompt_id in loaded:
        await _audit(caller, AuditEvent.Action.LOAD, prompt_id, cache_path)
    return {"loaded_speakers": loaded}


@json_endpoint("GET")
async def usage_report(request: HttpRequest) -> dict[str, object]:
    caller = await _caller(request)
    return await sync_to_async(usage.report)(caller.tenant.id)


@json_endpoint("GET")
async def voice_detail(request: HttpRequest, prompt_id: str) -> dict[str, object]:
    """One voice of the caller's tenant: its clone state and what the clone reached."""
    validation.check_prompt_id(prompt_id)
    caller = await _caller(request)
    voice = await sync_to_async(services.get_voice)(caller.tenant, prompt_id)
    return services.describe_voice(voice)
