"""Request ids in log records: the filter, both formatters, the id's validation."""
from __future__ import annotations

import json
import logging
import sys

from core import logs


def _record(message: str = "hello %s", args: tuple = ("world",), exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("voices.views", logging.WARNING, __file__, 1, message, args, exc_info)


def _filtered(record: logging.LogRecord) -> logging.LogRecord:
    assert logs.RequestIdFilter().filter(record) is True
    return record


def test_filter_copies_the_ids_from_the_context() -> None:
    assert _filtered(_record()).request_id is None
    with logs.bound(request="req-1", job="job-9"):
        record = _filtered(_record())
    assert (record.request_id, record.job_id) == ("req-1", "job-9")
    assert logs.request_id.get() is None and logs.job_id.get() is None  # reset on the way out


def test_plain_format_appends_the_request_id() -> None:
    formatter = logs.PlainFormatter("%(levelname)s %(name)s: %(message)s")
    assert formatter.format(_filtered(_record())) == "WARNING voices.views: hello world"
    with logs.bound(request="abc"):
        assert formatter.format(_filtered(_record())).endswith("hello world [rid=abc]")
    with logs.bound(request="abc", job="abc"):
        assert formatter.format(_filtered(_record())).endswith("hello world [rid=abc]")
    with logs.bound(request="abc", job="j1"):
        assert formatter.format(_filtered(_record())).endswith("[rid=abc job=j1]")


def test_plain_format_puts_the_id_before_a_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        exc = sys.exc_info()
    with logs.bound(request="abc"):
        text = logs.PlainFormatter("%(message)s").format(_filtered(_record("failed", (), exc)))
    first, *rest = text.splitlines()
    assert first == "failed [rid=abc]" and rest[-1] == "ValueError: boom"


def test_json_format_is_one_object_per_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        exc = sys.exc_info()
    with logs.bound(request="r-1", job="j-2"):
        line = logs.JsonFormatter().format(_filtered(_record("line one\nline two 你好", (), exc)))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "WARNING" and entry["logger"] == "voices.views"
    assert entry["message"] == "line one\nline two 你好"
    assert entry["request_id"] == "r-1" and entry["job_id"] == "j-2"
    assert entry["ts"].endswith("Z") and "T" in entry["ts"]
    assert "ValueError: boom" in entry["exc_info"]


def test_json_format_leaves_out_unknown_ids() -> None:
    entry = json.loads(logs.JsonFormatter().format(_filtered(_record())))
    assert set(entry) == {"ts", "level", "logger", "message"}
    assert entry["message"] == "hello world"


def test_logging_config_picks_the_format() -> None:
    config = logs.logging_config("INFO", "json")
    assert config["handlers"]["console"]["formatter"] == "json"
    assert config["handlers"]["console"]["filters"] == ["ids", "redact"]
    assert logs.logging_config("DEBUG", "plain")["root"]["level"] == "DEBUG"


def test_client_request_ids_are_validated() -> None:
    assert logs.valid_request_id("abc-123_DEF.x:y") == "abc-123_DEF.x:y"
    for bad in (None, "", "a b", "x" * 65, "quote\"", "new\nline", "ünï"):
        assert logs.valid_request_id(bad) is None
    assert logs.valid_request_id(logs.new_request_id())


def test_middleware_echoes_or_makes_an_id() -> None:
    import asyncio

    from django.test import AsyncClient

    client = AsyncClient()
    echoed = asyncio.run(client.get("/metrics", headers={"X-Request-ID": "trace-42"}))
    assert echoed["X-Request-ID"] == "trace-42"
    made = asyncio.run(client.get("/metrics", headers={"X-Request-ID": "not valid!"}))
    assert logs.valid_request_id(made["X-Request-ID"]) and made["X-Request-ID"] != "not valid!"
    assert asyncio.run(client.get("/nowhere"))["X-Request-ID"]


KEY = "tts_0123abcd45_" + "S3cret-_" * 5


def test_api_keys_are_redacted_from_every_record() -> None:
    """On the console handler, so whatever logger a key reaches the log through."""
    try:
        raise ValueError(f"bad key {KEY}")
    except ValueError:
        exc = sys.exc_info()
    records = [
        _record("GET %s", (f"/tts?x=1&api_key={KEY}&y=2",)),
        _record("%s", (f"/speakers?API%5Fkey={KEY}",)),
        _record(f"Authorization: Bearer {KEY}", ()),
        _record("failed", (), exc),
    ]
    for record in records:
        assert logs.RedactSecretsFilter().filter(record) is True
    lines = [logs.PlainFormatter("%(message)s").format(r) for r in records]
    lines.append(logs.JsonFormatter().format(records[-1]))
    assert all("S3cret" not in line for line in lines), lines
    assert lines[0] == "GET /tts?x=1&api_key=[redacted]&y=2"
    assert lines[2] == "Authorization: Bearer tts_0123abcd45_[redacted]"  # the prefix still tells keys apart
    assert "ValueError: bad key tts_0123abcd45_[redacted]" in lines[3]
    untouched = _record("voice %s has key_count=%d", ("alice", 3))
    logs.RedactSecretsFilter().filter(untouched)
    assert untouched.getMessage() == "voice alice has key_count=3"
