"""arq entry point of the persist stage: `arq workers.persist.WorkerSettings`."""

from workers.stages import settings_class

WorkerSettings = settings_class("persist")
