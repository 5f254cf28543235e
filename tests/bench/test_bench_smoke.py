"""A CI-sized run of the benchmark (`bench/run.py --smoke`): replay engine, embedded mode,
1 and 2 streams, through a real server. Checks that the machinery works and writes what
it should; never checks timings."""
from __future__ import annotations

import json
from pathlib import Path

EXPECTED_TOP = {"name", "created", "machine", "shared", "config", "encoder_cost", "engines", "comparisons",
                "targets", "duration_s"}
EXPECTED_CELL = {"streams", "errors", "ttfa_clause_ms", "ttfa_done_ms", "gap_ms", "underruns",
                 "streams_with_underrun", "min_headroom_ms", "rtf", "throughput_x_realtime",
                 "platform_cpu_ms_per_audio_s"}


def test_bench_smoke(tmp_path: Path) -> None:
    from bench.run import main

    paths = main(["--smoke", "--results-dir", str(tmp_path), "--no-plots"])
    results = json.loads(paths["json"].read_text())
    assert EXPECTED_TOP <= set(results)
    assert results["machine"]["cores"] >= 1 and results["machine"]["cpu"]
    assert set(results["encoder_cost"]["formats"]) == {"opus", "pcm", "wav", "mp3", "flac", "aac", "m4a"}
    replay = results["engines"]["replay"]
    assert set(results["engines"]["replay-paced"]["in_process"]) == {"1", "2"}
    embedded = replay["modes"]["embedded"]
    assert embedded["clone_ms"]["n"] == 1
    assert set(embedded["levels"]) == {"1", "2"}
    for level in ("1", "2"):
        for scenario in ("stream", "burst"):
            cell = embedded["levels"][level][scenario]
            assert EXPECTED_CELL <= set(cell)
            assert cell["errors"] == 0, cell["error_samples"]
            assert cell["streams"] >= int(level)
            assert cell["ttfa_clause_ms"]["n"] == cell["streams"]
    assert embedded["levels"]["2"]["burst"]["ttfa_done_ms"]["n"] == embedded["levels"]["2"]["burst"]["streams"]
    assert set(results["comparisons"]["platform_overhead"]["replay-paced"]["embedded"]) == {"1", "2"}
    table = paths["table"].read_text()
    assert "Replay engine" in table and "| embedded | 2 |" in table and results["machine"]["cpu"] in table
