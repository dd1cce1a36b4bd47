"""Acquire-stage cost: decoding + sampling, and encoding frames, per video and per frame.

    python -m benchmarks.bench_acquire [--models tiny-random base-random] [--fps 4]

Videos: the real clips in ../shared/clips when present, else the generated demo
set. For each model it prints sampled frames/s of decoding, images/s of
`Encoder.embed_images`, and the ratio of the encode rate to a bare forward pass
of the image tower on pre-made tensors of the same batch size (the baseline,
measured in the same run). Untrained models: speeds are real, embeddings are not.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from actalign.demo_data import make_demo_dataset
from actalign.frames import DECODE_STATS, sample_frames
from actalign.models import load_encoder

CLIPS = Path(__file__).resolve().parents[1].parent / "shared" / "clips"


def videos() -> list[Path]:
    if CLIPS.is_dir():
        return sorted(p for p in CLIPS.iterdir() if p.suffix in {".mp4", ".avi", ".mkv", ".gif"})
    manifest, _ = make_demo_dataset(Path(tempfile.mkdtemp()) / "demo")
    return sorted((manifest.parent / "videos").glob("*.mp4"))


def bench_model(name: str, paths: list[Path], fps: float) -> None:
    encoder = load_encoder(name)
    DECODE_STATS.reset()
    started = time.perf_counter()
    sampled = [sample_frames(p, fps, encoder.image_size) for p in paths]
    decode_s = time.perf_counter() - started
    frames = np.concatenate([s.frames for s in sampled])
    started = time.perf_counter()
    encoder.embed_images(frames)
    encode_s = time.perf_counter() - started

    batch = torch.from_numpy(frames[: encoder.batch_size]).permute(0, 3, 1, 2).float() / 255.0
    with torch.inference_mode():
        encoder.model.get_image_features(pixel_values=batch)  # warm-up
        started = time.perf_counter()
        encoder.model.get_image_features(pixel_values=batch)
        bare_rate = len(batch) / (time.perf_counter() - started)
    encode_rate = len(frames) / encode_s
    print(
        f"{name:12s} {len(paths)} videos, {len(frames)} sampled frames ({DECODE_STATS.frames} decoded) at {fps} fps\n"
        f"  decode+sample: {len(frames) / decode_s:8.1f} sampled frames/s, {DECODE_STATS.frames / decode_s:8.1f} decoded frames/s, "
        f"{decode_s / len(paths) * 1000:.0f} ms/video\n"
        f"  encode:        {encode_rate:8.1f} images/s, {encode_s / len(paths) * 1000:.0f} ms/video; "
        f"bare forward {bare_rate:.1f} images/s (batch {len(batch)}), ratio {encode_rate / bare_rate:.2f}"
        + ("" if encoder.trained else "  [untrained weights]")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny-random", "base-random"])
    parser.add_argument("--fps", type=float, default=4.0)
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}, clips: {CLIPS if CLIPS.is_dir() else 'generated demo set'}")
    paths = videos()
    for name in args.models:
        bench_model(name, paths, args.fps)


if __name__ == "__main__":
    main()
