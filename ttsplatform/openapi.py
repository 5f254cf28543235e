"""The OpenAPI 3.1 document of the REST API, served at GET /openapi.json.

Written by hand because the endpoints are plain async Django views; a test checks
that every REST route is documented here.
"""
from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from ttsplatform.http import json_endpoint

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    reasons = {400: "bad input", 401: "missing, unknown, revoked or expired API key",
               403: "scope missing, or path outside the allowed area", 404: "unknown id",
               405: "wrong method", 413: "payload too large", 429: "quota or capacity reached",
               502: "storage (S3) unreachable", 503: "not ready"}
    return {str(c): {"description": reasons.get(c, "error"), **_json(_ERROR)} for c in codes}


def _post(summary: str, body: dict[str, Any], answer: dict[str, Any], *codes: int) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, **_json(body)},
            "responses": {"200": {"description": "ok", **_json(answer)}, **_errors(400, 401, 403, 405, *codes)},
        }
    }


_IDS = {"type": "array", "items": {"type": "string"}}

SCHEMA: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Streaming voice-cloning TTS",
        "version": "1.0.0",
        "description": "REST part of the API. Streaming synthesis is the WebSocket `/tts` (see README). "
        "With API keys: `Authorization: Bearer <key>` (open mode, the embedded default, needs none).",
    },
    "components": {
        "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"},
                            "metricsToken": {"type": "http", "scheme": "bearer",
                                             "description": "TTS_METRICS_TOKEN (GET /metrics only)"}},
        "schemas": {"Error": {"type": "object", "required": ["error", "message"],
                              "properties": {"error": {"const": True}, "message": {"type": "string"}}}},
    },
    "security": [{"apiKey": []}, {}],
    "paths": {
        "/speakers": {
            "get": {
                "summary": "List the caller's cloned voices",
                "responses": {"200": {"description": "prompt ids", **_json(_IDS)}, **_errors(405)},
            }
        },
        "/remove": _post(
            "Remove a cloned voice",
            {"type": "object", "required": ["prompt_id"], "properties": {"prompt_id": {"type": "string"}}},
            {"type": "object", "properties": {"status": {"const": "ok"}}},
            404,
        ),
        "/clone": _post(
            "Clone a voice from a prompt recording and its transcript",
            {
                "type": "object",
                "required": ["prompt_audio", "prompt_text", "prompt_id"],
                "properties": {
                    "prompt_audio": {
                        "type": "string",
                        "description": "base64 audio (optionally a data: URI), an http(s) URL, or a local file path. "
                        "Containers are recognised by content; bytes of no known container are raw s16le mono PCM.",
                    },
                    "prompt_text": {"type": "string", "maxLength": 1000},
                    "prompt_id": {"type": "string", "maxLength": 128},
                    "sample_rate": {"type": "integer", "minimum": 8000, "maximum": 48000,
                                    "description": "rate of raw PCM prompts (default 16000)"},
                    "provenance_note": {"type": "string", "maxLength": 2000,
                                        "description": "consent or provenance of the recording (audit log)"},
                },
            },
            {"type": "object", "properties": {"existed": {"type": "boolean"}, "prompt_id": {"type": "string"}}},
            413, 429,
        ),
        "/cache/save": _post(
            "Save voices to a tone-cache bundle",
            {"type": "object", "required": ["cache_dir"],
             "properties": {"cache_dir": {"type": "string"}, "prompt_ids": _IDS}},
            {"type": "object", "properties": {"cache_path": {"type": "string"}}},
            403, 404, 413,
        ),
        "/cache/load": _post(
            "Load voices from a tone-cache bundle",
            {"type": "object", "required": ["cache_path"],
             "properties": {"cache_path": {"type": "string"}, "prompt_ids": _IDS}},
            {"type": "object", "properties": {"loaded_speakers": _IDS}},
            403, 404, 413,
        ),
        "/health": {
            "get": {
                "summary": "Ready: embedded mode, engine loaded and warm; distributed mode, at least one worker registered",
                "responses": {
                    "200": {"description": "ready", **_json({"type": "object"})},
                    **_errors(503),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics of this web process (text exposition format): latency histograms, "
                "active streams, queue depths, workers, counters. Needs `Authorization: Bearer <TTS_METRICS_TOKEN>` "
                "when that setting is set (API keys are not accepted here)",
                "security": [{"metricsToken": []}, {}],
                "responses": {
                    "200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}},
                    "401": {"description": "TTS_METRICS_TOKEN is set and was not sent", **_json(_ERROR)},
                    **_errors(405),
                },
            }
        },
        "/voices/{prompt_id}": {
            "get": {
                "summary": "One of the caller's voices: clone state (ready, refining), similarity reached (sim), metrics",
                "parameters": [{"name": "prompt_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "the voice", **_json({"type": "object", "properties": {
                    "prompt_id": {"type": "string"}, "state": {"enum": ["ready", "refining"]},
                    "sim": {"type": ["number", "null"]}, "similarity": {"type": ["number", "null"]},
                    "engine": {"type": "string"},
                    "metrics": {"type": "object"}}})},
                    **_errors(400, 401, 404, 405)},
            }
        },
        "/usage": {
            "get": {
                "summary": "The caller's usage for the last 30 days (UTC), per day and in total",
                "responses": {"200": {"description": "usage", **_json({"type": "object", "properties": {
                    "since": {"type": "string", "format": "date"},
                    "days": {"type": "array", "items": {"type": "object"}},
                    "total": {"type": "object", "properties": {
                        "characters": {"type": "integer"}, "audio_seconds": {"type": "number"},
                        "streams": {"type": "integer"}, "clones": {"type": "integer"}}}}})},
                    **_errors(401, 405)},
            }
        },
        "/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI document"}}}
        },
    },
}


@json_endpoint("GET")
async def schema_view(request: HttpRequest) -> dict[str, Any]:
    return SCHEMA
