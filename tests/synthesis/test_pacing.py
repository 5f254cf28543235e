"""Clause pacing (synthesis/pacing.py): later clauses sized to the audio queued ahead of the
listener, so a stream does not stall after its greeting."""
from __future__ import annotations

import time

import pytest

from synthesis.engines.replay import ReplayEngine
from synthesis.job import TextInbox, run_synthesis
from synthesis.pacing import ClausePacer
from synthesis.request import TtsRequest


def test_nothing_queued_leaves_the_first_clause_to_the_segmenter() -> None:
    assert ClausePacer().budget(None) is None


def test_the_budget_grows_with_the_audio_queued() -> None:
    pacer = ClausePacer()
    budgets = [pacer.budget(ahead) for ahead in (0.0, 1.5, 2.0, 4.0, 8.0)]
    assert budgets[0] == pacer.min_units  # never shorter than a clause worth a model run
    assert budgets == sorted(budgets) and budgets[-1] > 4 * budgets[1]


def test_the_shortest_clause_follows_the_engines_fixed_cost() -> None:
    assert ClausePacer((0.5, 0.15)).min_units == pytest.approx(6.67, abs=0.01)  # Kokoro, 2 CPU cores
    assert ClausePacer((0.02, 0.05)).min_units == 2.0  # a fast engine: about a word
    assert ClausePacer((5.0, 0.1)).min_units == 12.0


def test_an_engine_that_costs_nothing_is_never_cut_short() -> None:
    pacer = ClausePacer((0.0, 0.0))
    pacer.observe(10, 0.01)  # nothing to learn from, and no division by its zero cost
    assert pacer.scale == 1.0
    assert pacer.budget(0.0) is None  # the segmenter's own limits


def test_a_slower_machine_gets_shorter_clauses() -> None:
    fast, slow = ClausePacer(), ClausePacer()
    for _ in range(4):
        fast.observe(10, 0.6)
        slow.observe(10, 2.0)
    assert slow.budget(6.0) < fast.budget(6.0) / 2
    # a clause's cost per unit: (seconds - overhead) / units, learned
    assert slow.per_unit_s == pytest.approx((2.0 - slow.overhead_s) / 10, rel=0.1)


class ArrivalSink:
    """Records when each chunk arrived and how long it plays."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.arrivals: list[float] = []
        self.seconds: list[float] = []
        self.ended = False

    def chunk(self, index: int, data_b64: str, seconds: float) -> None:
        import base64

        self.arrivals.append(time.monotonic())
        self.seconds.append(len(base64.b64decode(data_b64)) / 2 / self.sample_rate)

    def end(self, count: int) -> None:
        self.ended = True

    def error(self, message: str) -> None:
        raise AssertionError(message)

    def stall(self) -> float:
        """Seconds the player waited for audio after it had started."""
        waited, clock = 0.0, None
        for arrival, seconds in zip(self.arrivals, self.seconds, strict=True):
            if clock is not None and arrival > clock:
                waited += arrival - clock
            clock = max(clock or arrival, arrival) + seconds
        return waited

    def underruns(self) -> int:
        """Chunks that arrived after everything before them had finished playing."""
        late, clock = 0, None
        for arrival, seconds in zip(self.arrivals, self.seconds, strict=True):
            if clock is not None and arrival > clock + 0.05:  # 50 ms of scheduling noise (a loaded CI machine)
                late += 1
            clock = max(clock or arrival, arrival) + seconds
        return late


TEXT = ("Hello, thanks for calling the city library. Our opening hours today are from nine in the morning "
        "until eight in the evening.")


def run_agent_text(delay_ms: float, rtf: float) -> tuple[ArrivalSink, float]:
    """An engine with a fixed cost per clause plus ``rtf`` seconds per second of audio (the
    replay engine sleeps: no CPU), the whole text there at once; (the sink, start time)."""
    engine = ReplayEngine(delay_ms=delay_ms, rtf=rtf, seconds_per_unit=0.2)
    engine.load()
    request = TtsRequest(prompt_id="p", audio_format="pcm", sample_rate=engine.sample_rate)
    inbox = TextInbox(capacity=16)
    inbox.put(TEXT, done=True)
    sink = ArrivalSink(engine.sample_rate)
    started = time.monotonic()
    run_synthesis(engine, engine.stock_features(), request, inbox, sink)
    assert sink.ended
    return sink, started


@pytest.mark.parametrize("rtf", [0.4, 0.6])
def test_an_agent_stream_is_not_starved_after_its_greeting(rtf: float) -> None:
    """A small cost per clause: the greeting goes out first, alone, within 1.4x of what it
    costs (pacing.HOLD_SHARE), and no later chunk comes after the audio before it has
    finished playing."""
    sink, started = run_agent_text(60, rtf)
    greeting_cost = 0.06 + rtf * 0.34  # "Hello," is 1.7 units: 0.34 s of replay audio
    assert sink.arrivals[0] - started < 1.25 * greeting_cost + 0.15
    assert sink.seconds[0] < 0.5  # "Hello," alone
    assert sink.underruns() == 0, list(zip(sink.arrivals, sink.seconds, strict=True))


def test_a_large_cost_per_clause_holds_the_greeting_back_a_little() -> None:
    """0.15 s per clause: the shortest next clause worth a run (3 units, 0.45 s) takes longer
    than the greeting plays (0.34 s), so the greeting waits, by at most 25 % of its cost
    (0.08 s); the player then waits at most the rest once (0.03 s), and never again."""
    sink, started = run_agent_text(150, 0.5)
    greeting_cost = 0.15 + 0.5 * 0.34
    assert greeting_cost + 0.05 < sink.arrivals[0] - started < 1.25 * greeting_cost + 0.1
    assert sink.stall() < 0.1, list(zip(sink.arrivals, sink.seconds, strict=True))
