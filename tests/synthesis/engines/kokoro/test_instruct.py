from __future__ import annotations

import pytest

from synthesis.engines.kokoro.instruct import PITCH_RANGE, SPEED_RANGE, VOLUME_RANGE, InstructParams, parse_instruct

UP, DOWN, SAME = "up", "down", "same"


@pytest.mark.parametrize(
    "text, speed, pitch, volume",
    [
        ("speak slowly", DOWN, SAME, SAME),
        ("slower please", DOWN, SAME, SAME),
        ("fast", UP, SAME, SAME),
        ("a bit faster", UP, SAME, SAME),
        ("quickly", UP, SAME, SAME),
        ("慢一点", DOWN, SAME, SAME),
        ("慢速", DOWN, SAME, SAME),
        ("语速快", UP, SAME, SAME),
        ("快一点", UP, SAME, SAME),
        ("higher pitch", SAME, UP, SAME),
        ("deep voice", SAME, DOWN, SAME),
        ("低沉", SAME, DOWN, SAME),
        ("声音尖一点", SAME, UP, SAME),
        ("音调高", SAME, UP, SAME),
        ("louder", SAME, SAME, UP),
        ("大声", SAME, SAME, UP),
        ("softly", SAME, SAME, DOWN),
        ("whisper", SAME, SAME, DOWN),
        ("小声", SAME, SAME, DOWN),
        ("轻声", SAME, SAME, DOWN),
        ("lower the volume", SAME, SAME, DOWN),
        ("happy", UP, UP, SAME),
        ("用欢快的语气", UP, UP, SAME),
        ("高兴", UP, UP, SAME),  # 高 inside 高兴 is not "higher"
        ("快乐", UP, UP, SAME),  # 快 inside 快乐 is not "faster" alone
        ("sad", DOWN, DOWN, SAME),
        ("悲伤", DOWN, DOWN, SAME),
        ("calm", DOWN, SAME, SAME),
        ("平静", DOWN, SAME, SAME),
        ("not too fast", DOWN, SAME, SAME),
        ("不要太快", DOWN, SAME, SAME),
    ],
)
def test_phrase_table(text: str, speed: str, pitch: str, volume: str) -> None:
    params = parse_instruct(text)
    for value, want in ((params.speed, speed), (params.pitch, pitch), (params.volume, volume)):
        if want == UP:
            assert value > 1.0, (text, params)
        elif want == DOWN:
            assert value < 1.0, (text, params)
        else:
            assert value == 1.0, (text, params)
    assert params.ignored == ()


@pytest.mark.parametrize(
    "text, speed",
    [("1.5x speed", 1.5), ("speed: 0.8", 0.8), ("语速1.2倍", 1.2), ("1.2倍速", 1.2), ("语速120%", 1.2)],
)
def test_numeric_speed(text: str, speed: float) -> None:
    assert parse_instruct(text).speed == pytest.approx(speed)


def test_numeric_pitch_and_volume() -> None:
    assert parse_instruct("pitch 1.1").pitch == pytest.approx(1.1)
    assert parse_instruct("音量0.5").volume == pytest.approx(0.5)


def test_defaults() -> None:
    assert parse_instruct(None) == InstructParams()
    assert parse_instruct("") == InstructParams()
    assert parse_instruct("   ") == InstructParams()


def test_modifiers_scale_the_effect() -> None:
    slight, plain, strong = (parse_instruct(t).speed for t in ("slightly slower", "slower", "very slow"))
    assert strong < plain < slight < 1.0
    assert parse_instruct("很慢").speed < parse_instruct("慢").speed < parse_instruct("慢一点").speed


def test_unknown_phrases_are_listed_and_known_ones_still_apply() -> None:
    params = parse_instruct("say it like a pirate, slowly; 用四川话说")
    assert params.speed < 1.0
    assert params.ignored == ("say it like a pirate", "用四川话说")


def test_combined_and_clamped() -> None:
    params = parse_instruct("Speak faster and louder, with a sad tone")
    assert params.volume > 1.0 and params.pitch < 1.0
    assert parse_instruct("10x speed").speed == SPEED_RANGE[1]
    assert parse_instruct("0.01x speed").speed == SPEED_RANGE[0]
    assert parse_instruct("pitch 5").pitch == PITCH_RANGE[1]
    assert parse_instruct("volume 100").volume == VOLUME_RANGE[1]
    extreme = parse_instruct("very very fast, very happy, faster, quickly")
    assert SPEED_RANGE[0] <= extreme.speed <= SPEED_RANGE[1]
