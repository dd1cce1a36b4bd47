"""A run's report: its results people can trust and read, as Markdown, one self-contained HTML file, or JSON.

One report, three renderings of it (``build.build_report``, then ``markdown.render_markdown`` /
``html_page.render_html`` / ``json_doc.render_json``; ``write.write_report`` does both):

- the run's configuration (model, scorers, fps, smoothing, where the scripts
  came from: the LLM, prompt template and its hash), and the model's banner
  when it is untrained or a toy (``actalign.caveats``); never a secret (``redact``);
- accuracy top-1/2/3 per scorer with 95 % percentile-bootstrap intervals
  (``queries.stats``), each beside the random baseline of the run's exact mix
  of candidate counts, and how many labelled videos were left out and why;
- a comparison of (run, scorer) rows against a baseline, with paired
  bootstrap intervals of the differences (``--compare``, ``--baseline``);
- accuracy per domain (table and bars), the score-margin histogram (margin =
  the true label's score minus the best other candidate's) (``figures``);
- where two scorers disagree, the worst errors by margin and their alignment
  heatmaps (``queries.explain.explain_video``).

The flow writes ``runs/<run>/report.md`` with this code (without heatmaps, to
keep runs fast) and publishes the accuracy table and the Markdown as Prefect
artifacts (``tasks.artifacts``); ``actalign report`` writes any format, with heatmaps, for any run.
"""
