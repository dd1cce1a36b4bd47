"""Prefect tasks: each stage's logic as a plain function (testable without Prefect) and a
thin ``@task`` wrapper that adds retries and timeouts. Tasks exchange paths and keys only."""
