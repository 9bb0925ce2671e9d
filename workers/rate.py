"""arq entry point of the rate stage: `arq workers.rate.WorkerSettings`."""

from workers.stages import settings_class

WorkerSettings = settings_class("rate")
