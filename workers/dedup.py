"""arq entry point of the dedup stage: `arq workers.dedup.WorkerSettings`."""

from workers.stages import settings_class

WorkerSettings = settings_class("dedup")
