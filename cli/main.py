"""actalign: classify videos into actions they were never trained on, by script alignment."""

from __future__ import annotations

import functools
import inspect
import shlex
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml

from actalign.calibration import CHOICES as CALIBRATIONS
from actalign.cli.display import console, print_error, print_failures, print_line, print_model_banner, print_result, working
from actalign.cli.environment import prepare_prefect, start_prefect
from actalign.cli.models import models as models_command
from actalign.cli.prompt import prompt_app
from actalign.cli.sql import sql as sql_command
from actalign.cli.sweep import sweep as sweep_command
from actalign.config import DEFAULT_WORKDIR, Prompts, RunConfig, make_config, relative_to_file, with_absolute_paths
from actalign.demo_data import DEMO_SETS
from actalign.errors import InputError
from actalign.frames import DEFAULT_FPS
from actalign.llm import LLMSettings
from actalign.registry import DEFAULT_MODEL, REGISTRY
from actalign.scorers import DEFAULT_SCORERS, SCORER_NAMES
from actalign.structured_files import read_structured_file

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.add_typer(prompt_app, name="prompt")


def _print_version(asked: bool) -> None:
    if asked:
        from actalign.versions import version_text

        console.print(version_text(), highlight=False)
        raise typer.Exit(0)


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the versions of actalign, torch, transformers and prefect, and exit.")] = False,
) -> None:
    """actalign: classify videos into actions they were never trained on, by script alignment."""

MODEL_HELP = "Model: " + ", ".join(f"{name} ({spec.source})" for name, spec in REGISTRY.items()) + "; or any Hugging Face id or local folder."
DemoSetName = Enum("DemoSetName", {name: name for name in DEMO_SETS}, type=str)
FigureFormat = Enum("FigureFormat", {name: name for name in ("png", "svg", "pdf")}, type=str)  # actalign.plots.FORMATS, kept import-light
WorkdirOption = Annotated[Path, typer.Option("--workdir", help="Folder holding stores, runs and actalign.duckdb.")]
ProviderOption = Annotated[str, typer.Option("--provider", help="Where scripts come from: file (steps in the classes file) or openai (an LLM writes the steps of classes that have none).")]
LLMModelOption = Annotated[str, typer.Option("--llm-model", help="LLM model, a dated snapshot (or an Azure deployment).")]
LLMBaseOption = Annotated[Optional[str], typer.Option("--llm-base-url", help="OpenAI-compatible endpoint, e.g. http://localhost:11434/v1 (Ollama); default: the OpenAI API. The key comes from OPENAI_API_KEY (or the *_API_KEY or *_TOKEN variable that ACTALIGN_LLM_API_KEY_ENV names), never from the URL.")]
PromptOption = Annotated[str, typer.Option("--prompt", help="Prompt template: context-rich, short-fixed, or a path to a template .yaml.")]
TemperatureOption = Annotated[float, typer.Option("--temperature", help="LLM sampling temperature.")]
GranularityOption = Annotated[str, typer.Option("--granularity", help="question: one LLM request per video's candidate set (contrastive); class: one per class (best reuse).")]
LLM_DEFAULTS = LLMSettings()
PROMPT_DEFAULTS = Prompts()
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's task logs.")]
NoWaitOption = Annotated[bool, typer.Option("--no-wait", help="When another command is writing the workdir, exit 2 naming it instead of waiting for it to finish.")]


@app.command()
def run(
    ctx: typer.Context,
    config_file: Annotated[Optional[Path], typer.Option("--config", help="A YAML/JSON configuration (as `actalign config` prints it, or a deployment's config parameter); options given beside it override its fields.")] = None,
    videos: Annotated[Optional[Path], typer.Option("--videos", help="A folder of videos, or a CSV/JSONL/Parquet manifest; with --benchmark, the benchmark's local copy (default: the Hugging Face hub).")] = None,
    classes: Annotated[Optional[Path], typer.Option("--classes", help="YAML/JSON file of candidate classes with their ordered steps (with --benchmark: optional hand-written steps for some classes).")] = None,
    benchmark: Annotated[Optional[str], typer.Option("--benchmark", help="actionatlas: the ActionAtlas v1.0 questions (videos from YouTube, candidates, labels, text obfuscation).")] = None,
    model: Annotated[str, typer.Option("--model", help=MODEL_HELP)] = DEFAULT_MODEL,
    revision: Annotated[Optional[str], typer.Option("--revision", help="Branch, tag or commit of a Hugging Face hub model (recorded; part of the model's key).")] = None,
    calibration: Annotated[Optional[str], typer.Option("--calibration", help=f"How cosines become the affinities the scorers align: {', '.join(CALIBRATIONS)} (default: the model family's; `actalign models` lists them).")] = None,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Only the first N videos of the manifest (after filtering): a smoke test. Recorded in the run's config.")] = None,
    scorer: Annotated[Optional[list[str]], typer.Option("--scorer", help=f"Scorer to run, one of {', '.join(SCORER_NAMES)}; repeat for several. Default: {' and '.join(DEFAULT_SCORERS)}.")] = None,
    fps: Annotated[float, typer.Option("--fps", help="Frames sampled per second of video.")] = DEFAULT_FPS,
    smoothing: Annotated[int, typer.Option("--smoothing", help="Moving-average width over frames for actalign (0 or 1: none).")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto (cuda when present), cpu or cuda.")] = "auto",
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Images or texts per forward pass (default: 32 on cpu, 128 on cuda).")] = None,
    bf16: Annotated[bool, typer.Option("--bf16", help="bfloat16 autocast in the towers (faster, slightly different numbers).")] = False,
    shard_size: Annotated[Optional[int], typer.Option("--shard-size", min=1, help="Videos per task (default: about 4 shards per worker, 16 to 64 videos each; 16 on a Dask cluster).")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Tasks running at once.")] = 2,
    dask_address: Annotated[Optional[str], typer.Option("--dask-address", help="Run the tasks on an existing Dask cluster, e.g. tcp://host:8786 (the workdir must be shared storage); default: --workers threads here.")] = None,
    step_template: Annotated[str, typer.Option("--step-template", help="Text encoded for each step.")] = "{step} in {domain}",
    name_template: Annotated[str, typer.Option("--name-template", help="Text encoded for a class name (mean-pool).")] = "{action}",
    provider: ProviderOption = "file",
    llm_model: LLMModelOption = LLM_DEFAULTS.model,
    llm_base_url: LLMBaseOption = None,
    prompt: PromptOption = PROMPT_DEFAULTS.steps,
    temperature: TemperatureOption = LLM_DEFAULTS.temperature,
    granularity: GranularityOption = LLM_DEFAULTS.granularity,
    max_height: Annotated[int, typer.Option("--max-height", help="Download resolution cap in pixels.")] = 720,
    cookies: Annotated[Optional[Path], typer.Option("--cookies", help="cookies.txt for yt-dlp (never logged or stored).")] = None,
    proxy: Annotated[Optional[str], typer.Option("--proxy", help="Proxy URL for downloads (never logged or stored).")] = None,
    rate_limit: Annotated[Optional[int], typer.Option("--rate-limit", help="Download rate limit per video, bytes/s.")] = None,
    download_concurrency: Annotated[int, typer.Option("--download-concurrency", help="Downloads at once per shard.")] = 4,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Try again downloads that an earlier run found permanently unavailable.")] = False,
    verbose: VerboseOption = False,
    no_wait: NoWaitOption = False,
) -> None:
    """Classify your videos: decode, embed, align every candidate's script, print predictions and accuracy."""
    raise typer.Exit(_run(_config(*_settings(locals())), verbose, wait=not no_wait))


OPTION_FIELDS = {  # run options that are nested RunConfig fields; every other option is the field of its name
    "llm_model": ("llm", "model"), "llm_base_url": ("llm", "base_url"), "prompt": ("prompts", "steps"),
    "temperature": ("llm", "temperature"), "granularity": ("llm", "granularity"),
    "max_height": ("download", "max_height"), "cookies": ("download", "cookies"), "proxy": ("download", "proxy"),
    "rate_limit": ("download", "rate_limit"), "download_concurrency": ("download", "concurrency"), "retry_failed": ("download", "retry_failed"),
    "scorer": ("scorers",),
}
NOT_FIELDS = {"ctx", "config_file", "verbose", "no_wait"}
# dotted RunConfig field -> the option that sets it, to name the option in a validation error
OPTION_OF_FIELD = {".".join(OPTION_FIELDS.get(name, (name,))): "--" + name.replace("_", "-") for name in inspect.signature(run).parameters if name not in NOT_FIELDS}


def _settings(options: dict) -> tuple[dict, dict]:
    """The options of `run` (and of `status` and `config`, which take the same) as RunConfig fields, and the
    option name of each field set on the command line (a field read from ``--config`` is named as a field).

    With ``--config FILE`` the file is the base and only the options given on the command line override it.
    """
    ctx: typer.Context = options["ctx"]
    from_file = options["config_file"] is not None
    settings: dict = _read_config_file(options["config_file"]) if from_file else {}
    labels: dict = {}
    for name, value in options.items():
        if name in NOT_FIELDS or (name == "scorer" and not value):
            continue
        if from_file and ctx.get_parameter_source(name).name in ("DEFAULT", "DEFAULT_MAP"):
            continue
        *parents, field = OPTION_FIELDS.get(name, (name,))
        target = settings
        for parent in parents:
            target = target.setdefault(parent, {})
        target[field] = tuple(value) if name == "scorer" else value
        dotted = ".".join((*parents, field))
        labels[dotted] = OPTION_OF_FIELD[dotted]
    return settings, labels


def _read_config_file(path: Path) -> dict:
    """The file's fields, its relative paths resolved against the file's folder (not the current one)."""
    try:
        data = read_structured_file(path, "configuration")
    except InputError as exc:
        print_error(str(exc))
        raise typer.Exit(2) from exc
    if not isinstance(data, dict):
        print_error(f"the configuration {path} must be a mapping of RunConfig fields (see `actalign config`)")
        raise typer.Exit(2)
    data = data.get("config", data) if set(data) == {"config"} else data  # a deployment's parameters block works too
    return relative_to_file(data, path.parent)


def _with_run_options(command: Callable[..., None]) -> Callable[..., None]:
    """``command`` taking exactly the options of `run`, so a status or a printed config is of the run you would start;
    it gets the config and whether to wait for the workdir's write lock (``--no-wait``)."""

    @functools.wraps(run)
    def with_options(**options: object) -> None:
        command(_config(*_settings(options)), not options["no_wait"])

    with_options.__doc__ = command.__doc__
    return with_options


@app.command("config")
@_with_run_options
def config_command(config: RunConfig, _wait: bool) -> None:
    """Print the full configuration of a run with these options (YAML): every field, defaults included.

    The same model is the `config` parameter of the Prefect deployments (prefect.yaml); secrets never appear.
    The paths are absolute, and relative paths in a file read with `--config` are relative to that file's folder."""
    console.print(yaml.safe_dump(with_absolute_paths(config).model_dump(mode="json"), sort_keys=False), highlight=False, end="", soft_wrap=True)


@app.command("status")
@_with_run_options
def status(config: RunConfig, wait: bool) -> None:
    """Without running: per stage, what is fresh in the store, what a run with these options would recompute, and why."""
    from actalign.cli.status import show_status

    raise typer.Exit(show_status(config, wait))


@app.command()
def gc(
    workdir: WorkdirOption = DEFAULT_WORKDIR,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be deleted.")] = False,
    no_wait: NoWaitOption = False,
) -> None:
    """Delete store entries no run references (outputs of settings no run uses), leftovers of killed writes,
    and quarantined corrupt files. Runs, downloaded media and the text cache are kept."""
    from actalign.cli.status import collect_garbage

    raise typer.Exit(collect_garbage(workdir, dry_run, wait=not no_wait))


@app.command()
def demo(
    workdir: WorkdirOption = Path("actalign-demo"),
    model: Annotated[str, typer.Option("--model", help=MODEL_HELP + " Falls back to toy-shapes when the hub is unreachable.")] = "siglip-base",
    videos_per_class: Annotated[int, typer.Option("--videos-per-class", min=1, help="Generated videos per class.")] = 2,
    demo_set: Annotated[DemoSetName, typer.Option("--set", help="; ".join(f"{name}: {spec.description}" for name, spec in DEMO_SETS.items()) + ".")] = DemoSetName("order"),
    prepare_only: Annotated[bool, typer.Option("--prepare-only", help="Only generate the demo's videos, manifest and classes, and print the command that runs them.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Generate a small labelled set of shape animations whose classes differ only in event order, and run the pipeline."""
    from actalign.cli.demo import loadable_model, prepare_demo_input

    manifest, classes_file = prepare_demo_input(workdir, videos_per_class, demo_set.value)
    scorers = list(DEMO_SETS[demo_set.value].scorers)
    if prepare_only:
        command = ["actalign", "run", "--videos", str(manifest), "--classes", str(classes_file), "--workdir", str(workdir), "--model", model]
        command += [part for name in scorers for part in ("--scorer", name)]
        console.print(shlex.join(command), highlight=False, soft_wrap=True)
        raise typer.Exit(0)
    config = _config(dict(videos=manifest, classes=classes_file, model=loadable_model(model), workdir=workdir, scorers=scorers))
    raise typer.Exit(_run(config, verbose))


@app.command()
def explain(
    video: Annotated[str, typer.Option("--video", help="The video_id to draw.")],
    run_id: Annotated[Optional[str], typer.Option("--run", help="Run id (default: the latest run that scored the video).")] = None,
    scorer: Annotated[str, typer.Option("--scorer", help="Alignment scorer whose paths to draw.")] = "actalign",
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder for the figures, one per candidate (default: <workdir>/runs/<run>/explain/<video>; file names: the id's letters, digits, '-' and '_', then a hash of the id).")] = None,
    figure_format: Annotated[FigureFormat, typer.Option("--format", help="File format of the figures: png, or svg / pdf for papers.")] = FigureFormat.png,
    dpi: Annotated[int, typer.Option("--dpi", min=50, max=1200, help="Resolution of PNG figures.")] = 150,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
) -> None:
    """Draw, per candidate, the step x frame affinities and the alignment path of one video (PNG, SVG or PDF)."""
    from actalign.queries.explain import explain_video
    from actalign.storage.workdir import Workdir

    try:
        paths = explain_video(Workdir.open(workdir), video, run_id, scorer, out, fmt=figure_format.value, dpi=dpi)
    except InputError as exc:
        print_error(str(exc))
        raise typer.Exit(2) from exc
    for path in paths:
        print_line(str(path))


@app.command()
def scripts(
    videos: Annotated[Optional[Path], typer.Option("--videos", help="A manifest or folder; with --benchmark, its local copy.")] = None,
    classes: Annotated[Optional[Path], typer.Option("--classes", help="Classes file (optional with --benchmark).")] = None,
    benchmark: Annotated[Optional[str], typer.Option("--benchmark", help="actionatlas: plan for the benchmark's questions.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count the LLM requests, tokens and cost a run would spend; send nothing.")] = False,
    workdir: WorkdirOption = DEFAULT_WORKDIR,
    llm_model: LLMModelOption = LLM_DEFAULTS.model,
    llm_base_url: LLMBaseOption = None,
    prompt: PromptOption = PROMPT_DEFAULTS.steps,
    temperature: TemperatureOption = LLM_DEFAULTS.temperature,
    granularity: GranularityOption = LLM_DEFAULTS.granularity,
) -> None:
    """Plan the LLM script requests of a run: how many, how many tokens, what they would cost (scripts already stored are free)."""
    from actalign.inputs import read_inputs
    from actalign.llm import plan_requests
    from actalign.script_assignment import llm_groups
    from actalign.scripts import llm_provider
    from actalign.storage.workdir import Workdir

    if not dry_run:
        print_error("only --dry-run is available here; `actalign run --provider openai` generates the scripts it needs")
        raise typer.Exit(2)
    llm = dict(model=llm_model, base_url=llm_base_url, temperature=temperature, granularity=granularity)
    config = _config(dict(videos=videos, classes=classes, benchmark=benchmark, workdir=workdir, provider="openai", llm=llm, prompts={"steps": prompt}))
    try:
        inputs = read_inputs(config)
        store = Workdir.open(config.workdir)
        for kind in config.text_kinds():
            groups = llm_groups(inputs.classes, inputs.videos, config, kind)
            plan = plan_requests(llm_provider(config, kind), groups, have_key=lambda key: store.script_path(key).exists())
            console.print(f"{kind}: {plan.describe()}", highlight=False)
    except InputError as exc:
        print_error(str(exc))
        raise typer.Exit(2) from exc


app.command("sql")(sql_command)
app.command("sweep")(sweep_command)
app.command("models")(models_command)


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
    from actalign.queries.report.write import FORMATS, write_report
    from actalign.storage.workdir import Workdir

    formats = report_format or ["md"]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        print_error(f"unknown --format {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
        raise typer.Exit(2)
    if not workdir.exists():
        print_error(f"workdir {workdir} does not exist")
        raise typer.Exit(2)
    try:
        with working(f"report of run {run_id or '(the latest)'}:") as step:
            paths = write_report(
                Workdir.open(workdir), run_id, formats=formats, compare=compare or (), baseline=baseline, videos=video or (),
                worst=worst, heatmap_scorer=scorer, out_dir=out, resamples=resamples, seed=seed, progress=step,
            )
    except InputError as exc:
        print_error(str(exc))
        raise typer.Exit(2) from exc
    for path in paths.values():
        print_line(str(path))


def _config(settings: dict, labels: dict = OPTION_OF_FIELD) -> RunConfig:
    try:
        return make_config(settings, labels)
    except ValueError as exc:
        print_error(str(exc))
        raise typer.Exit(2) from exc


def _run(config: RunConfig, verbose: bool, wait: bool = True) -> int:
    """Validate everything before Prefect starts, take the workdir's write lock, run the flow, print the results; the exit code."""
    from actalign.cli.preflight import preflight
    from actalign.storage.lock import WorkdirBusy, write_lock
    from actalign.storage.records import new_run_id

    if preflight(config) is None:
        return 2
    prepare_prefect(config.workdir, verbose)
    try:  # locked before Prefect starts: run_pipeline holds it again, and two runs never share a temporary server's database
        with write_lock(config.workdir, "run", new_run_id, wait=wait) as run_id:
            start_prefect(working)
            from actalign.flows.pipeline import run_pipeline

            try:
                summary = run_pipeline(config, run_id)
            except Exception as exc:  # a stage crashed beyond its retries: say where the partial run is
                print_error(f"the run crashed: {type(exc).__name__}: {exc}. It is recorded as 'failed' in the runs view of {config.workdir}.")
                return 1
    except WorkdirBusy as exc:
        print_error(str(exc))
        return 2
    from actalign.queries import tables
    from actalign.queries.runner import session, sql_command
    from actalign.storage.workdir import Workdir

    console.print(
        f"run {summary.run_id}: {summary.state}.\n"
        f"  videos: {summary.downloaded_videos} downloaded; decoded {summary.decoded_frames} and encoded {summary.encoded_frames} frames; "
        f"{summary.reused_videos} videos reused from the store\n"
        f"  scripts: {summary.scripts_generated} written ({summary.llm_requests} LLM answers), {summary.scripts_reused} reused; "
        f"encoded {summary.encoded_texts} texts\n"
        f"  scores: {summary.scored_pairs} pairs computed, {summary.reused_pairs} reused from the score cache",
        highlight=False,
    )
    with session(Workdir.open(summary.workdir)) as s:  # one set of views for the three tables
        labelled = tables.has_labels(s, summary.run_id)
        print_result(tables.predictions(s, summary.run_id), title=tables.PREDICTIONS_TITLE[labelled])
        if labelled:
            print_result(tables.accuracy(s, summary.run_id), title="Accuracy over labelled videos")
        else:
            console.print("no labels: accuracy not computed (a manifest with a label column measures it)", highlight=False)
        if summary.n_failed:
            print_failures(tables.failures(s, summary.run_id), title=f"{summary.n_failed} failed:")
    print_model_banner(summary.caveat)
    console.print("report:", highlight=False)
    print_line(f"  {summary.report}")
    console.print("query the results:", highlight=False)
    print_line("  " + sql_command(summary.workdir, "SELECT * FROM accuracy"))
    return 1 if summary.n_failed else 0


if __name__ == "__main__":
    app()
