"""Batch jobs end to end, in both modes (a real Daphne; in distributed mode real Celery workers
taking items off the batch queue, outputs in a real S3 server)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import io
import json
import threading
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import FEATURE_BUCKET
from tests.e2e.support import decode_audio, s3_keys
from tests.e2e.test_metrics import get, scrape
from tests.server import RunningServer

MIXED_TEXTS = [
    "你好，欢迎收听今天的新闻。",
    "Good morning, here is the weather.",
    "明天上午有小雨，下午转晴。",
    "The library opens at nine.",
    "请记得带伞。",
    "Traffic on the bridge is light.",
    "我们下周再见。",
    "Thanks for listening, see you soon.",
    "Version 2 ships on March 3rd.",
    "今天是2026年12月7日。",
]
TERMINAL = {"succeeded", "partially_succeeded", "failed", "cancelled"}


def put(server: RunningServer, batch_id: str, body: dict[str, Any] | bytes) -> httpx.Response:
    if isinstance(body, bytes):
        return httpx.put(f"{server.http}/batches/{batch_id}", content=body, timeout=60,
                         headers={"Content-Type": "application/json"})
    return httpx.put(f"{server.http}/batches/{batch_id}", json=body, timeout=60)


def job(server: RunningServer, batch_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.http}/batches/{batch_id}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(server: RunningServer, batch_id: str, done: Any, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = job(server, batch_id)
        if done(current):
            return current
        time.sleep(0.5)
    raise AssertionError(f"batch {batch_id} did not get there in {timeout} s: {current}\n{server.log_tail()}")


def unique(label: str) -> str:
    return f"{label}-{time.monotonic_ns() % 10**12}"


def stored_outputs(server: RunningServer, fmt: str) -> set[str]:
    """The item files in the server's store (local directory or S3 bucket) of the default tenant."""
    if server.mode == "embedded":
        return {str(p) for p in (server.data_dir / "voices" / "default").glob(f"*.{fmt}")}
    return set(s3_keys(server.env, FEATURE_BUCKET, "features/default/", f".{fmt}"))


def usage_characters(server: RunningServer) -> int:
    return httpx.get(f"{server.http}/usage", timeout=30).json()["total"]["characters"]


def test_a_mixed_chinese_english_job_runs_end_to_end(server: RunningServer, voice: str) -> None:
    batch_id = unique("mixed")
    body = {"prompt_id": voice, "audio_format": "mp3", "sample_rate": 22050,
            "inputs": [{"text": text, "name": f"line-{i}"} for i, text in enumerate(MIXED_TEXTS)]}
    used_before = usage_characters(server)
    created = put(server, batch_id, body)
    assert created.status_code == 201, created.text
    answer = created.json()
    assert answer["id"] == batch_id and answer["counts"]["total"] == 10
    assert answer["characters"] == sum(len(t) for t in MIXED_TEXTS)
    assert [item["name"] for item in answer["items"]] == [f"line-{i}" for i in range(10)]
    assert "callback_secret" not in answer

    final = wait_for(server, batch_id, lambda j: j["state"] in TERMINAL)
    assert final["state"] == "succeeded", final
    assert final["progress"] == 1.0 and final["counts"]["succeeded"] == 10 and final["counts"]["pending"] == 0
    assert final["started_at"] and final["finished_at"] and final["expires_at"]
    total = 0.0
    for item in final["items"]:
        assert item["state"] == "succeeded" and item["error"] is None
        response = httpx.get(f"{server.http}{item['url']}", timeout=30)
        assert response.status_code == 200 and response.headers["content-type"] == "audio/mpeg"
        audio, rate = decode_audio(response.content, "mp3", 22050)
        assert rate == 22050
        assert abs(len(audio) / rate - item["seconds"]) < 0.2, (len(audio) / rate, item)  # the whole text, once
        assert item["seconds"] > 0.5
        total += item["seconds"]
    assert final["audio_seconds"] == pytest.approx(total, abs=0.01)
    # counted once per item, when it succeeded
    assert usage_characters(server) - used_before == final["characters"]

    samples = scrape(server)  # the same numbers from any web process: read from the database
    assert get(samples, "tts_batch_items", state="succeeded") >= 10
    assert get(samples, "tts_batch_item_seconds", stat="count") >= 10
    assert 0 < get(samples, "tts_batch_item_seconds", stat="p50") <= get(samples, "tts_batch_item_seconds", stat="max")
    assert ("tts_batch_backlog", frozenset()) in samples
    if server.mode == "distributed":
        assert ("tts_queue_depth", frozenset({("queue", "batch")})) in samples

    archive = httpx.get(f"{server.http}/batches/{batch_id}/archive", timeout=60)
    assert archive.status_code == 200 and archive.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zf:
        names = sorted(zf.namelist())
        assert names == sorted(["manifest.json", *(f"{i}.mp3" for i in range(10))])
        manifest = json.loads(zf.read("manifest.json"))
        assert manifest["id"] == batch_id and len(manifest["items"]) == 10
        first = httpx.get(f"{server.http}/batches/{batch_id}/items/0", timeout=30).content
        assert zf.read("0.mp3") == first


def test_the_same_put_again_is_200_and_another_body_409(server: RunningServer, voice: str) -> None:
    batch_id = unique("retry")
    body = {"prompt_id": voice, "inputs": [{"text": "Hello there."}], "audio_format": "wav"}
    assert put(server, batch_id, body).status_code == 201
    # the same job, spelled differently (key order, a default written out): a retry
    again = put(server, batch_id, {"inputs": [{"text": "Hello there.", "name": None}], "audio_format": "wav",
                                   "sample_rate": 24000, "prompt_id": voice, "ttl_hours": 168})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == batch_id
    other = put(server, batch_id, {**body, "inputs": [{"text": "Something else."}]})
    assert other.status_code == 409 and other.json()["error"] is True
    listed = httpx.get(f"{server.http}/batches?limit=100", timeout=30).json()["batches"]
    assert [b["id"] for b in listed].count(batch_id) == 1
    wait_for(server, batch_id, lambda j: j["state"] in TERMINAL)


def test_listing_pages_newest_first_with_a_cursor(server: RunningServer, voice: str) -> None:
    ids = [unique(f"page{i}") for i in range(3)]
    for batch_id in ids:
        assert put(server, batch_id, {"prompt_id": voice, "inputs": [{"text": "Hi."}], "audio_format": "pcm"}
                   ).status_code == 201
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{server.http}/batches", params=params, timeout=30)
        assert page.status_code == 200, page.text
        data = page.json()
        assert len(data["batches"]) <= 2 and all("items" not in b for b in data["batches"])
        seen += [b["id"] for b in data["batches"]]
        cursor = data["next"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    mine = [b for b in seen if b in ids]
    assert mine == list(reversed(ids))  # newest first, each once
    deep = base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode()
    for bad in ("nonsense", "eyJiZWZvcmUiOiAiMSJ9", "-1", deep):
        response = httpx.get(f"{server.http}/batches", params={"cursor": bad}, timeout=30)
        assert response.status_code == 400 and response.json()["error"] is True
    for bad in ("0", "101", "x", "1.5"):
        assert httpx.get(f"{server.http}/batches", params={"limit": bad}, timeout=30).status_code == 400
    for batch_id in ids:
        wait_for(server, batch_id, lambda j: j["state"] in TERMINAL)


LONG_EN = ("This sentence is long enough to keep the engine busy for a few seconds, so that a cancel "
           "arrives while the item is still being spoken, and not after it.")


def test_cancel_stops_running_items_within_seconds_and_keeps_finished_ones(server: RunningServer, voice: str) -> None:
    batch_id = unique("cancel")
    inputs = [{"text": "Short first item."}] + [{"text": LONG_EN} for _ in range(5)]
    assert put(server, batch_id, {"prompt_id": voice, "inputs": inputs}).status_code == 201
    busy = wait_for(server, batch_id, lambda j: j["items"][0]["state"] == "succeeded" and j["counts"]["running"] >= 1)
    by_state = [item["state"] for item in busy["items"]]
    assert {k: busy["counts"][k] for k in ("succeeded", "running", "pending")} == {
        k: by_state.count(k) for k in ("succeeded", "running", "pending")}  # pending counts no running item
    answer = httpx.post(f"{server.http}/batches/{batch_id}/cancel", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "cancelled"
    cancelled_at = time.monotonic()
    final = wait_for(server, batch_id, lambda j: j["counts"]["running"] == 0, timeout=30)
    assert time.monotonic() - cancelled_at < 10
    states = [item["state"] for item in final["items"]]
    assert states[0] == "succeeded" and all(s == "cancelled" for s in states[1:]), states
    time.sleep(3)  # a run that was stopped leaves nothing behind, and nothing more succeeds
    later = job(server, batch_id)
    assert [item["state"] for item in later["items"]] == states and later["state"] == "cancelled"
    assert httpx.get(f"{server.http}/batches/{batch_id}/items/0", timeout=30).status_code == 200
    missing = httpx.get(f"{server.http}/batches/{batch_id}/items/1", timeout=30)
    assert missing.status_code == 404 and missing.json()["error"] is True
    # cancelling again changes nothing
    assert httpx.post(f"{server.http}/batches/{batch_id}/cancel", timeout=30).json()["state"] == "cancelled"


def test_delete_removes_the_job_and_every_file_it_wrote(server: RunningServer, voice: str) -> None:
    batch_id = unique("delete")
    before = stored_outputs(server, "flac")
    inputs = [{"text": "One."}, {"text": "Two, and a little more."}, {"text": "三。"}]
    assert put(server, batch_id, {"prompt_id": voice, "inputs": inputs, "audio_format": "flac"}).status_code == 201
    wait_for(server, batch_id, lambda j: j["state"] in TERMINAL)
    written = stored_outputs(server, "flac") - before
    assert len(written) == 3, written
    deleted = httpx.delete(f"{server.http}/batches/{batch_id}", timeout=60)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["files_deleted"] == 3
    assert not (stored_outputs(server, "flac") & written)
    assert httpx.get(f"{server.http}/batches/{batch_id}", timeout=30).status_code == 404
    assert httpx.get(f"{server.http}/batches/{batch_id}/items/0", timeout=30).status_code == 404
    assert httpx.delete(f"{server.http}/batches/{batch_id}", timeout=30).status_code == 404
    # the id is free again, for a new job
    assert put(server, batch_id, {"prompt_id": voice, "inputs": [{"text": "Again."}]}).status_code == 201
    wait_for(server, batch_id, lambda j: j["state"] in TERMINAL)


def _bad_bodies(voice: str) -> list[tuple[str, Any, int]]:
    ok_item = [{"text": "Hello."}]
    return [
        ("not json", b"{", 400),
        ("a list", b"[]", 400),
        ("no inputs", {"prompt_id": voice}, 400),
        ("empty inputs", {"prompt_id": voice, "inputs": []}, 400),
        ("too many inputs", {"prompt_id": voice, "inputs": [{"text": "a"}] * 1001}, 400),
        ("input not an object", {"prompt_id": voice, "inputs": ["Hello."]}, 400),
        ("empty text", {"prompt_id": voice, "inputs": [{"text": "  "}]}, 400),
        ("text not a string", {"prompt_id": voice, "inputs": [{"text": 5}]}, 400),
        ("text too long", {"prompt_id": voice, "inputs": [{"text": "a" * 20001}]}, 400),
        ("NUL in text", {"prompt_id": voice, "inputs": [{"text": "a\x00b"}]}, 400),
        ("unknown item field", {"prompt_id": voice, "inputs": [{"text": "a", "speed": 2}]}, 400),
        ("no voice at all", {"inputs": ok_item}, 400),
        ("unknown voice", {"prompt_id": "nobody-has-this-voice", "inputs": ok_item}, 404),
        ("unknown item voice", {"prompt_id": voice, "inputs": [{"text": "a", "prompt_id": "nobody-either"}]}, 404),
        ("bad format", {"prompt_id": voice, "inputs": ok_item, "audio_format": "ogg"}, 400),
        ("bad rate", {"prompt_id": voice, "inputs": ok_item, "sample_rate": 12345}, 400),
        ("rate as string", {"prompt_id": voice, "inputs": ok_item, "sample_rate": "24000"}, 400),
        ("ttl zero", {"prompt_id": voice, "inputs": ok_item, "ttl_hours": 0}, 400),
        ("ttl too long", {"prompt_id": voice, "inputs": ok_item, "ttl_hours": 745}, 400),
        ("ttl not an integer", {"prompt_id": voice, "inputs": ok_item, "ttl_hours": 1.5}, 400),
        ("callback not http", {"prompt_id": voice, "inputs": ok_item, "callback_url": "ftp://example.com/x"}, 400),
        ("callback without host", {"prompt_id": voice, "inputs": ok_item, "callback_url": "http:///hook"}, 400),
        ("callback not a string", {"prompt_id": voice, "inputs": ok_item, "callback_url": 5}, 400),
        ("callback bad IDNA", {"prompt_id": voice, "inputs": ok_item, "callback_url": "http://xn--zz.com/"}, 400),
        ("callback too long", {"prompt_id": voice, "inputs": ok_item,
                               "callback_url": "http://example.com/" + "a" * 2048}, 400),
        ("destination not s3", {"prompt_id": voice, "inputs": ok_item, "destination": "https://example.com/x"}, 400),
        ("destination climbs", {"prompt_id": voice, "inputs": ok_item, "destination": "s3://bucket/a/../b"}, 400),
        ("timestamps", {"prompt_id": voice, "inputs": ok_item, "timestamps": True}, 400),
        ("unknown field", {"prompt_id": voice, "inputs": ok_item, "priority": 1}, 400),
    ]


def test_every_bad_body_is_refused_and_creates_nothing(server: RunningServer, voice: str) -> None:
    for label, body, status in _bad_bodies(voice):
        batch_id = unique("bad")
        response = put(server, batch_id, body)
        assert response.status_code == status, (label, response.status_code, response.text)
        assert response.json()["error"] is True and response.json()["message"], label
        assert httpx.get(f"{server.http}/batches/{batch_id}", timeout=30).status_code == 404, label
    for bad_id in ("ab", "x" * 65, "has space", "dots.in.it", "ünï"):
        response = put(server, bad_id, {"prompt_id": voice, "inputs": [{"text": "Hello."}]})
        assert response.status_code in (400, 404), (bad_id, response.text)
        assert response.json()["error"] is True


class CallbackReceiver:
    """A real HTTP server on this machine that records each POST and answers 500 to the
    first ``fail_first`` of them, 200 after."""

    def __init__(self, fail_first: int) -> None:
        self.calls: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = 500 if len(receiver.calls) < fail_first else 200
                receiver.calls.append(({k.lower(): v for k, v in self.headers.items()}, body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/tts?tenant=a"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    r = CallbackReceiver(fail_first=1)
    yield r
    r.stop()


def test_the_callback_is_signed_retried_after_a_500_and_delivered_once(server: RunningServer, voice: str,
                                                                       receiver: CallbackReceiver) -> None:
    batch_id = unique("callback")
    body = {"prompt_id": voice, "inputs": [{"text": "Done soon."}, {"text": "马上就好。"}], "callback_url": receiver.url}
    created = put(server, batch_id, body)
    assert created.status_code == 201, created.text
    secret = created.json()["callback_secret"]
    assert len(secret) == 64
    assert "callback_secret" not in put(server, batch_id, body).json()  # shown once, at creation
    wait_for(server, batch_id, lambda j: j.get("callback", {}).get("state") == "delivered", timeout=120)
    time.sleep(4)  # two sweeps more: nothing is sent again
    assert [status for _, _, status in receiver.calls] == [500, 200]
    for headers, raw, _ in receiver.calls:
        expected = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-tts-signature"], expected)
        assert headers["content-type"] == "application/json"
        sent = json.loads(raw)
        assert sent["id"] == batch_id and sent["state"] == "succeeded" and sent["counts"]["succeeded"] == 2
        assert "items" not in sent and "callback_secret" not in json.dumps(sent) and secret not in raw.decode()
    final = job(server, batch_id)
    assert final["callback"]["attempts"] == 2 and final["callback"]["error"] is None
    assert "callback_secret" not in final


def test_a_destination_gets_every_file_and_the_manifest(server: RunningServer, voice: str, s3_server) -> None:
    from tests.e2e.test_tenants import make_tenant

    s3_server.create_bucket("tts-batch-out")
    batch_id, prefix = unique("dest"), unique("jobs")
    body = {"prompt_id": voice, "inputs": [{"text": "First."}, {"text": "第二。"}], "audio_format": "m4a",
            "destination": f"s3://tts-batch-out/{prefix}/"}
    assert put(server, batch_id, body).status_code == 201
    final = wait_for(server, batch_id, lambda j: j["state"] in TERMINAL)
    assert final["state"] == "succeeded", final
    deadline = time.monotonic() + 20  # the manifest is written as the job ends
    while len(keys := sorted(s3_keys(s3_server.env(), "tts-batch-out", f"{prefix}/"))) < 3 \
            and time.monotonic() < deadline:
        time.sleep(0.3)
    assert keys == [f"{prefix}/{batch_id}/{name}" for name in ("0.m4a", "1.m4a", "manifest.json")], keys
    client = s3_server.client()
    for index in (0, 1):
        copy = client.get_object(Bucket="tts-batch-out", Key=f"{prefix}/{batch_id}/{index}.m4a")["Body"].read()
        assert copy == httpx.get(f"{server.http}/batches/{batch_id}/items/{index}", timeout=30).content
    manifest = json.loads(client.get_object(Bucket="tts-batch-out", Key=f"{prefix}/{batch_id}/manifest.json")["Body"]
                          .read())
    assert manifest["id"] == batch_id and manifest["state"] == "succeeded" and len(manifest["items"]) == 2

    # a key holder may write only under its own S3 roots (none are configured here): refused, nothing made
    tenant = make_tenant(server, "dest")
    refused = httpx.put(f"{server.http}/batches/{batch_id}", json={**body, "prompt_id": "any"}, timeout=30,
                        headers={"Authorization": f"Bearer {tenant.key}"})
    assert refused.status_code == 403 and "outside" in refused.json()["message"], refused.text
    listed = httpx.get(f"{server.http}/batches", timeout=30, headers={"Authorization": f"Bearer {tenant.key}"}).json()
    assert listed == {"batches": [], "next": None}


def test_batch_quotas_and_scope_refuse_whole_jobs(server: RunningServer, prompt_wavs: dict[str, bytes]) -> None:
    from tests.e2e.conftest import PROMPT_TEXTS
    from tests.e2e.test_tenants import clone, make_key, make_tenant

    tenant = make_tenant(server, "batchq")
    headers = {"Authorization": f"Bearer {tenant.key}"}
    assert clone(server, tenant.key, "q-voice", prompt_wavs["jm_kumo"], PROMPT_TEXTS["jm_kumo"]).status_code == 200

    def put_as(batch_id: str, texts: list[str], key_headers: dict[str, str] = headers) -> httpx.Response:
        return httpx.put(f"{server.http}/batches/{batch_id}", headers=key_headers, timeout=60,
                         json={"prompt_id": "q-voice", "inputs": [{"text": t} for t in texts]})

    def jobs() -> list[str]:
        return [b["id"] for b in httpx.get(f"{server.http}/batches", headers=headers, timeout=30).json()["batches"]]

    # the daily characters are taken for the whole job when it is made: one that does not fit is refused whole
    server.manage("set_quota", tenant.slug, "--chars-per-day", "60")
    too_big = put_as("over-quota", ["a" * 40, "b" * 30])
    assert too_big.status_code == 429 and "character quota" in too_big.json()["message"], too_big.text
    assert jobs() == []
    # a job refused for another reason takes none: 50 of the 60 still fit after three refusals
    for _ in range(3):
        unknown = httpx.put(f"{server.http}/batches/ghost", headers=headers, timeout=60,
                            json={"prompt_id": "q-voice", "inputs": [{"text": "c" * 50, "prompt_id": "ghost"}]})
        assert unknown.status_code == 404, unknown.text
    fits = put_as("fits", ["d" * 50])
    assert fits.status_code == 201, fits.text
    httpx.post(f"{server.http}/batches/fits/cancel", headers=headers, timeout=30)
    assert put_as("no-room-left", ["e" * 11]).status_code == 429
    server.manage("set_quota", tenant.slug, "--chars-per-day", "0", "--batches", "1")

    # one job queued or running at a time
    assert put_as("first", [LONG_EN, LONG_EN]).status_code == 201
    second = put_as("second", ["Hello."])
    assert second.status_code == 429 and "batch jobs" in second.json()["message"], second.text
    assert jobs() == ["first", "fits"]
    httpx.post(f"{server.http}/batches/first/cancel", headers=headers, timeout=30)
    assert put_as("second", ["Hello."]).status_code == 201  # the cancelled one no longer counts
    server.manage("set_quota", tenant.slug, "--batches", "0")

    # a key without the batch scope
    narrow = make_key(server, tenant, "--scopes", "synthesize", "clone")
    refused = put_as("third", ["Hi."], {"Authorization": f"Bearer {narrow}"})
    assert refused.status_code == 403 and "'batch' scope" in refused.json()["message"]
    assert httpx.get(f"{server.http}/batches", headers={"Authorization": f"Bearer {narrow}"},
                     timeout=30).status_code == 403
    assert httpx.post(f"{server.http}/batches/second/cancel", headers=headers, timeout=30).status_code == 200


def test_an_item_with_nothing_to_speak_fails_alone_and_is_not_counted(server: RunningServer, voice: str) -> None:
    batch_id = unique("silent")
    used_before = usage_characters(server)
    assert put(server, batch_id, {"prompt_id": voice, "inputs": [{"text": "!!! ..."}, {"text": "Hello there."}],
                                  "audio_format": "mp3"}).status_code == 201
    final = wait_for(server, batch_id, lambda j: j["state"] in TERMINAL)
    assert final["state"] == "partially_succeeded", final
    silent, spoken = final["items"]
    assert silent["state"] == "failed" and "nothing to speak" in silent["error"] and silent["url"] is None
    assert spoken["state"] == "succeeded"
    assert httpx.get(f"{server.http}/batches/{batch_id}/items/0", timeout=30).status_code == 404
    assert usage_characters(server) - used_before == len("Hello there.")
