"""Memory-soak hook (bench/memory_soak.py only; never on a real deployment's path).

bench/memory_soak.py puts this directory on PYTHONPATH of the server processes it starts
when it runs with ``--tracemalloc``. With TTS_SOAK_TRACE_DIR set, the process starts
tracemalloc at interpreter start-up and a daemon thread waits for request files
``<dir>/<pid>.<label>.request``: for each, it writes a snapshot to
``<dir>/<pid>.<label>.snapshot`` (then ``.done``), so the soak can diff the server's own
allocations between two points of the run without touching the server's code.
"""
from __future__ import annotations

import os

_DIR = os.environ.get("TTS_SOAK_TRACE_DIR")

if _DIR:
    import gc
    import threading
    import time
    import tracemalloc
    from pathlib import Path

    tracemalloc.start(int(os.environ.get("TTS_SOAK_TRACE_FRAMES", "12")))

    def _serve(directory: Path) -> None:
        pid = os.getpid()
        while True:
            for request in directory.glob(f"{pid}.*.request"):
                label = request.name[len(f"{pid}."):-len(".request")]
                gc.collect()
                tracemalloc.take_snapshot().dump(str(directory / f"{pid}.{label}.snapshot"))
                (directory / f"{pid}.{label}.done").write_text("ok")
                request.unlink()
            time.sleep(0.2)

    threading.Thread(target=_serve, args=(Path(_DIR),), name="soak-tracemalloc", daemon=True).start()
