"""The workdir: content-addressed Parquet stores, per-run records, status rows.

Layout (under the workdir)::

    actalign.duckdb                      views over everything below (queries/), for other DuckDB clients
    .actalign.lock                       held by the one command writing the workdir (storage.lock)
    store/frame_embeddings/<key>.parquet one video x model x sampling
    store/scripts/<key>.parquet          one class's script
    store/step_embeddings/<key>.parquet  one class's embedded steps and name
    runs/<run_id>/run.parquet            the run's configuration, state and stage keys
    runs/<run_id>/videos.parquet         the run's videos (candidates, labels)
    runs/<run_id>/scores/*.parquet       one file per scored shard
    runs/<run_id>/status/*.parquet       one file per stage and shard
    runs/<run_id>/report.md              the run's accuracy tables

Each folder read by a view also holds a zero-row ``.schema.parquet`` (``runs/.schema/``) so that
the views answer (with no rows) on a new workdir instead of failing.
"""
