"""What voices asks of distributed mode's workers, which sit in the layer above.

voices cannot import workers (workers import voices to run clones and refinements), so
the worker layer hands its functions over when Django starts (``workers/apps.py``) and
the clone and refinement code call them here. Embedded mode never calls them.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:  # the workers app imports this module before models exist
    from voices.services import StoredBlob


class CloneOnWorker(Protocol):
    def __call__(self, tenant_id: int, prompt_id: str, prompt_text: str, audio_blob: StoredBlob,
                 sample_rate: int, note: str = "") -> bool: ...


F = TypeVar("F")

_clone_on_worker: CloneOnWorker | None = None
_send_refine: Callable[[int, str, str], None] | None = None
_worker_draining: Callable[[], bool] | None = None


def install(*, clone_on_worker: CloneOnWorker, send_refine: Callable[[int, str, str], None],
            worker_draining: Callable[[], bool]) -> None:
    """Register the worker layer's functions (once, at start)."""
    global _clone_on_worker, _send_refine, _worker_draining
    _clone_on_worker, _send_refine, _worker_draining = clone_on_worker, send_refine, worker_draining


def clone_on_worker(tenant_id: int, prompt_id: str, prompt_text: str, audio_blob: StoredBlob, sample_rate: int,
                    note: str = "") -> bool:
    """Run a clone's engine half on a clone worker and wait for its answer (blocking). Returns ``existed``."""
    return _installed(_clone_on_worker)(tenant_id, prompt_id, prompt_text, audio_blob, sample_rate, note)


def send_refine(voice_id: int, features_key: str, features_sha256: str) -> None:
    """Queue a refinement task for a clone worker."""
    _installed(_send_refine)(voice_id, features_key, features_sha256)


def worker_draining() -> bool:
    """True in a worker process that got SIGTERM and is finishing its work."""
    return _installed(_worker_draining)()


def _installed(hook: F | None) -> F:
    if hook is None:
        raise RuntimeError("distributed mode needs the 'workers' app in INSTALLED_APPS (it installs voices.remote)")
    return hook
