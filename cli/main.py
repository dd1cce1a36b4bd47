"""actalign: classify videos into actions they were never trained on, by script alignment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError

from actalign.config import DEFAULT_SHARD_SIZE, DEFAULT_WORKDIR, RunConfig
from actalign.errors import InputError
from actalign.frames import DEFAULT_FPS
from actalign.models import DEFAULT_MODEL, REGISTRY
from actalign.scorers import DEFAULT_SCORERS, SCORER_NAMES
from cli.display import console, print_error, print_result, print_untrained_banner
from cli.environment import prepare_prefect, quiet_libraries

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

MODEL_HELP = "Model: " + ", ".join(f"{name} ({spec.source})" for name, spec in REGISTRY.items()) + "; or any Hugging Face id or local folder."
WorkdirOption = Annotated[Path, typer.Option("--workdir", help="Folder holding stores, runs and actalign.duckdb.")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's task logs.")]


@app.command()
def run(
    videos: Annotated[Path, typer.Option("--videos", help="A folder of videos, or a CSV/JSONL/Parquet manifest.")],
    classes: Annotated[Path, typer.Option("--classes", help="YAML/JSON file of candidate classes with their ordered steps.")],
    model: Annotated[str, typer.Option("--model", help=MODEL_HELP)] = DEFAULT_MODEL,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
    scorer: Annotated[Optional[list[str]], typer.Option("--scorer", help=f"Scorer to run, one of {', '.join(SCORER_NAMES)}; repeat for several. Default: {' and '.join(DEFAULT_SCORERS)}.")] = None,
    fps: Annotated[float, typer.Option("--fps", help="Frames sampled per second of video.")] = DEFAULT_FPS,
    smoothing: Annotated[int, typer.Option("--smoothing", help="Moving-average width over frames for actalign (0 or 1: none).")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto (cuda when present), cpu or cuda.")] = "auto",
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Images or texts per forward pass (default: 32 on cpu, 128 on cuda).")] = None,
    bf16: Annotated[bool, typer.Option("--bf16", help="bfloat16 autocast in the towers (faster, slightly different numbers).")] = False,
    shard_size: Annotated[int, typer.Option("--shard-size", help="Videos per task.")] = DEFAULT_SHARD_SIZE,
    workers: Annotated[int, typer.Option("--workers", help="Tasks running at once.")] = 2,
    step_template: Annotated[str, typer.Option("--step-template", help="Text encoded for each step.")] = "{step} in {domain}",
    name_template: Annotated[str, typer.Option("--name-template", help="Text encoded for a class name (mean-pool).")] = "{action}",
    verbose: VerboseOption = False,
) -> None:
    """Classify your videos: decode, embed, align every candidate's script, print predictions and accuracy."""
    settings = dict(
        videos=videos, classes=classes, model=model, workdir=workdir, fps=fps, smoothing=smoothing, device=device,
        batch_size=batch_size, bf16=bf16, shard_size=shard_size, workers=workers,
        step_template=step_template, name_template=name_template,
    )
    if scorer:
        settings["scorers"] = tuple(scorer)
    raise typer.Exit(_run(_config(settings), verbose))


@app.command()
def demo(
    workdir: WorkdirOption = Path("actalign-demo"),
    model: Annotated[str, typer.Option("--model", help=MODEL_HELP + " Falls back to tiny-random when the hub is unreachable.")] = "siglip-base",
    videos_per_class: Annotated[int, typer.Option("--videos-per-class", min=1, help="Generated videos per class.")] = 2,
    verbose: VerboseOption = False,
) -> None:
    """Generate a small labelled set of shape animations whose classes differ only in event order, and run the pipeline."""
    from cli.demo import prepare_demo

    quiet_libraries()
    manifest, classes_file, chosen = prepare_demo(workdir, model, videos_per_class)
    config = _config(dict(videos=manifest, classes=classes_file, model=chosen, workdir=workdir))
    raise typer.Exit(_run(config, verbose))


@app.command()
def explain(
    video: Annotated[str, typer.Option("--video", help="The video_id to draw.")],
    run_id: Annotated[Optional[str], typer.Option("--run", help="Run id (default: the latest run that scored the video).")] = None,
    scorer: Annotated[str, typer.Option("--scorer", help="Alignment scorer whose paths to draw.")] = "actalign",
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder for the PNGs (default: <workdir>/runs/<run>/explain/<video>).")] = None,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
) -> None:
    """Draw, per candidate, the step x frame affinities and the alignment path of one video (PNG)."""
    from storage.workdir import Workdir
    from tasks.explain import explain_video

    try:
        paths = explain_video(Workdir.open(workdir), video, run_id, scorer, out)
    except InputError as exc:
        print_error(str(exc))
        raise typer.Exit(2) from exc
    for path in paths:
        console.print(str(path), highlight=False)


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="SQL over the views: videos, frame_embeddings, scripts, step_embeddings, scores, predictions, accuracy, accuracy_by_domain, status, runs.")],
    workdir: WorkdirOption = DEFAULT_WORKDIR,
) -> None:
    """Run SQL against the workdir's DuckDB views (the same views any DuckDB client sees in actalign.duckdb)."""
    import duckdb

    from queries.runner import run_sql
    from storage.workdir import Workdir

    try:
        print_result(run_sql(Workdir.open(workdir), query))
    except duckdb.Error as exc:
        print_error(f"query failed: {exc}")
        raise typer.Exit(2) from exc


def _config(settings: dict) -> RunConfig:
    try:
        return RunConfig(**settings)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print_error(f"invalid options: {problems}")
        raise typer.Exit(2) from exc


def _run(config: RunConfig, verbose: bool) -> int:
    """Validate everything before Prefect starts, run the flow, print the results; the exit code."""
    from tasks.plan import encoder_for, load_inputs

    quiet_libraries()
    try:
        inputs = load_inputs(config)
        console.print(f"{len(inputs.videos)} videos, {len(inputs.classes)} classes; loading model {config.model} ...")
        encoder = encoder_for(config)
    except InputError as exc:
        print_error(str(exc))
        return 2
    if not encoder.trained:
        print_untrained_banner()
    prepare_prefect(config.workdir, verbose)
    from flows.pipeline import run_pipeline
    from queries import tables
    from storage.workdir import Workdir

    try:
        summary = run_pipeline(config)
    except Exception as exc:  # a stage crashed beyond its retries: say where the partial run is
        print_error(f"the run crashed: {type(exc).__name__}: {exc}. It is recorded as 'failed' in the runs view of {config.workdir}.")
        return 1
    workdir = Workdir.open(summary.workdir)
    reused = f"; {summary.reused_videos} reused from the store (no decoding)" if summary.reused_videos else ""
    console.print(
        f"run {summary.run_id}: {summary.state}. Decoded {summary.decoded_frames} and encoded {summary.encoded_frames} frames{reused}."
    )
    print_result(tables.predictions(workdir, summary.run_id), title="Predictions (* = correct)")
    print_result(tables.accuracy(workdir, summary.run_id), title="Accuracy over labelled videos")
    if summary.n_failed:
        print_result(tables.failures(workdir, summary.run_id), title=f"{summary.n_failed} failed")
    if not summary.trained:
        print_untrained_banner()
    console.print(f"report: {summary.report}\nquery: actalign sql --workdir {summary.workdir} \"SELECT * FROM accuracy\"")
    return 1 if summary.n_failed else 0


if __name__ == "__main__":
    app()
