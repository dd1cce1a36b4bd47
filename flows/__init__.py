"""Prefect flows: they read the configuration, fan out tasks and wire stages; no stage logic here."""
