"""The OpenAPI 3.1 document of the REST API, served at GET /openapi.json.

Written by hand because the endpoints are plain async Django views; a test checks
that every REST route is documented here.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest

from api.http import json_endpoint
from batches.validation import (
    MAX_CALLBACK_URL_CHARS,
    MAX_DESTINATION_CHARS,
    MAX_ITEMS,
    MAX_NAME_CHARS,
    MAX_TTL_HOURS,
)
from synthesis.encoding import FORMATS, SAMPLE_RATES
from synthesis.request import MAX_INSTRUCT_CHARS
from voices.safe_paths import MAX_PATH_CHARS
from voices.validation import ID_FORBIDDEN_CATEGORIES, MAX_PROMPT_ID_CHARS, MAX_PROMPT_TEXT_CHARS

_ERROR = {"$ref": "#/components/schemas/Error"}
#: Control and format characters live in planes 0, 1 and 14 only; whitespace in plane 0.
_PLANES = (range(0x20000), range(0xE0000, 0xE1000))


def _char_class(test: Callable[[str], bool]) -> str:
    """The code points for which ``test`` holds, as the body of a regex character class."""
    points = [c for plane in _PLANES for c in plane if test(chr(c))]
    ranges: list[tuple[int, int]] = []
    for c in points:
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1] = (ranges[-1][0], c)
        else:
            ranges.append((c, c))
    return "".join(_escape(a) if a == b else f"{_escape(a)}-{_escape(b)}" for a, b in ranges)


def _escape(c: int) -> str:
    """``\\uXXXX`` in plane 0; the character itself above it (``\\U`` is no ECMA-262 escape)."""
    return f"\\u{c:04x}" if c <= 0xFFFF else chr(c)


def _nonblank(max_length: int | None, forbidden: str) -> dict[str, Any]:
    """A string with something besides whitespace in it and none of ``forbidden`` (a class body)."""
    space = _char_class(str.isspace)
    limit = {} if max_length is None else {"maxLength": max_length}
    return {"type": "string", "minLength": 1, **limit,
            "pattern": f"^[^{forbidden}]*[^{forbidden}{space}][^{forbidden}]*$"}


def _prompt_id() -> dict[str, Any]:
    # Surrogates (Cs) cannot be sent at all (UTF-8 cannot carry them, JSON escapes of them are
    # refused), and a regex class naming them is refused by most regex engines: left out.
    categories = ID_FORBIDDEN_CATEGORIES - {"Cs"}
    forbidden = _char_class(lambda ch: unicodedata.category(ch) in categories)
    return {**_nonblank(MAX_PROMPT_ID_CHARS, forbidden),
            "description": "any text but whitespace alone; no control, format or surrogate characters"}


def _text(max_length: int | None) -> dict[str, Any]:
    return {**_nonblank(max_length, "\\u0000"), "description": "not whitespace alone; no NUL"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    reasons = {400: "bad input", 401: "missing, unknown, revoked or expired API key",
               403: "scope missing, or path outside the allowed area", 404: "unknown id",
               405: "wrong method", 413: "payload too large", 429: "quota or capacity reached",
               502: "storage (S3) unreachable",
               503: "not ready: the engine is still warming up, or no worker is up (see Retry-After)"}
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
_PROMPT_ID = _prompt_id()
_PROMPT_IDS = {"type": ["array", "null"], "items": _PROMPT_ID,
               "description": "omitted, null or empty: all of the caller's voices"}
_PATH = _text(MAX_PATH_CHARS)

_BATCH_ID = {"name": "batch_id", "in": "path", "required": True,
             "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{3,64}$"}}
_ITEM = {"type": "object", "properties": {
    "index": {"type": "integer"}, "name": {"type": "string"}, "prompt_id": {"type": "string"},
    "state": {"enum": ["pending", "running", "succeeded", "failed", "cancelled"]},
    "seconds": {"type": ["number", "null"]}, "url": {"type": ["string", "null"]},
    "error": {"type": ["string", "null"]}, "words": {"type": ["array", "null"]}}}
_JOB = {"type": "object", "required": ["id", "state", "progress", "counts"], "properties": {
    "id": {"type": "string"},
    "state": {"enum": ["queued", "running", "succeeded", "partially_succeeded", "failed", "cancelled"]},
    "created_at": {"type": "string"}, "started_at": {"type": ["string", "null"]},
    "finished_at": {"type": ["string", "null"]}, "expires_at": {"type": "string"},
    "progress": {"type": "number", "minimum": 0, "maximum": 1},
    "counts": {"type": "object", "properties": {k: {"type": "integer"} for k in (
        "total", "succeeded", "failed", "cancelled", "running", "pending")}},
    "characters": {"type": "integer"}, "audio_seconds": {"type": "number"},
    "items": {"type": "array", "items": _ITEM},
    "callback": {"type": "object", "description": "delivery of the callback, when the job has one"},
    "callback_secret": {"type": "string", "description": "in the create answer only, once"}}}
_BATCH_BODY = {
    "type": "object", "required": ["prompt_id", "inputs"], "additionalProperties": False,
    "properties": {
        "prompt_id": {**_prompt_id(), "description": "the voice of every item without its own"},
        "audio_format": {"enum": list(FORMATS)},
        "sample_rate": {"enum": list(SAMPLE_RATES), "description": "Hz; opus also takes 12000"},
        "instruct_text": {"type": ["string", "null"], "maxLength": MAX_INSTRUCT_CHARS, "pattern": "^[^\\u0000]*$"},
        "inputs": {"type": "array", "minItems": 1, "maxItems": MAX_ITEMS, "items": {
            "type": "object", "required": ["text"], "additionalProperties": False, "properties": {
                "text": _text(None),
                "name": {"type": ["string", "null"], "maxLength": MAX_NAME_CHARS, "pattern": "^[^\\u0000]*$"},
                "prompt_id": _prompt_id()}}},
        "timestamps": {"const": False, "description": "word timings are not supported by batch jobs yet"},
        "callback_url": {"type": ["string", "null"], "maxLength": MAX_CALLBACK_URL_CHARS, "pattern": "^https?://[^/?#\\s@]+",
                         "description": "http(s) URL the job (without items) is POSTed to when it ends, signed "
                         "`X-TTS-Signature: sha256=<HMAC-SHA256 hex of the body>` with the callback_secret the "
                         "create answer returns once; no private addresses unless the server allows them"},
        "destination": {"type": ["string", "null"], "maxLength": MAX_DESTINATION_CHARS, "pattern": "^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9._~!*'()=+,@-]+)*/?$",
                        "description": "s3://bucket/prefix within the caller's allowed S3 roots: the files are also "
                        "written as <prefix>/<batch_id>/<index>.<format>, with manifest.json when the job ends"},
        "ttl_hours": {"type": "integer", "minimum": 1, "maximum": MAX_TTL_HOURS},
    },
}


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
            {"type": "object", "required": ["prompt_id"], "properties": {"prompt_id": _PROMPT_ID}},
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
                        **_text(None),
                        "description": "base64 audio (optionally a data: URI), an http(s) URL, or a local file path. "
                        "Containers are recognised by content; bytes of no known container are raw s16le mono PCM.",
                    },
                    "prompt_text": _text(MAX_PROMPT_TEXT_CHARS),
                    "prompt_id": _PROMPT_ID,
                    "sample_rate": {"type": "integer", "minimum": 8000, "maximum": 48000,
                                    "description": "rate of raw PCM prompts (default 16000)"},
                    "provenance_note": {"type": "string", "maxLength": 2000, "pattern": "^[^\\u0000]*$",
                                        "description": "consent or provenance of the recording (audit log)"},
                },
            },
            {"type": "object", "properties": {"existed": {"type": "boolean"}, "prompt_id": {"type": "string"}}},
            413, 429, 503,
        ),
        "/cache/save": _post(
            "Save voices to a tone-cache bundle",
            {"type": "object", "required": ["cache_dir"],
             "properties": {"cache_dir": _PATH, "prompt_ids": _PROMPT_IDS}},
            {"type": "object", "properties": {"cache_path": {"type": "string"}}},
            403, 404, 413,
        ),
        "/cache/load": _post(
            "Load voices from a tone-cache bundle",
            {"type": "object", "required": ["cache_path"],
             "properties": {"cache_path": _PATH, "prompt_ids": _PROMPT_IDS}},
            {"type": "object", "properties": {"loaded_speakers": _IDS}},
            403, 404, 413,
        ),
        "/batches": {
            "get": {
                "summary": "The caller's batch jobs, newest first (without their items)",
                "parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]*$"},
                     "description": "the `next` of the page before (anything else: 400)"}],
                "responses": {"200": {"description": "a page of jobs", **_json({"type": "object", "properties": {
                    "batches": {"type": "array", "items": _JOB}, "next": {"type": ["string", "null"]}}})},
                    **_errors(400, 401, 403, 405)},
            }
        },
        "/batches/{batch_id}": {
            "put": {
                "summary": "Create a batch job under a client-chosen id (the same body again: 200 with the job; "
                "another body: 409)",
                "parameters": [_BATCH_ID],
                "requestBody": {"required": True, **_json(_BATCH_BODY)},
                "responses": {"201": {"description": "created", **_json(_JOB)},
                              "200": {"description": "the job this id already names", **_json(_JOB)},
                              "409": {"description": "the id names a job with another body", **_json(_ERROR)},
                              **_errors(400, 401, 403, 404, 405, 413, 429, 503)},
            },
            "get": {
                "summary": "One batch job with its items",
                "parameters": [_BATCH_ID],
                "responses": {"200": {"description": "the job", **_json(_JOB)}, **_errors(401, 403, 404, 405)},
            },
            "delete": {
                "summary": "Cancel the job if it runs, then delete it and all its outputs",
                "parameters": [_BATCH_ID],
                "responses": {"200": {"description": "deleted", **_json({"type": "object"})},
                              **_errors(401, 403, 404, 405)},
            },
        },
        "/batches/{batch_id}/cancel": {
            "post": {
                "summary": "Stop the job's pending and running items; finished items stay downloadable",
                "parameters": [_BATCH_ID],
                "responses": {"200": {"description": "the job", **_json(_JOB)}, **_errors(401, 403, 404, 405)},
            }
        },
        "/batches/{batch_id}/items/{index}": {
            "get": {
                "summary": "A finished item's audio file (404 while it is not done)",
                "parameters": [_BATCH_ID, {"name": "index", "in": "path", "required": True,
                                           "schema": {"type": "integer", "minimum": 0}}],
                "responses": {"200": {"description": "the audio file", "content": {
                    spec.mime: {"schema": {"type": "string", "format": "binary"}}
                    for spec in {f.mime: f for f in FORMATS.values()}.values()}},
                    **_errors(401, 403, 404, 405)},
            }
        },
        "/batches/{batch_id}/archive": {
            "get": {
                "summary": "A zip of manifest.json (the job) and one file per finished item, <index>.<format>",
                "parameters": [_BATCH_ID],
                "responses": {"200": {"description": "the archive", "content": {
                    "application/zip": {"schema": {"type": "string", "format": "binary"}}}},
                    **_errors(401, 403, 404, 405, 413)},
            }
        },
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
                "parameters": [{"name": "prompt_id", "in": "path", "required": True, "schema": _PROMPT_ID}],
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
