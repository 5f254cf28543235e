"""What machine a benchmark ran on, and whether something else was using it."""
from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any


def describe() -> dict[str, Any]:
    cpu = ""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not cpu:
                cpu = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "avx2": "avx2" in flags,
        "avx512": any(f.startswith("avx512") for f in flags),
        "memory_gb": mem_gb,
        "gpu": None,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def summary_line(machine: dict[str, Any]) -> str:
    simd = "AVX-512" if machine.get("avx512") else "AVX2" if machine.get("avx2") else "no AVX2"
    return (f"{machine['cpu']}, {machine['cores']} cores ({simd}), {machine['memory_gb']} GB RAM, no GPU, "
            f"Python {machine['python']}")


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def other_pytest_processes() -> list[str]:
    """Command lines of pytest processes that are not this one (another test run sharing the machine)."""
    try:
        out = subprocess.run(["pgrep", "-af", "pytest"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    mine = {os.getpid(), os.getppid()}
    runner = re.compile(r"(^|[\s/])(py\.test|pytest)(\s|$)|-m pytest")
    return [line for line in out.splitlines()
            if line and int(line.split()[0]) not in mine and runner.search(line.split(None, 1)[-1])]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
