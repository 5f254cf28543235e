"""What voices asks of the layer that runs jobs (workers, which sits above it and chooses
the mode): where a clone's engine half runs, where a refinement is queued.

``workers/apps.py`` installs ``workers.backend.current`` here when Django starts.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from core.hooks import Hook

if TYPE_CHECKING:  # the workers app imports this module before models exist
    from voices.models import Tenant
    from voices.prompt_audio import PromptAudio
    from voices.services import StoredBlob


class JobBackend(Protocol):
    def check_can_clone(self) -> None:
        """Raise NotReady when a clone cannot run now (the engine still loading)."""

    def clone(self, tenant: Tenant, prompt_id: str, prompt_text: str, audio: PromptAudio, audio_blob: StoredBlob,
              note: str) -> bool:
        """Run a clone's engine half on its stored prompt (blocking). Returns ``existed``."""

    def queue_refine(self, voice_id: int, features_key: str, features_sha256: str) -> bool:
        """Queue a refinement; False when there is no room for it (never blocks)."""

    def draining(self) -> bool:
        """True in a worker process that got SIGTERM and is finishing its work."""


job_backend: Hook[JobBackend] = Hook("voices.job_backend")
