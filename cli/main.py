"""actalign: classify videos into actions they were never trained on, by script alignment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError

from actalign.config import DEFAULT_SHARD_SIZE, DEFAULT_WORKDIR, RunConfig
from actalign.errors import InputError
from actalign.frames import DEFAULT_FPS
from actalign.llm import LLMSettings
from actalign.models import DEFAULT_MODEL, REGISTRY
from actalign.scorers import DEFAULT_SCORERS, SCORER_NAMES
from cli.display import console, print_error, print_result, print_untrained_banner
from cli.environment import prepare_prefect, quiet_libraries

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

MODEL_HELP = "Model: " + ", ".join(f"{name} ({spec.source})" for name, spec in REGISTRY.items()) + "; or any Hugging Face id or local folder."
WorkdirOption = Annotated[Path, typer.Option("--workdir", help="Folder holding stores, runs and actalign.duckdb.")]
ProviderOption = Annotated[str, typer.Option("--provider", help="Where scripts come from: file (steps in the classes file) or openai (an LLM writes the steps of classes that have none).")]
LLMModelOption = Annotated[str, typer.Option("--llm-model", help="LLM model, a dated snapshot (or an Azure deployment).")]
LLMBaseOption = Annotated[Optional[str], typer.Option("--llm-base-url", help="OpenAI-compatible endpoint, e.g. http://localhost:11434/v1 (Ollama); default: the OpenAI API. The key comes from OPENAI_API_KEY.")]
PromptOption = Annotated[str, typer.Option("--prompt", help="Prompt template: context-rich, short-fixed, or a path to a template .yaml.")]
TemperatureOption = Annotated[float, typer.Option("--temperature", help="LLM sampling temperature.")]
GranularityOption = Annotated[str, typer.Option("--granularity", help="question: one LLM request per video's candidate set (contrastive); class: one per class (best reuse).")]
LLM_DEFAULTS = LLMSettings()
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's task logs.")]


@app.command()
def run(
    videos: Annotated[Optional[Path], typer.Option("--videos", help="A folder of videos, or a CSV/JSONL/Parquet manifest; with --benchmark, the benchmark's local copy (default: the Hugging Face hub).")] = None,
    classes: Annotated[Optional[Path], typer.Option("--classes", help="YAML/JSON file of candidate classes with their ordered steps (with --benchmark: optional hand-written steps for some classes).")] = None,
    benchmark: Annotated[Optional[str], typer.Option("--benchmark", help="actionatlas: the ActionAtlas v1.0 questions (videos from YouTube, candidates, labels, text obfuscation).")] = None,
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
    provider: ProviderOption = "file",
    llm_model: LLMModelOption = LLM_DEFAULTS.model,
    llm_base_url: LLMBaseOption = None,
    prompt: PromptOption = LLM_DEFAULTS.prompt,
    temperature: TemperatureOption = LLM_DEFAULTS.temperature,
    granularity: GranularityOption = LLM_DEFAULTS.granularity,
    max_height: Annotated[int, typer.Option("--max-height", help="Download resolution cap in pixels.")] = 720,
    cookies: Annotated[Optional[Path], typer.Option("--cookies", help="cookies.txt for yt-dlp (never logged or stored).")] = None,
    proxy: Annotated[Optional[str], typer.Option("--proxy", help="Proxy URL for downloads (never logged or stored).")] = None,
    rate_limit: Annotated[Optional[int], typer.Option("--rate-limit", help="Download rate limit per video, bytes/s.")] = None,
    download_concurrency: Annotated[int, typer.Option("--download-concurrency", help="Downloads at once per shard.")] = 4,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Try again downloads that an earlier run found permanently unavailable.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Classify your videos: decode, embed, align every candidate's script, print predictions and accuracy."""
    settings = dict(
        videos=videos, classes=classes, benchmark=benchmark, model=model, workdir=workdir, fps=fps, smoothing=smoothing, device=device,
        batch_size=batch_size, bf16=bf16, shard_size=shard_size, workers=workers,
        step_template=step_template, name_template=name_template, provider=provider,
        llm=dict(model=llm_model, base_url=llm_base_url, prompt=prompt, temperature=temperature, granularity=granularity),
        download=dict(
            max_height=max_height, cookies=cookies, proxy=proxy, rate_limit=rate_limit,
            concurrency=download_concurrency, retry_failed=retry_failed,
        ),
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
def scripts(
    videos: Annotated[Optional[Path], typer.Option("--videos", help="A manifest or folder; with --benchmark, its local copy.")] = None,
    classes: Annotated[Optional[Path], typer.Option("--classes", help="Classes file (optional with --benchmark).")] = None,
    benchmark: Annotated[Optional[str], typer.Option("--benchmark", help="actionatlas: plan for the benchmark's questions.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count the LLM requests, tokens and cost a run would spend; send nothing.")] = False,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
    llm_model: LLMModelOption = LLM_DEFAULTS.model,
    llm_base_url: LLMBaseOption = None,
    prompt: PromptOption = LLM_DEFAULTS.prompt,
    temperature: TemperatureOption = LLM_DEFAULTS.temperature,
    granularity: GranularityOption = LLM_DEFAULTS.granularity,
) -> None:
    """Plan the LLM script requests of a run: how many, how many tokens, what they would cost (scripts already stored are free)."""
    from actalign.llm import plan_requests
    from storage.workdir import Workdir
    from tasks.plan import read_inputs
    from tasks.scripts import llm_groups, llm_settings

    if not dry_run:
        print_error("only --dry-run is available here; `actalign run --provider openai` generates the scripts it needs")
        raise typer.Exit(2)
    llm = dict(model=llm_model, base_url=llm_base_url, prompt=prompt, temperature=temperature, granularity=granularity)
    config = _config(dict(videos=videos, classes=classes, benchmark=benchmark, workdir=workdir, provider="openai", llm=llm))
    try:
        inputs = read_inputs(config)
        store = Workdir.open(config.workdir)
        for kind in config.text_kinds():
            groups = llm_groups(inputs.classes, inputs.videos, config, kind)
            plan = plan_requests(llm_settings(config, kind), groups, have_key=lambda key: store.script_path(key).exists())
            console.print(f"{kind}: {plan.describe()}", highlight=False)
    except InputError as exc:
        print_error(str(exc))
        raise typer.Exit(2) from exc


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


@app.command()
def report(
    run_id: Annotated[Optional[str], typer.Option("--run", help="Run id (default: the latest run).")] = None,
    compare: Annotated[Optional[list[str]], typer.Option("--compare", help="Another run for the comparison table; repeat for several.")] = None,
    baseline: Annotated[Optional[str], typer.Option("--baseline", help="Baseline of the comparison: SCORER (of --run) or RUN:SCORER. Default: the run's mean-pool, else its first scorer.")] = None,
    report_format: Annotated[Optional[list[str]], typer.Option("--format", help="md, html (one self-contained file) or json; repeat for several. Default: md.")] = None,
    video: Annotated[Optional[list[str]], typer.Option("--video", help="Draw this video's alignment heatmaps; repeat for several. Default: the worst errors by margin.")] = None,
    worst: Annotated[int, typer.Option("--worst", min=0, help="How many worst errors (by margin) get heatmaps when no --video is given.")] = 3,
    scorer: Annotated[Optional[str], typer.Option("--scorer", help="Alignment scorer for the heatmaps and worst errors (default: actalign).")] = None,
    resamples: Annotated[int, typer.Option("--resamples", min=1, help="Bootstrap resamples for the 95 % intervals.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed (the same seed gives the same intervals).")] = 0,
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder for report.<format> and figures/ (default: <workdir>/runs/<run>).")] = None,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
) -> None:
    """Write a run's report: accuracy with bootstrap intervals beside the random baseline, videos left out and why,
    per-domain accuracy, a comparison of runs, where scorers disagree, margins and alignment heatmaps."""
    from storage.workdir import Workdir
    from tasks.report import FORMATS, write_report

    formats = report_format or ["md"]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        print_error(f"unknown --format {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
        raise typer.Exit(2)
    if not workdir.exists():
        print_error(f"workdir {workdir} does not exist")
        raise typer.Exit(2)
    try:
        paths = write_report(
            Workdir.open(workdir), run_id, formats=formats, compare=compare or (), baseline=baseline, videos=video or (),
            worst=worst, heatmap_scorer=scorer, out_dir=out, resamples=resamples, seed=seed,
        )
    except InputError as exc:
        print_error(str(exc))
        raise typer.Exit(2) from exc
    for path in paths.values():
        console.print(str(path), highlight=False)


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
    console.print(
        f"run {summary.run_id}: {summary.state}.\n"
        f"  videos: {summary.downloaded_videos} downloaded; decoded {summary.decoded_frames} and encoded {summary.encoded_frames} frames; "
        f"{summary.reused_videos} videos reused from the store\n"
        f"  scripts: {summary.scripts_generated} written ({summary.llm_requests} LLM answers), {summary.scripts_reused} reused; "
        f"encoded {summary.encoded_texts} texts\n"
        f"  scores: {summary.scored_pairs} pairs computed, {summary.reused_pairs} reused from the score cache",
        highlight=False,
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
