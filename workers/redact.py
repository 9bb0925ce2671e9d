"""arq entry point of the redact stage: `arq workers.redact.WorkerSettings`."""

from workers.stages import settings_class

WorkerSettings = settings_class("redact")
