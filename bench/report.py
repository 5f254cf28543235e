"""Turn a bench/run.py result into a README-ready markdown table and PNG plots."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.machine import summary_line

ENGINE_TITLES = {"kokoro": "Kokoro (the default engine)", "replay": "Replay engine (platform only)",
                 "replay-paced": "Replay engine, paced"}


def _n(value: Any, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{unit}"


def _pct(s: dict[str, Any], digits: int = 0) -> str:
    if not s or not s.get("n"):
        return "-"
    return f"{_n(s['p50'], digits)} / {_n(s['p95'], digits)} / {_n(s['p99'], digits)}"


def _pm(value: Any, noise: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" + (f" ± {noise:.0f}" if noise is not None else "") + " ms"


def _ms(value: Any) -> str:
    """ms, or s above 10 s."""
    if value is None:
        return "-"
    return f"{value / 1000:.1f} s" if value >= 10000 else f"{value:.0f}"


def _pct_ms(s: dict[str, Any]) -> str:
    if not s or not s.get("n"):
        return "-"
    return " / ".join(_ms(s[k]) for k in ("p50", "p95", "p99"))


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    cfg = results["config"]
    command = {"bench": "make bench", "bench-quick": "make bench-quick"}.get(results["name"], "bench/run.py")
    lines = [
        f"Measured by `{command}` ({results['created'][:10]}, {results.get('duration_s', 0) / 60:.0f} min) on "
        f"{summary_line(m)}; the client runs on the same machine.",
    ]
    shared = results.get("shared", {})
    if shared.get("other_test_processes_at_start") or shared.get("levels_with_other_test_processes"):
        levels = shared.get("levels_with_other_test_processes") or []
        lines.append("The machine was shared: other test processes were running "
                     + (f"during {', '.join(levels)}" if levels else "at the start")
                     + "; those numbers are noisy.")
    else:
        lines.append("Nothing else was running on the machine (no other test process seen at any level).")
    lines += [
        "",
        f"Streams of {len(cfg['texts'])} texts (English and Chinese, 5 clauses, about 7 s of speech each, a short "
        f"first clause: \"Sure!\" / \"好的！\"), pcm at 24 kHz. N streams start together; each is sent two ways: "
        f"word by word (a piece every {cfg['piece_delay_ms'][0]:.0f}-{cfg['piece_delay_ms'][1]:.0f} ms, as from an "
        "LLM; TTFA from the moment the first clause was complete) and all at once (TTFA from `done`; RTF and "
        "throughput from these). Times in ms: p50 / p95 / p99. Chunk gap: time between audio chunks (one per "
        "clause). Underruns: streams in which a chunk arrived after everything before it had finished playing "
        "(playback starting at the first chunk) / all streams.",
        "",
    ]
    for engine, data in results["engines"].items():
        if "stream" not in data.get("scenarios", ["stream"]):
            continue  # burst-only setups appear under platform overhead
        title = data.get("title") or ENGINE_TITLES.get(engine, engine)
        if engine == "replay":
            title += (" (pre-made audio, no pacing: every time below is the platform's own, plus the text's "
                      "arrival for the gaps)")
        lines += [f"**{title}**", ""]
        cpu_col = data.get("engine", engine) == "replay"
        head = ("| mode | streams | TTFA from first clause | TTFA from done | chunk gap p50 / p95 | underruns | "
                "RTF p50 | throughput |" + (" server CPU per audio s |" if cpu_col else ""))
        lines += [head, "|" + "---|" * (head.count("|") - 1)]
        for mode, mdata in data["modes"].items():
            for level, cell in mdata["levels"].items():
                s, b = cell["stream"], cell["burst"]
                errors = s["errors"] + b["errors"]
                under = f"{s['streams_with_underrun'] + b['streams_with_underrun']}/{s['streams'] + b['streams']}"
                if errors:
                    under += f" ({errors} failed)"
                row = (f"| {mode} | {level} | {_pct_ms(s['ttfa_clause_ms'])} | {_pct_ms(b['ttfa_done_ms'])} | "
                       f"{_ms(s['gap_ms']['p50'])} / {_ms(s['gap_ms']['p95'])} | {under} | "
                       f"{_n(b['rtf']['p50'], 3 if cpu_col else 2)} | {_n(b['throughput_x_realtime'], 1, 'x')} |")
                if cpu_col:
                    row += f" {_n(b.get('platform_cpu_ms_per_audio_s'), 1, ' ms')} |"
                lines.append(row)
        base = data.get("in_process", {}).get("1")
        if base and data.get("engine") != "replay":
            lines += ["", f"In-process (the engine alone, no platform, text at once, 1 stream): TTFA p50 "
                          f"{_ms(base['ttfa_done_ms']['p50'])} ms, RTF p50 {_n(base['rtf']['p50'], 2)}."]
        lines.append("")

    comp = results.get("comparisons", {})
    overhead = comp.get("platform_overhead", {})
    if overhead:
        paced = results["engines"].get("replay-paced", {}).get("settings", {}).get("rtf")
        lines += ["**Platform overhead**: the same engine and texts (text at once) in-process, in as many threads, "
                  "vs through WebSocket → Daphne → job → channel layer → WebSocket; throughput in seconds of audio "
                  "per second, all streams together"
                  + (f". replay-paced: the replay engine sleeping {paced:g} s per second of audio (an engine on "
                     "another device: time passes, this CPU is free)" if paced is not None else ""), "",
                  "| engine | mode | streams | throughput in-process | through the API | overhead | "
                  "TTFA added p50 | RTF in-process / API |",
                  "|---|---|---|---|---|---|---|---|"]
        for engine, modes_ in overhead.items():
            for mode, levels in modes_.items():
                for level, o in levels.items():
                    lines.append(f"| {engine} | {mode} | {level} | {_n(o['throughput_in_process_x'], 1, 'x')} | "
                                 f"{_n(o['throughput_api_x'], 1, 'x')} | {_n(o['overhead_pct'], 1, ' %')} | "
                                 f"{_n(o['ttfa_added_p50_ms'], 0, ' ms')} | {_n(o['rtf_in_process_p50'], 3)} / "
                                 f"{_n(o['rtf_api_p50'], 3)} |")
        lines.append("")
    adds = comp.get("distributed_adds", {})
    if adds:
        lines += ["**What distributed mode adds** (distributed minus embedded, same run, requests alternating; "
                  "± two standard errors)", "",
                  "| engine | streams | TTFA p50 (first clause) | TTFA p50 (done) | per chunk (mean gap, text at "
                  "once) | end after done p50 |",
                  "|---|---|---|---|---|---|"]
        for engine, levels in adds.items():
            for level, a in levels.items():
                clause = _pm(a["ttfa_clause_p50_ms"], a.get("ttfa_clause_noise_ms"))
                lines.append(f"| {engine} | {level} | {clause} | "
                             f"{_pm(a['ttfa_done_p50_ms'], a.get('ttfa_done_noise_ms'))} | "
                             f"{_pm(a['per_chunk_ms'], a.get('per_chunk_noise_ms'))} | "
                             f"{_n(a.get('end_after_done_p50_ms'), 1, ' ms')} |")
        lines.append("")
    clone_rows = [(engine, data["modes"]) for engine, data in results["engines"].items()]
    if clone_rows:
        modes = list(results["config"]["modes"])
        lines += ["**Clone** (`POST /clone`, a 5 s prompt; p50 / max)", "",
                  "| engine | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
        for engine, mdata in clone_rows:
            cells = []
            for m in modes:
                c = mdata.get(m, {}).get("clone_ms")
                cells.append(f"{_ms(c['p50'])} / {_ms(c['max'])} ms (n={c['n']})" if c else "-")
            lines.append(f"| {engine} | " + " | ".join(cells) + " |")
        lines.append("")
    enc = results.get("encoder_cost")
    if enc:
        lines += [f"**Encoder cost** (in-process, {enc['seconds']:g} s of 24 kHz mono in {enc['block_s']:g} s "
                  "blocks; ms of CPU per second of audio, and output bitrate)", "",
                  "| format | file mode | stream mode | kbit/s (file / stream) |", "|---|---|---|---|"]
        for fmt, modes_ in enc["formats"].items():
            f, s = modes_.get("file", {}), modes_.get("stream", {})
            lines.append(f"| {fmt} | {_n(f.get('ms_per_audio_s'), 2)} | {_n(s.get('ms_per_audio_s'), 2)} | "
                         f"{_n(f.get('kbit_per_s'), 0)} / {_n(s.get('kbit_per_s'), 0)} |")
        lines.append("")
    if results.get("targets"):
        lines += ["**Targets** (± : two standard errors of a difference; a gap to the goal smaller than that is "
                  "within the noise of the samples)", "", "| target | goal | measured | met |", "|---|---|---|---|"]
        for t in results["targets"]:
            met = "yes" if t["met"] else "no" if t["met"] is not None else "-"
            noise = t.get("noise")
            measured = _n(t["measured"], 1) + (f" ± {noise:.1f}" if noise is not None else "")
            goal_value = _goal_number(t["goal"])
            if noise is not None and goal_value is not None and abs(t["measured"] - goal_value) < noise:
                met += " (within noise)"
            note = f" ({t['note']})" if t.get("note") else ""
            lines.append(f"| {t['target']}{note} | {t['goal']} | {measured} | {met} |")
        lines.append("")
    return "\n".join(lines)


def _goal_number(goal: str) -> float | None:
    for word in goal.split():
        try:
            return float(word)
        except ValueError:
            continue
    return None


def plots(results: dict[str, Any], out_dir: Path, name: str) -> dict[str, Path]:
    """Latency and throughput vs concurrency; nothing (with a note) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("matplotlib is not installed (requirements-bench.txt): no plots")
        return {}
    engines = list(results["engines"])
    if not engines:
        return {}
    paths: dict[str, Path] = {}
    styles = {"embedded": "tab:blue", "distributed": "tab:orange"}

    def series(engine: str, mode: str, scenario: str, key: str, stat: str | None) -> tuple[list[int], list[float]]:
        xs, ys = [], []
        for level, cell in results["engines"][engine]["modes"][mode]["levels"].items():
            if scenario not in cell:
                continue
            value = cell[scenario][key]
            value = value.get(stat) if stat else value
            if value is not None:
                xs.append(int(level))
                ys.append(value)
        return xs, ys

    def axis(ax: Any, engine: str, title: str, ylabel: str, log: bool = True) -> None:
        ax.set_title(f"{engine}: {title}", fontsize=9)
        ax.set_xscale("log", base=2)
        levels = results["engines"][engine]["levels"]
        ax.set_xticks(levels)
        ax.set_xticklabels([str(x) for x in levels])
        if log:
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("concurrent streams", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        ax.tick_params(labelsize=7)

    panels = [("stream", "ttfa_clause_ms", "TTFA from first clause (ms)"),
              ("burst", "ttfa_done_ms", "TTFA from done (ms)"),
              ("stream", "gap_ms", "gap between chunks (ms)")]
    latency_engines = [e for e in engines if "stream" in results["engines"][e].get("scenarios", ["stream"])]
    fig, axes = plt.subplots(len(latency_engines), 4, figsize=(16, 3.6 * len(latency_engines)), squeeze=False)
    for row, engine in enumerate(latency_engines):
        for col, (scenario, key, title) in enumerate(panels):
            ax = axes[row][col]
            for mode in results["engines"][engine]["modes"]:
                for stat, dash in (("p50", "-"), ("p95", "--")):
                    xs, ys = series(engine, mode, scenario, key, stat)
                    ax.plot(xs, ys, dash, marker="o", ms=3, color=styles.get(mode), label=f"{mode} {stat}")
            axis(ax, engine, title, "ms")
            ax.legend(fontsize=7)
        ax = axes[row][3]
        for mode in results["engines"][engine]["modes"]:
            xs, ys = series(engine, mode, "burst", "rtf", "p50")
            ax.plot(xs, ys, "-", marker="o", ms=3, color=styles.get(mode), label=mode)
        axis(ax, engine, "RTF per stream, p50 (text at once)", "RTF")
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths["latency_plot"] = out_dir / f"{name}-latency.png"
    fig.savefig(paths["latency_plot"], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(len(engines), 3, figsize=(13, 3.6 * len(engines)), squeeze=False)
    for row, engine in enumerate(engines):
        data = results["engines"][engine]
        ax = axes[row][0]
        for mode in data["modes"]:
            xs, ys = series(engine, mode, "burst", "throughput_x_realtime", None)
            ax.plot(xs, ys, "-", marker="o", ms=3, color=styles.get(mode), label=f"{mode} (API)")
        base = data.get("in_process", {})
        if base:
            xs = [int(k) for k, v in base.items() if v.get("throughput_x_realtime")]
            ax.plot(xs, [base[str(x)]["throughput_x_realtime"] for x in xs], ":", marker="s", ms=3, color="black",
                    label="in-process")
        axis(ax, engine, "throughput (audio s per s)", "x real time")
        ax.legend(fontsize=7)
        ax = axes[row][1]
        for mode in data["modes"]:
            xs, ys = [], []
            for level, cell in data["modes"][mode]["levels"].items():
                cells = [cell[sc] for sc in ("stream", "burst") if sc in cell]
                total = sum(c["streams"] for c in cells)
                bad = sum(c["streams_with_underrun"] for c in cells)
                xs.append(int(level))
                ys.append(100 * bad / total if total else 0)
            ax.plot(xs, ys, "-", marker="o", ms=3, color=styles.get(mode), label=mode)
        axis(ax, engine, "streams with an underrun", "%", log=False)
        ax.set_ylim(-5, 105)
        ax.legend(fontsize=7)
        ax = axes[row][2]
        for mode in data["modes"]:
            xs, ys = series(engine, mode, "burst", "platform_cpu_ms_per_audio_s", None)
            ax.plot(xs, ys, "-", marker="o", ms=3, color=styles.get(mode), label=mode)
        axis(ax, engine, "server CPU per audio second", "ms", log=False)
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths["throughput_plot"] = out_dir / f"{name}-throughput.png"
    fig.savefig(paths["throughput_plot"], dpi=110)
    plt.close(fig)
    return paths


def main(argv: list[str] | None = None) -> None:
    """Render the table and plots again from a results JSON: python -m bench.report bench/results/bench.json"""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("results", type=Path)
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    print(markdown(results))
    for path in plots(results, args.results.parent, results["name"]).values():
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
