"""Who runs an operator command, and the audit record of what they did."""

from __future__ import annotations

import getpass
import os
import socket
import uuid
from typing import Any


def operator_actor() -> tuple[str, dict[str, str]]:
    """``operator:user@host`` and where from (host, pid, SSH client), for audit records."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "unknown"
    host = socket.gethostname()
    detail = {"host": host, "pid": str(os.getpid())}
    ssh = os.environ.get("SSH_CLIENT") or os.environ.get("SSH_CONNECTION")
    if ssh:
        detail["remote"] = ssh.split()[0]
    return f"operator:{user}@{host}", detail


async def audit_operator(redis: Any, settings: Any, action: str, extra: dict[str, str],
                         tenant: str | None = None, contact: str | None = None,
                         counts: dict[str, int] | None = None) -> int:
    """Append an operator action to the audit trail (system chain unless ``tenant``); no secret values."""
    from pipeline.audit import SYSTEM_TENANT
    from store.audit import AuditStore, load_signing_key

    actor, detail = operator_actor()
    store = AuditStore(redis, prefix=settings.key_prefix, signing_key=load_signing_key(settings))
    return await store.append(tenant or SYSTEM_TENANT, event_id=str(uuid.uuid4()), stage="operator",
                              outcome=action, actor=actor, contact=contact, counts=counts, detail={**detail, **extra})
