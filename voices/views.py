"""REST endpoints of the public API (wire format: shared/spec/API.md)."""
from __future__ import annotations

from asgiref.sync import sync_to_async
from django.http import HttpRequest

from ttsplatform.http import json_endpoint
from voices import services, tone_cache, validation
from voices.cloning import clone_voice
from voices.exceptions import InvalidRequest
from voices.tenancy import tenant_for_request
from workers.executors import run_in_pool


@json_endpoint("GET")
async def speakers(request: HttpRequest) -> list[str]:
    tenant = await sync_to_async(tenant_for_request)(request)
    return await sync_to_async(services.list_prompt_ids)(tenant)


@json_endpoint("POST")
async def remove(request: HttpRequest) -> dict[str, str]:
    data = validation.parse_json_object(request.body)
    prompt_id = validation.prompt_id(data)
    tenant = await sync_to_async(tenant_for_request)(request)
    await sync_to_async(services.remove_voice)(tenant, prompt_id)
    return {"status": "ok"}


@json_endpoint("POST")
async def clone(request: HttpRequest) -> dict[str, object]:
    data = validation.parse_json_object(request.body)
    prompt_id = validation.prompt_id(data)
    prompt_text = validation.required_text(data, "prompt_text", validation.MAX_PROMPT_TEXT_CHARS)
    source = data.get("prompt_audio")
    if not isinstance(source, str) or not source.strip():
        raise InvalidRequest("prompt_audio is required: base64 audio, an http(s) URL or a local file path")
    raw_rate = validation.optional_sample_rate(data)
    tenant = await sync_to_async(tenant_for_request)(request)
    if await sync_to_async(services.voice_exists)(tenant, prompt_id):
        return {"existed": True, "prompt_id": prompt_id}
    existed = await run_in_pool("clone", clone_voice, tenant, prompt_id, source, prompt_text, raw_rate)
    return {"existed": existed, "prompt_id": prompt_id}


@json_endpoint("POST")
async def cache_save(request: HttpRequest) -> dict[str, str]:
    data = validation.parse_json_object(request.body)
    cache_dir = validation.required_text(data, "cache_dir", 4096)
    prompt_ids = validation.optional_prompt_ids(data)
    tenant = await sync_to_async(tenant_for_request)(request)
    path = await run_in_pool("io", tone_cache.save_bundle, tenant, cache_dir, prompt_ids)
    return {"cache_path": path}


@json_endpoint("POST")
async def cache_load(request: HttpRequest) -> dict[str, list[str]]:
    data = validation.parse_json_object(request.body)
    cache_path = validation.required_text(data, "cache_path", 4096)
    prompt_ids = validation.optional_prompt_ids(data)
    tenant = await sync_to_async(tenant_for_request)(request)
    loaded = await run_in_pool("io", tone_cache.load_bundle, tenant, cache_path, prompt_ids)
    return {"loaded_speakers": loaded}
