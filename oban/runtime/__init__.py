"""The anyio runtime: producers, executor, stager, notifier, all in one task group."""
