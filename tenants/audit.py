"""The audit log: who did what to which voice, and when."""
from __future__ import annotations

from tenants.models import AuditEvent


def record(tenant_id: int, actor: str, action: str, prompt_id: str = "", detail: str = "") -> None:
    """Blocking (database)."""
    AuditEvent.objects.create(tenant_id=tenant_id, actor=actor[:200], action=action, prompt_id=prompt_id[:128],
                              detail=detail)
