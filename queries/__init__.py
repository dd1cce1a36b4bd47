"""The public SQL surface and its Python side.

- ``NN_<view>.sql``: one view per file (see each file's header), loaded in name order by ``runner``;
- ``named/<query>.sql``: named queries with parameters (not views), run by ``runner.named_query``;
- ``stats``: percentile bootstrap intervals (NumPy) over outcome counts the SQL computes;
- ``tables``: the tables the CLI, the run report and the Prefect artifacts show;
- ``report/``: the run report built from these views, rendered as Markdown, HTML or JSON;
- ``explain``: one video's alignment heatmaps, read back from what its run scored.
"""
