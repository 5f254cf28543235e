"""The create body of a batch job: what is accepted, what is refused, and when two bodies are one job."""
from __future__ import annotations

import pytest

from batches.callbacks import check_callback_url, signature
from batches.validation import MAX_ITEMS, check_batch_id, parse_create
from voices.errors import InvalidRequest

LIMIT = 20000


def test_defaults_and_item_voices() -> None:
    spec = parse_create({"prompt_id": "alice", "inputs": [{"text": "Hi."}, {"text": "Yo.", "prompt_id": "bob"}]}, LIMIT)
    assert (spec.audio_format, spec.sample_rate, spec.ttl_hours, spec.timestamps) == ("wav", 24000, 168, False)
    assert [item.prompt_id for item in spec.items] == ["alice", "bob"]
    assert spec.prompt_ids == ["alice", "bob"] and spec.characters == 6


def test_the_job_names_a_voice_even_when_every_item_has_its_own() -> None:
    with pytest.raises(InvalidRequest, match="prompt_id is required"):
        parse_create({"inputs": [{"text": "Hi.", "prompt_id": "carol"}]}, LIMIT)


def test_the_same_job_spelled_differently_has_one_digest() -> None:
    a = parse_create({"prompt_id": "alice", "inputs": [{"text": "Hi."}]}, LIMIT)
    b = parse_create({"inputs": [{"name": None, "text": "Hi."}], "audio_format": "WAV ", "sample_rate": 24000,
                      "ttl_hours": 168, "callback_url": None, "timestamps": False, "prompt_id": "alice"}, LIMIT)
    assert a.sha256() == b.sha256()
    c = parse_create({"prompt_id": "alice", "inputs": [{"text": "Hi!"}]}, LIMIT)
    assert c.sha256() != a.sha256()


@pytest.mark.parametrize("body", [
    {"inputs": [{"text": "x"}]},
    {"prompt_id": "a", "inputs": []},
    {"prompt_id": "a", "inputs": [{"text": "x"}] * (MAX_ITEMS + 1)},
    {"prompt_id": "a", "inputs": {"text": "x"}},
    {"prompt_id": "a", "inputs": [{"text": ""}]},
    {"prompt_id": "a", "inputs": [{"text": "x" * (LIMIT + 1)}]},
    {"prompt_id": "a", "inputs": [{"text": "x", "name": "n" * 201}]},
    {"prompt_id": "a", "inputs": [{"text": "x", "prompt_id": ""}]},
    {"prompt_id": "a\x00", "inputs": [{"text": "x"}]},
    {"prompt_id": "a", "inputs": [{"text": "x"}], "audio_format": "ogg"},
    {"prompt_id": "a", "inputs": [{"text": "x"}], "audio_format": "wav", "sample_rate": 12000},
    {"prompt_id": "a", "inputs": [{"text": "x"}], "sample_rate": True},
    {"prompt_id": "a", "inputs": [{"text": "x"}], "ttl_hours": 0},
    {"prompt_id": "a", "inputs": [{"text": "x"}], "ttl_hours": "5"},
    {"prompt_id": "a", "inputs": [{"text": "x"}], "instruct_text": 3},
    {"prompt_id": "a", "inputs": [{"text": "x"}], "timestamps": "yes"},
    {"prompt_id": "a", "inputs": [{"text": "x"}], "destination": "https://example.com/out"},
    {"prompt_id": "a", "inputs": [{"text": "x"}], "destination": "s3://bucket/../up"},
    {"prompt_id": "a", "inputs": [{"text": "x"}], "destination": "s3:///no-bucket"},
    {"prompt_id": "a", "inputs": [{"text": "x"}], "callback_url": ["http://x"]},
    {"prompt_id": "a", "inputs": [{"text": "x"}], "extra": 1},
])
def test_bad_bodies_name_their_problem(body: dict) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_create(body, LIMIT)
    assert refused.value.status == 400 and refused.value.message


def test_a_destination_is_an_s3_prefix_written_one_way() -> None:
    spec = parse_create({"prompt_id": "a", "inputs": [{"text": "x"}], "destination": "s3://out-bucket/jobs/"}, LIMIT)
    assert spec.destination == "s3://out-bucket/jobs"


def test_opus_takes_its_own_rate() -> None:
    assert parse_create({"prompt_id": "a", "inputs": [{"text": "x"}], "audio_format": "opus", "sample_rate": 12000},
                        LIMIT).sample_rate == 12000


@pytest.mark.parametrize("batch_id", ["ab", "x" * 65, "a b", "a.b", "ä12", "a/b"])
def test_batch_ids_are_3_to_64_safe_characters(batch_id: str) -> None:
    with pytest.raises(InvalidRequest):
        check_batch_id(batch_id)
    assert check_batch_id("Chapter_01-final") == "Chapter_01-final"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.1.2.3/",
                                 "http://[::1]/", "http://169.254.169.254/latest", "http://2130706433/",
                                 "https://0x7f.1/"])
def test_callbacks_to_private_addresses_are_refused_unless_allowed(settings, url: str) -> None:
    settings.TTS_CALLBACK_ALLOW_PRIVATE_URLS = False
    with pytest.raises(InvalidRequest) as refused:
        check_callback_url(url)
    assert "private" in refused.value.message or "resolve" in refused.value.message
    settings.TTS_CALLBACK_ALLOW_PRIVATE_URLS = True
    assert check_callback_url(url) == url


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "http:///x", "not a url"])
def test_callbacks_must_be_http_urls_with_a_host(settings, url: str) -> None:
    settings.TTS_CALLBACK_ALLOW_PRIVATE_URLS = True
    with pytest.raises(InvalidRequest):
        check_callback_url(url)


def test_the_signature_is_the_hmac_sha256_of_the_body() -> None:
    import hashlib
    import hmac

    body = b'{"id":"b1"}'
    assert signature("k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert signature("k", body) != signature("other", body)
