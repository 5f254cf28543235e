from __future__ import annotations

import pytest

from api.errors import ProtocolError
from api.protocol import TtsRequest, decode_message, parse_req_params, parse_text_message


@pytest.mark.parametrize(
    "raw,expected",
    [
        ({"prompt_id": "a"}, TtsRequest("a")),
        ({"prompt_id": "a", "audio_format": "MP3", "sample_rate": "16000"}, TtsRequest("a", "mp3", 16000)),
        ({"prompt_id": "a", "audio_format": None, "sample_rate": None, "instruct_text": None}, TtsRequest("a")),
        ({"prompt_id": "a", "instruct_text": ""}, TtsRequest("a", instruct_text=None)),
        ({"prompt_id": "a", "instruct_text": "  speak slowly "}, TtsRequest("a", instruct_text="speak slowly")),
        ({"prompt_id": "a", "sample_rate": 44100.0, "chunk_mode": "stream"}, TtsRequest("a", sample_rate=44100, chunk_mode="stream")),
    ],
)
def test_it_parses_req_params(raw: dict, expected: TtsRequest) -> None:
    assert parse_req_params(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        None, "a", [], {}, {"prompt_id": ""}, {"prompt_id": 3},
        {"prompt_id": "a", "audio_format": "ogg"}, {"prompt_id": "a", "audio_format": 7},
        {"prompt_id": "a", "sample_rate": 12345}, {"prompt_id": "a", "sample_rate": True},
        {"prompt_id": "a", "sample_rate": 11025}, {"prompt_id": "a", "audio_format": "mp3", "sample_rate": 12000},
        {"prompt_id": "a", "sample_rate": 24000.5}, {"prompt_id": "a", "instruct_text": 1},
        {"prompt_id": "a", "instruct_text": "x" * 501}, {"prompt_id": "a", "chunk_mode": "frames"},
        # no voice can have such an id (REST refuses it); PostgreSQL cannot even look one up
        {"prompt_id": "a\x00b"}, {"prompt_id": "x" * 129},
        # digits int() refuses: a superscript, and more digits than Python converts
        {"prompt_id": "a", "sample_rate": "²"}, {"prompt_id": "a", "sample_rate": "9" * 5000},
    ],
)
def test_it_rejects_bad_req_params(raw: object) -> None:
    with pytest.raises(ProtocolError):
        parse_req_params(raw)


def test_text_messages() -> None:
    assert parse_text_message({"text": "你", "done": False}) == ("你", False)
    assert parse_text_message({"text": None, "done": True}) == ("", True)
    assert parse_text_message({"done": True}) == ("", True)
    assert parse_text_message({"text": "x"}) == ("x", False)
    for bad in ({"text": 5}, {"text": "x", "done": "yes"}):
        with pytest.raises(ProtocolError):
            parse_text_message(bad)


def test_decode_message_wants_a_json_object() -> None:
    assert decode_message('{"a": 1}') == {"a": 1}
    for bad in (None, "nope", "[1]", '"s"'):
        with pytest.raises(ProtocolError):
            decode_message(bad)


def test_every_accepted_format_and_rate_has_an_encoder() -> None:
    """The protocol accepts nothing the encoders would refuse once the job has started."""
    from synthesis.encoding import FORMATS, make_encoder

    for fmt, spec in FORMATS.items():
        for rate in spec.sample_rates:
            for mode in ("file", "stream"):
                request = parse_req_params({"prompt_id": "a", "audio_format": fmt, "sample_rate": rate, "chunk_mode": mode})
                make_encoder(request.audio_format, request.sample_rate, request.chunk_mode)
