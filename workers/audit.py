"""arq entry point of the audit stage: `arq workers.audit.WorkerSettings`."""

from workers.stages import settings_class

WorkerSettings = settings_class("audit")
