"""Clause sizes that keep a stream ahead of its listener.

A listener starts playing at the first chunk and plays everything back to back; a clause
that takes longer to synthesize than the audio still queued ahead of it leaves a gap
(an underrun). So each later clause is cut to what can be synthesized in the time the
queued audio lasts: short while little is queued (right after a greeting), growing as
the queue grows, up to the segmenter's own limits.

A clause of ``u`` units (the segmenter's speaking-length measure, about a syllable) is
expected to cost ``scale * (overhead + per_unit * u)`` seconds. ``overhead`` and
``per_unit`` are the engine's own, measured when it loads (``Engine.clause_cost``; a
model run has a large fixed part: Kokoro on 2 CPU cores takes ~0.5 s for one word and
~0.15 s per further syllable); ``scale`` is learned from this job's clauses, so a busy
machine (streams sharing the cores) gets shorter clauses than an idle one.

The first audio may also be held back briefly (``first_hold``): when the greeting alone
is too short to cover the shortest next clause, starting playback a little later is the
only way to avoid a stall right after it.
"""
from __future__ import annotations

from synthesis.text.segmenter import MIN_BUDGET

#: when the engine does not say (Kokoro, 2 CPU cores, measured): seconds per clause, per unit
DEFAULT_COST = (0.5, 0.15)
#: how much of the queued audio a clause may use up (the rest absorbs timing noise)
MARGIN = 1.0
#: weight of the newest clause in the learned scale (an exponential average)
LEARNING_RATE = 0.5
#: the first audio is held back at most this share of the time it took to synthesize
HOLD_SHARE = 0.25
#: a later clause is planned at least this long (in units of the engine's per-unit cost times
#: its fixed cost): shorter, and the fixed cost would be over a third of the clause's
FIXED_SHARE_UNITS = 2.0
#: ... but never longer than this (units)
MAX_FLOOR = 12.0


class ClausePacer:
    def __init__(self, cost: tuple[float, float] | None = None, margin: float = MARGIN) -> None:
        self.overhead_s, self.per_unit_s = cost or DEFAULT_COST
        self.margin = margin
        #: the shortest later clause worth a model run (Kokoro on 2 CPU cores: ~7 units)
        self.min_units = min(MAX_FLOOR, max(MIN_BUDGET, FIXED_SHARE_UNITS * self.overhead_s
                                            / max(self.per_unit_s, 1e-3)))
        #: observed / expected cost of this job's clauses
        self.scale = 1.0

    def expected_s(self, units: float) -> float:
        """What a clause of ``units`` is expected to take to synthesize now."""
        return self.scale * (self.overhead_s + self.per_unit_s * units)

    def observe(self, units: float, seconds: float) -> None:
        """A clause of ``units`` took ``seconds`` from the request for it to its last audio."""
        expected = self.overhead_s + self.per_unit_s * units
        if units <= 0 or seconds <= 0 or expected <= 1e-6:  # an engine that costs nothing: nothing to learn
            return
        ratio = seconds / expected
        self.scale += LEARNING_RATE * (min(max(ratio, 0.2), 5.0) - self.scale)

    def budget(self, ahead_s: float | None) -> float | None:
        """Units the next clause may have when ``ahead_s`` seconds of audio are queued for the
        listener; None when nothing is playing yet (the first clause has its own limits)."""
        if ahead_s is None or self.per_unit_s <= 1e-6:  # nothing playing yet, or length costs nothing
            return None
        affordable = self.margin * max(0.0, ahead_s) / self.scale - self.overhead_s
        return max(self.min_units, affordable / max(self.per_unit_s, 1e-3))

    def first_hold(self, first_audio_s: float, first_took_s: float) -> float:
        """Seconds to hold the first audio back: enough for the shortest next clause to be
        ready before it has played, at most HOLD_SHARE of the time the first one took."""
        needed = self.expected_s(self.min_units) / self.margin - first_audio_s
        return min(max(0.0, needed), HOLD_SHARE * first_took_s)
