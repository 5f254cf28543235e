"""The one check of a job's chunk order, used by the /tts consumer and the admin preview."""
from __future__ import annotations

import pytest

from workers.errors import SynthesisFailed
from workers.events import ChunkSequence


def test_chunks_in_order_pass_and_the_end_counts_them() -> None:
    sequence = ChunkSequence()
    assert [sequence.accept(i) for i in range(3)] == [True, True, True]
    sequence.check_end(3)


def test_a_redelivered_chunk_is_dropped_and_not_counted() -> None:
    sequence = ChunkSequence()
    assert sequence.accept(0) and sequence.accept(1)
    assert sequence.accept(0) is False and sequence.accept(1) is False
    assert sequence.accept(2)
    sequence.check_end(3)


@pytest.mark.parametrize("index", [1, 5, None, "0", 0.5, True])
def test_a_gap_or_a_malformed_index_fails_the_job(index: object) -> None:
    sequence = ChunkSequence()
    with pytest.raises(SynthesisFailed, match="audio chunk 0 was lost"):
        sequence.accept(index)


def test_after_a_gap_nothing_is_passed_on() -> None:
    sequence = ChunkSequence()
    sequence.accept(0)
    with pytest.raises(SynthesisFailed):
        sequence.accept(2)
    with pytest.raises(SynthesisFailed):  # the chunk that went missing does not mend it
        sequence.accept(2)


@pytest.mark.parametrize("count", [0, 1, 3, None, "2"])
def test_an_end_that_miscounts_fails_the_job(count: object) -> None:
    sequence = ChunkSequence()
    sequence.accept(0)
    sequence.accept(1)
    with pytest.raises(SynthesisFailed, match="chunks missing"):
        sequence.check_end(count)
