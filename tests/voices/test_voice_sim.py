"""Voice.sim: the similarity a voice reached, as GET /voices/<id> and the admin show it."""
from __future__ import annotations

import pytest

from voices.models import Voice


@pytest.mark.parametrize("metrics, sim", [
    ({"similarity": 0.58, "sim": 0.71}, 0.71),  # quick clone: the transcript against the prompt
    ({"similarity": 0.58, "sim": 0.71, "sim_before": 0.71, "sim_after": 0.78}, 0.78),  # refined
    ({"similarity": 0.58}, None),  # nearest bundled voice only: not what the voice reached
    ({}, None),
    ({"sim": True}, None),
    ({"sim": "0.7"}, None),
])
def test_sim_is_what_the_voice_reached(metrics: dict, sim: float | None) -> None:
    assert Voice(metrics=metrics).sim == sim
