"""Acquire-stage throughput and memory: does the stage run at the speed of the model, in bounded memory?

    python -m benchmarks.bench_encode                 # base-random (fp32 and bf16) + memory cases, a few minutes on a CPU
    python -m benchmarks.bench_encode --quick         # tiny-random + memory cases, ~1 min
    python -m benchmarks.bench_encode --device cuda   # the same on a GPU (prints the device it ran on)

Throughput: the whole acquire stage (``actalign.tasks.acquire.acquire_videos``: file
keys, decode workers, batching across videos, the model, Parquet writes,
status rows) on real clips (``../shared/clips``, cycled; else generated
640x360 videos) sampled at 4 fps, versus a bare forward of the image tower on
pre-made pixel tensors of the same batch size, same precision, in the same
run (half of the bare passes before the stage, half after, to even out drift
from other load on the machine). Goal: ratio >= 0.85.

Shards: the same stage with 4 shards in flight at once (threads, as the flow's thread runner runs them)
versus one shard holding every video, alternated in the same run. Goal: frames/s ratio >= 0.95.

Memory: peak RSS (VmHWM of a fresh subprocess per case: it counts torch's
and numpy's C allocations, which tracemalloc does not; ``getrusage``'s max RSS
would carry the parent's peak over fork + exec on Linux) of the
acquire stage on 50 and on 500 short generated videos and on one 10-minute
video, with an untrained tiny SigLIP built at 224 px input (frames are as large
as in production; the model is small, so frame buffers would dominate if they
grew). Goal: flat within 10 %. For contrast, the pre-streaming way (sample the
whole video, then embed) on the 10-minute video.

Untrained weights everywhere: speeds and memory are real, embeddings are meaningless.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from actalign import video_files

CLIPS = Path(__file__).resolve().parents[1].parent / "shared" / "clips"
SAMPLE_FPS = 4.0
TINY224_FOLDER = "tiny224-random-v1"


# --- videos -----------------------------------------------------------------------------


def write_video(path: Path, seconds: float, fps: int = 10, size: tuple[int, int] = (120, 160), seed: int = 0) -> Path:
    """A moving gradient with a coloured square: every frame differs, files stay small."""
    height, width = size
    rng = np.random.default_rng(seed)
    colour = rng.integers(0, 256, 3, dtype=np.uint8)
    base = np.broadcast_to(np.linspace(0, 255, width, dtype=np.uint8)[None, :, None], (height, width, 3))

    def frames() -> Iterator[np.ndarray]:
        for index in range(int(round(seconds * fps))):
            image = np.roll(base, index * 3, axis=1).copy()
            y, x = (index * 2) % (height - 16), (index * 5) % (width - 16)
            image[y : y + 16, x : x + 16] = colour
            yield image

    return video_files.write_video(path, frames(), fps, options={"preset": "ultrafast", "g": str(2 * fps), "bf": "0"})


def throughput_videos(folder: Path, frames_wanted: int) -> list[Path]:
    """Real clips (cycled) when present, else generated 640x360 30 fps clips, until ``frames_wanted`` samples."""
    from actalign.frames import video_duration

    if CLIPS.is_dir():
        pool = sorted(p for p in CLIPS.iterdir() if p.suffix.lower() in {".mp4", ".avi", ".mkv", ".gif", ".webm"})
    else:
        pool = [write_video(folder / f"gen{i}.mp4", 3.0, fps=30, size=(360, 640), seed=i) for i in range(8)]
    chosen, total = [], 0
    while total < frames_wanted:
        path = pool[len(chosen) % len(pool)]
        chosen.append(path)
        total += math.ceil(video_duration(path) * SAMPLE_FPS)
    return chosen


# --- one stage run ----------------------------------------------------------------------


def run_stage(model: str, device: str, precision: str, batch_size: int | None, paths: list[Path], workdir: Path, shards: int = 1) -> dict:
    """acquire_videos on ``paths`` (distinct video ids, so repeated clips are separate videos), cut into
    ``shards`` shards run at once in threads, as the flow's thread runner runs them with as many workers."""
    from concurrent.futures import ThreadPoolExecutor

    from actalign.config import RunConfig
    from actalign.manifest import VideoSpec
    from actalign.registry import fetch_identity
    from actalign.storage.workdir import Workdir
    from actalign.tasks.acquire import acquire_videos

    specs = [
        VideoSpec(video_id=f"{i:05d}-{p.stem}", source=str(p), start_s=None, end_s=None, domain=None, candidates=("x",), label=None)
        for i, p in enumerate(paths)
    ]
    config = RunConfig(
        videos=workdir, classes=workdir / "classes.yaml", workdir=workdir, model=model, device=device,
        batch_size=batch_size, bf16=precision == "bfloat16", fps=SAMPLE_FPS,
    )
    store, identity = Workdir.open(workdir), fetch_identity(config)
    cuts = [specs[i::shards] for i in range(shards)]
    started = time.perf_counter()
    with ThreadPoolExecutor(shards) as pool:
        results = list(pool.map(lambda i: acquire_videos(store, "bench", f"{i:05d}", cuts[i], config, identity), range(shards)))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "frames": sum(r.encoded_frames for r in results), "failed": sum(r.failed for r in results), "videos": len(specs)}


def bare_rate(encoder, batches: int) -> tuple[float, int]:
    """images/s of the image tower alone on a pre-made pixel tensor (on the device) of one full batch."""
    import torch

    pixels = torch.rand(encoder.batch_size, 3, *encoder.image_size, device=encoder.device) * 2 - 1
    synchronize = torch.cuda.synchronize if encoder.device.startswith("cuda") else (lambda: None)
    with encoder._inference():
        encoder._image_tower(pixels)  # warm-up
        synchronize()
        started = time.perf_counter()
        for _ in range(batches):
            encoder._image_tower(pixels).float()
        synchronize()
    return batches * encoder.batch_size / (time.perf_counter() - started), batches


# --- memory cases (each in its own process) ---------------------------------------------


def tiny224_path() -> Path:
    from actalign.builtin_models import RandomTowerSize
    from actalign.tiny_model import random_model_path

    return random_model_path(RandomTowerSize(TINY224_FOLDER, 32, 64, 2, 4, 224, 32))


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not getrusage's ru_maxrss: Linux carries that across fork + exec, so a
    child of a process holding a 2 GB model starts with a 2 GB 'peak'; VmHWM belongs to the new address space."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # other systems: no fork carry-over issue known


def reset_peak_rss() -> bool:
    """Restart the peak RSS count at the current RSS (Linux >= 4.0), so the stage's own peak can be read."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def memory_case(case: str, videos_dir: Path, workdir: Path, device: str) -> dict:
    """Runs in a fresh process; reports the peak RSS of loading (imports + model) and of the stage."""
    logging.disable(logging.WARNING)
    import actalign.tasks.acquire  # noqa: F401 - imports (Prefect, pyarrow) belong to loading, not to the stage
    from actalign.frames import sample_frames
    from actalign.models import load_encoder

    model = str(tiny224_path())
    encoder = load_encoder(model, device=device)
    warm = np.zeros((encoder.batch_size, *encoder.image_size, 3), np.uint8)
    encoder.embed_images(warm)  # allocator warm-up, so "before" includes the model's working memory
    before = peak_rss_mb()
    reset = reset_peak_rss()
    started = time.perf_counter()
    if case == "long-collect":  # the pre-streaming way: every frame of the video in memory, then embed
        sampled = sample_frames(videos_dir / "long.mp4", SAMPLE_FPS, encoder.image_size)
        frames = len(encoder.embed_images(sampled.frames))
    else:
        paths = [videos_dir / "long.mp4"] if case == "long" else sorted(videos_dir.glob("short*.mp4"))[: int(case)]
        frames = run_stage(model, device, "float32", None, paths, workdir)["frames"]
    stage = peak_rss_mb()
    return {"case": case, "frames": frames, "seconds": time.perf_counter() - started, "rss_before_mb": before,
            "rss_stage_mb": stage, "rss_peak_mb": max(before, stage), "reset": reset}


def run_memory_cases(device: str, scratch: Path) -> None:
    videos_dir = scratch / "memvideos"
    videos_dir.mkdir()
    started = time.perf_counter()
    for i in range(500):
        write_video(videos_dir / f"short{i:03d}.mp4", 2.0, seed=i)
    write_video(videos_dir / "long.mp4", 600.0)
    print(f"generated 500 videos of 2 s and one of 10 min (160x120, 10 fps) in {time.perf_counter() - started:.0f} s")
    tiny224_path()  # built once, before the subprocesses
    results = {}
    for case in ("50", "500", "long", "long-collect"):
        command = [sys.executable, "-m", "benchmarks.bench_encode", "--memory-case", case, "--videos-dir", str(videos_dir),
                   "--workdir", str(scratch / f"work-{case}"), "--device", device]
        done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        if done.returncode != 0:
            print(done.stdout, done.stderr)
            raise SystemExit(f"memory case {case} failed")
        results[case] = json.loads(done.stdout.strip().splitlines()[-1])
    reference = results["50"]["rss_peak_mb"]
    print("peak RSS (VmHWM) of a fresh process per case: loading (imports, model, one warm-up batch), then the acquire stage "
          "(peak reset after loading); tiny SigLIP at 224 px input, 4 fps:")
    for case, label in (("50", "50 videos x 2 s"), ("500", "500 videos x 2 s"), ("long", "1 video x 10 min"),
                        ("long-collect", "1 video x 10 min, pre-streaming way (sample all, then embed)")):
        r = results[case]
        print(f"  {label:60s} {r['frames']:5d} frames {r['seconds']:6.1f} s  peak {r['rss_peak_mb']:7.1f} MB "
              f"(loading {r['rss_before_mb']:6.1f} MB, stage {r['rss_stage_mb']:6.1f} MB"
              f"{'' if r['reset'] else ' [peak not resettable: includes loading]'})  x{r['rss_peak_mb'] / reference:.3f} of 50 videos")
    spread = max(results[c]["rss_peak_mb"] for c in ("50", "500", "long")) / min(results[c]["rss_peak_mb"] for c in ("50", "500", "long"))
    print(f"  streaming cases: max/min peak = {spread:.3f} (goal <= 1.10): {'PASS' if spread <= 1.10 else 'FAIL'}")


# --- main -------------------------------------------------------------------------------


def run_throughput(model: str, device: str, precision: str, frames_wanted: int, scratch: Path) -> float:
    from actalign.models import load_encoder

    encoder = load_encoder(model, device=device, precision=precision)
    settings = encoder.settings()
    print(f"\n{model} on {settings['device']} ({settings['device_name']}), dtype {settings['dtype']}, batch {settings['batch_size']}, "
          f"torch threads {settings['torch_threads']}, compile {settings['compile']}" + ("" if encoder.identity.trained else "  [untrained weights]"))
    paths = throughput_videos(scratch, frames_wanted)
    batches = max(1, math.ceil(frames_wanted / encoder.batch_size))
    half = max(1, batches // 2)
    before, _ = bare_rate(encoder, half)
    stage = run_stage(model, device, precision, None, paths, scratch / f"work-{model}-{precision}")
    after, _ = bare_rate(encoder, half)
    bare = (before + after) / 2
    rate = stage["frames"] / stage["seconds"]
    print(f"  bare forward:  {before:8.2f} images/s before, {after:8.2f} after (batch {encoder.batch_size}, {half} batches each)")
    print(f"  acquire stage: {rate:8.2f} frames/s ({stage['videos']} videos, {stage['frames']} frames, {stage['seconds']:.1f} s, "
          f"{stage['failed']} failed)")
    ratio = rate / bare
    if encoder.identity.trained or model != "tiny-random":
        print(f"  ratio stage / bare = {ratio:.3f} (goal >= 0.85): {'PASS' if ratio >= 0.85 else 'FAIL'}")
    else:  # a 32-px model runs thousands of images/s: the stage is bound by decoding, by design of the test model
        print(f"  ratio stage / bare = {ratio:.3f} (tiny model: the stage is decode-bound; the goal applies to base size)")
    return ratio


@contextmanager
def batch_sizes(encoder) -> Iterator[list[int]]:
    """The sizes of the batches ``encoder`` runs meanwhile, whichever stream they come from (wraps its ``submit_images``)."""
    sizes: list[int] = []
    submit = encoder.submit_images

    def counted(frames):
        sizes.append(len(frames))
        return submit(frames)

    encoder.submit_images = counted
    try:
        yield sizes
    finally:
        del encoder.submit_images


def run_shards(model: str, device: str, precision: str, frames_wanted: int, scratch: Path, shards: int = 4) -> float:
    """frames/s of the acquire stage with ``shards`` shards in flight at once versus one shard with every video,
    alternated twice in the same run (goal >= 0.95: the model is shared, so shards must not leave it waiting),
    and how many of the batches were partial (shards sharing batches: one per run, as for one shard)."""
    from actalign.models import load_encoder

    encoder = load_encoder(model, device=device, precision=precision)  # the one the stage gets (registry.encoder_for)
    paths = throughput_videos(scratch, frames_wanted)
    rates: dict[int, list[float]] = {1: [], shards: []}
    partial: dict[int, list[str]] = {1: [], shards: []}
    for repeat in range(2):
        for n in (1, shards) if repeat == 0 else (shards, 1):
            with batch_sizes(encoder) as sizes:
                stage = run_stage(model, device, precision, None, paths, scratch / f"shards-{model}-{precision}-{n}-{repeat}", shards=n)
            rates[n].append(stage["frames"] / stage["seconds"])
            partial[n].append(f"{sum(size < encoder.batch_size for size in sizes)}/{len(sizes)}")
    one, many = (sum(rates[n]) / len(rates[n]) for n in (1, shards))
    print(f"  {shards} shards in flight: {many:8.2f} frames/s; one shard: {one:8.2f} frames/s; ratio {many / one:.3f} (goal >= 0.95)")
    print(f"  partial/all batches per run: {shards} shards {', '.join(partial[shards])}; one shard {', '.join(partial[1])}")
    return many / one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny-random only, fewer frames")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--model", help="default: base-random (tiny-random with --quick)")
    parser.add_argument("--precision", nargs="+", help="default: float32 and the device's autocast dtype")
    parser.add_argument("--frames", type=int, help="sampled frames per throughput case (default 192; --quick 640)")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-case", help=argparse.SUPPRESS)
    parser.add_argument("--videos-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from actalign.models import choose_device, choose_precision

    device = choose_device(args.device)
    if args.memory_case:
        print(json.dumps(memory_case(args.memory_case, args.videos_dir, args.workdir, device)))
        return
    logging.basicConfig(level=logging.WARNING)
    acquire_log = logging.getLogger("actalign.tasks.acquire")
    acquire_log.setLevel(logging.INFO)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("  %(message)s"))
    acquire_log.addHandler(handler)
    acquire_log.propagate = False

    import torch

    model = args.model or ("tiny-random" if args.quick else "base-random")
    precisions = args.precision or (["float32"] if args.quick else list(dict.fromkeys(["float32", choose_precision(device, "auto")])))
    frames_wanted = args.frames or (640 if args.quick else 192)
    print(f"device: {device}" + (f" ({torch.cuda.get_device_name(torch.device(device))})" if device.startswith("cuda") else "")
          + f", torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; "
          f"videos: {CLIPS if CLIPS.is_dir() else 'generated 640x360'} at {SAMPLE_FPS} fps")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (other processes skew every figure)")
    with tempfile.TemporaryDirectory(prefix="bench-encode-") as tmp:
        scratch = Path(tmp)
        for precision in precisions:
            if precision not in ("float32", "bfloat16"):  # RunConfig says bf16 or not; float16 is load_encoder only
                print(f"\n{precision}: skipped (the acquire stage's RunConfig selects float32 or bfloat16 only)")
                continue
            run_throughput(model, device, precision, frames_wanted, scratch)
            run_shards(model, device, precision, frames_wanted, scratch)
        if not args.skip_memory:
            print()
            run_memory_cases(device, scratch)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
