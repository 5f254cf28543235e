"""Log records that say which request they belong to.

A request id travels in a contextvar: REST requests take it from ``X-Request-ID`` (or
get a new one; :func:`request_id_middleware` echoes it in the response), the /tts
consumer sets its own request id for each request, and a job sets its job id (the same
id) in whatever thread or worker process runs it. :class:`RequestIdFilter`, on the
console handler, copies both ids onto every record; the formatters print them:
``plain`` appends `` [rid=...]``, ``json`` writes one JSON object per line.

API keys never reach the log: :class:`RedactSecretsFilter`, also on the console handler
(so on every logger's records), replaces ``api_key=...`` values (the WebSocket's query
parameter, percent-encoded names included) and anything shaped like a key
(``tts_<prefix>_<secret>``, the prefix kept to tell keys apart) with ``[redacted]``.
Daphne's access log, which is no log record, gets the same (ttsplatform/daphne_hooks.py).

This module is imported by the settings (LOGGING): it must not import Django models.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.utils.decorators import sync_and_async_middleware

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
job_id: ContextVar[str | None] = ContextVar("job_id", default=None)

HEADER = "X-Request-ID"
#: What a client may send as its request id: short, and safe in logs, headers and JSON.
_VALID_ID = re.compile(r"[A-Za-z0-9._:=+/-]{1,64}")


REDACTED = "[redacted]"
#: ``api_key=<value>`` in a query string: the name may be percent-encoded (``api%5Fkey``).
_QUERY_KEY = re.compile(r"(api(?:_|%5f)key=)[^&\s\"'#]*", re.IGNORECASE)
#: A key anywhere (tenants/keys.py makes them): ``tts_<prefix>_<secret>``.
_KEY = re.compile(r"\b(tts_[a-z0-9]{8,16}_)[A-Za-z0-9_-]{20,100}")


def redact_secrets(text: str) -> str:
    """``text`` with API keys and ``api_key=`` values replaced by ``[redacted]``."""
    if "tts_" not in text and "key" not in text.lower():
        return text  # the common case: nothing to look for
    return _KEY.sub(r"\1" + REDACTED, _QUERY_KEY.sub(r"\1" + REDACTED, text))


def new_request_id() -> str:
    return str(uuid.uuid4())


def valid_request_id(value: str | None) -> str | None:
    return value if value is not None and _VALID_ID.fullmatch(value) else None


@contextlib.contextmanager
def bound(*, request: str | None = None, job: str | None = None) -> Iterator[None]:
    """Set the request and/or job id for the code inside (a job's thread, a task)."""
    tokens = []
    if request is not None:
        tokens.append((request_id, request_id.set(request)))
    if job is not None:
        tokens.append((job_id, job_id.set(job)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class RequestIdFilter(logging.Filter):
    """Put ``request_id`` and ``job_id`` on every record (None when unknown); drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        if getattr(record, "job_id", None) is None:
            record.job_id = job_id.get()
        return True


class RedactSecretsFilter(logging.Filter):
    """Redact API keys from a record's message and traceback (see :func:`redact_secrets`);
    drops nothing. The record itself is changed, so every handler after this one sees the
    redacted text too."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_secrets(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_secrets(record.exc_text)
        return True


_TRACEBACKS = logging.Formatter()


class PlainFormatter(logging.Formatter):
    """The classic one-line format, plus `` [rid=...]`` (and ``job=...`` when it differs)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        rid, job = getattr(record, "request_id", None), getattr(record, "job_id", None)
        if rid and job and job != rid:
            return f"{line} [rid={rid} job={job}]"
        if rid or job:
            return f"{line} [rid={rid or job}]"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id / job_id when known,
    exc_info (the formatted traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "job_id"):
            value = getattr(record, key, None)
            if value:
                entry[key] = value
        if record.exc_text:  # already formatted (and redacted) by RedactSecretsFilter
            entry["exc_info"] = record.exc_text
        elif record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def logging_config(level: str, fmt: str) -> dict[str, Any]:
    """The LOGGING setting: one console handler, ``fmt`` "plain" or "json"."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"ids": {"()": "core.logs.RequestIdFilter"},
                    "redact": {"()": "core.logs.RedactSecretsFilter"}},
        "formatters": {
            "plain": {"()": "core.logs.PlainFormatter",
                      "format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
            "json": {"()": "core.logs.JsonFormatter"},
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": fmt, "filters": ["ids", "redact"]}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"django.channels.server": {"level": "WARNING"}, "daphne": {"level": "WARNING"}},
    }


@sync_and_async_middleware
def request_id_middleware(get_response: Callable[..., Any]) -> Callable[..., Any]:
    """Give each HTTP request an id (a valid ``X-Request-ID`` of the client's, or a new uuid)
    for its log records, and answer it in the response's ``X-Request-ID``."""
    if iscoroutinefunction(get_response):

        async def middleware(request: Any) -> Any:
            rid = valid_request_id(request.headers.get(HEADER)) or new_request_id()
            # Not reset afterwards: Django runs each request in its own asyncio task, whose
            # context ends with it, and its own "Bad Request: ..." line, logged after the
            # middleware returns, still gets the id this way.
            request_id.set(rid)
            response = await get_response(request)
            response[HEADER] = rid
            return response

    else:

        def middleware(request: Any) -> Any:  # type: ignore[misc]
            rid = valid_request_id(request.headers.get(HEADER)) or new_request_id()
            with bound(request=rid):
                response = get_response(request)
            response[HEADER] = rid
            return response

    return middleware
