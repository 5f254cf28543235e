"""Targets, the markdown table and the chart of a quality-benchmark result (bench/quality.py).

    .venv/bin/python -m bench.quality_report bench/results/quality.json   # table (and chart) again
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

#: (name, goal as written, key in the measured dict, comparison, threshold)
TARGETS = (
    ("mean SIM", ">= 0.75", "mean_sim", ">=", 0.75),
    ("discrimination", "all voices pass", "discrimination", "==", True),
    ("CER zh", "<= 0.08", "cer_zh", "<=", 0.08),
    ("WER en", "<= 0.12", "wer_en", "<=", 0.12),
    ("RTF, 1 stream", "<= 0.35", "rtf_mean", "<=", 0.35),
    ("clone time", "<= 15 s for a 10 s prompt", "clone_s_max", "<=", 15.0),
)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with what was measured and PASS / MISS (or n/a when it was not measured)."""
    sim, asr, speed = results.get("similarity", {}), results.get("asr") or {}, results.get("speed", {})
    measured = {"mean_sim": sim.get("mean_sim"), "discrimination": sim.get("discrimination_pass"),
                "cer_zh": asr.get("cer_zh"), "wer_en": asr.get("wer_en"), "rtf_mean": speed.get("rtf_mean"),
                "clone_s_max": speed.get("clone_s_max")}
    out = []
    for name, goal, key, op, threshold in TARGETS:
        value = measured[key]
        if value is None:
            status = "n/a"
        elif op == ">=":
            status = "PASS" if value >= threshold else "MISS"
        elif op == "<=":
            status = "PASS" if value <= threshold else "MISS"
        else:
            status = "PASS" if value == threshold else "MISS"
        out.append({"target": name, "goal": goal, "measured": value, "status": status})
    return out


def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    sim = results["similarity"]
    asr = results.get("asr") or {}
    keys = sim["voices"]
    voices = results["voices"]
    lines = [(f"Cloning quality ({results['name']}, {results['created'][:10]}): Kokoro, embedded mode, "
             f"{len(keys)} prompt voices (espeak-ng, piper), {sum(len(v) for v in results['config']['sentences'].values())} "
             f"held-out sentences each ({', '.join(results['config']['sentences'])}); "
             f"{results['machine'].get('cpu', '?')}, {results['machine'].get('cores', '?')} cores."), "",
             ("| voice | made by | prompt s | clone s | refine s | SIM | SIM en / zh | nearest prompt | margin "
             "| WER en | CER zh | RTF | TTFA ms |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in keys:
        v, s = voices[key], sim["per_voice"][key]
        utt = v["utterances"]
        err = asr.get("per_voice", {}).get(key, {})
        by_lang = s["sim_by_language"]
        ttfa = sorted(u["ttfa_s"] for u in utt)[len(utt) // 2] * 1000
        lines.append(
            f"| {key} | {v.get('source') or v.get('espeak_voice')} | {v['prompt_s']:.1f} | {v['clone_s']:.1f} | {_f(v['refine_s'], 1)} "
            f"| {s['sim']:.3f} | {_f(by_lang.get('en'), 3)} / {_f(by_lang.get('zh'), 3)} "
            f"| {s['nearest_prompt']}{'' if s['discriminated'] else ' ✗'} | {_f(s['margin'], 3)} "
            f"| {_f(err.get('en'), 3)} | {_f(err.get('zh'), 3)} "
            f"| {sum(u['rtf'] for u in utt) / len(utt):.3f} | {ttfa:.0f} |")
    speed = results["speed"]
    lines.append(f"| **all** | | | {speed['clone_s_mean']:.1f} (max {speed['clone_s_max']:.1f}) | "
                 f"| **{sim['mean_sim']:.3f}** | | {'all pass' if sim['discrimination_pass'] else 'FAIL'} | "
                 f"| **{_f(asr.get('wer_en'), 3)}** | **{_f(asr.get('cer_zh'), 3)}** | **{speed['rtf_mean']:.3f}** "
                 f"| {speed['ttfa_ms_median']:.0f} |")
    lines += ["", ("SIM matrix: rows = a voice's synthesized speech, columns = prompts (mean cosine of "
              "Resemblyzer embeddings); the diagonal should be each row's maximum."), "",
              "| output \\ prompt | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for a, row in zip(keys, sim["matrix"], strict=True):
        best = max(row)
        cells = [f"**{x:.3f}**" if x == best else f"{x:.3f}" for x in row]
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    off = [x for i, row in enumerate(sim["prompt_matrix"]) for j, x in enumerate(row) if i != j]
    lines += ["", f"For scale: prompt vs. prompt SIM is {min(off):.3f}-{max(off):.3f} (mean "
              f"{sum(off) / len(off):.3f}); the engine's own similarity (prompt vs. its nearest stock voice) is "
              + ", ".join(f"{k} {_f(voices[k].get('engine_similarity'), 3)}" for k in keys) + "."]
    if asr.get("prompts"):
        lines.append("Whisper base on the prompts themselves (their intelligibility, for scale): "
                     + ", ".join(f"{k} {'CER' if p['language'] == 'zh' else 'WER'} {p['error_rate']:.2f}"
                                 for k, p in asr["prompts"].items()) + ".")
    base = asr.get("stock_baseline") or {}
    if base:
        lines.append(f"Whisper base on the same sentences by the stock voice {base['voice']} without cloning "
                     f"(the floor of engine + recogniser): WER en {_f(base.get('en'), 3)}, "
                     f"CER zh {_f(base.get('zh'), 3)}.")
    speed = results.get("speed") or {}
    if speed.get("stock_rtf_in_process"):
        lines.append(f"Speed baseline, same run: the stock voice {(asr.get('stock_baseline') or {}).get('voice', 'a stock voice')} speaking the same sentences in-process "
                     f"(no platform, no cloning) ran at RTF {_f(speed['stock_rtf_in_process'], 3)}; the clones through "
                     f"the API at {_f(speed.get('rtf_vs_stock'), 2)}x that.")
    shared = results.get("shared", {})
    loads = [shared.get(k) for k in ("load_average_at_start", "load_average_after_synthesis") if shared.get(k)]
    if loads:
        busy = max(x[0] for x in loads) > (results["machine"].get("cores") or 1)
        lines.append(f"Load average (1 min) at start / after synthesis: {' / '.join(f'{x[0]:.1f}' for x in loads)}"
                     + (" — the machine was shared with other work while this ran: RTF, TTFA and clone times "
                        "are slower than on an idle machine." if busy else "."))
    if asr and not asr.get("simplified_conversion"):
        lines.append("Note: zhconv is not installed, so traditional characters in Whisper's output count as errors.")
    lines += ["", "| target | goal | measured | |", "|---|---|---|---|"]
    for t in results["targets"]:
        m = t["measured"]
        shown = _f(m, 3) if isinstance(m, float) else ("all pass" if m is True else "fail" if m is False else _f(m))
        lines.append(f"| {t['target']} | {t['goal']} | {shown} | {t['status']} |")
    lines.append("")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> dict[str, Path]:
    """SIM per voice, the SIM matrix and WER/CER per voice in one PNG; nothing without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart", flush=True)
        return {}
    sim = results["similarity"]
    keys = sim["voices"]
    asr = results.get("asr") or {}
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    ax = axes[0]
    ax.bar(keys, [sim["per_voice"][k]["sim"] for k in keys], color="tab:blue")
    ax.axhline(0.75, color="tab:red", linestyle="--", label="target 0.75")
    ax.set_ylim(0, 1)
    ax.set_ylabel("SIM (cosine, prompt vs. output)")
    ax.set_title(f"Speaker similarity, mean {sim['mean_sim']:.3f}")
    ax.legend(loc="lower right")
    ax.tick_params(axis="x", rotation=30)
    ax = axes[1]
    image = ax.imshow(sim["matrix"], cmap="viridis", vmin=min(min(r) for r in sim["matrix"]), vmax=1.0)
    ax.set_xticks(range(len(keys)), keys, rotation=30, ha="right")
    ax.set_yticks(range(len(keys)), keys)
    ax.set_xlabel("prompt")
    ax.set_ylabel("synthesized speech of")
    for i, row in enumerate(sim["matrix"]):
        for j, x in enumerate(row):
            ax.text(j, i, f"{x:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if x < (min(row) + max(row)) / 2 else "black",
                    fontweight="bold" if x == max(row) else "normal")
    ax.set_title("SIM matrix: " + ("all discriminated" if sim["discrimination_pass"] else "discrimination FAILS"))
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax = axes[2]
    per = asr.get("per_voice", {})
    width = 0.4
    xs = range(len(keys))
    ax.bar([x - width / 2 for x in xs], [per.get(k, {}).get("en") or 0 for k in keys], width, label="WER en")
    ax.bar([x + width / 2 for x in xs], [per.get(k, {}).get("zh") or 0 for k in keys], width, label="CER zh")
    ax.axhline(0.12, color="tab:blue", linestyle="--", linewidth=1)
    ax.axhline(0.08, color="tab:orange", linestyle="--", linewidth=1)
    ax.set_xticks(list(xs), keys, rotation=30, ha="right")
    ax.set_title(f"Intelligibility (Whisper base): WER {_f(asr.get('wer_en'), 3)}, CER {_f(asr.get('cer_zh'), 3)}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return {"chart": path}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0] if args else "bench/results/quality.json")
    results = json.loads(path.read_text())
    print(markdown(results))
    print(plot(results, path.with_suffix(".png")))


if __name__ == "__main__":
    main()
