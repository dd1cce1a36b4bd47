"""The demo dataset: short synthetic videos whose classes differ only in the order of events.

Three visual events (a red circle, a blue square, a yellow triangle, each a
large shape on a grey background) are shown one after another, each for a
third of the video. Every ordering of the three is a class (6 classes). All
classes show the same events for the same total time, so a mean-pooled video
embedding cannot tell them apart; only the order differs, which aligning the
class's steps with the frames can see. Per-video jitter (position, size, a
small drift each frame, pixel noise) from the seed keeps the videos distinct.
Everything is generated here, deterministically for a seed, in well under 5 s.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import av
import numpy as np
import yaml

DEMO_EVENTS: list[tuple[str, tuple[int, int, int], str]] = [
    ("a red circle", (220, 40, 40), "circle"),
    ("a blue square", (40, 80, 220), "square"),
    ("a yellow triangle", (235, 205, 40), "triangle"),
]
"""(step text, RGB colour, shape) of each visual event."""

DOMAIN = "shapes"
BACKGROUND = 128  # plain grey


def make_demo_dataset(
    dest: Path,
    videos_per_class: int = 2,
    seconds: float = 3.0,
    fps: int = 12,
    size: int = 128,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write dest/videos/*.mp4, dest/classes.yaml and dest/manifest.csv; return (manifest, classes)."""
    dest = Path(dest)
    videos_dir = dest / "videos"
    videos_dir.mkdir(parents=True, exist_ok=True)
    n_frames = max(3, round(seconds * fps))
    orders = list(itertools.permutations(range(len(DEMO_EVENTS))))
    classes = [_class_entry(order) for order in orders]

    rows = []
    for class_index, (order, entry) in enumerate(zip(orders, classes)):
        for k in range(videos_per_class):
            number = class_index * videos_per_class + k
            video_id = f"demo-{number:03d}"
            rng = np.random.default_rng([seed, number])
            _write_video(videos_dir / f"{video_id}.mp4", _render(order, n_frames, size, rng), fps)
            rows.append(
                {
                    "video_id": video_id,
                    "path": f"videos/{video_id}.mp4",
                    "start_s": "",
                    "end_s": "",
                    "domain": DOMAIN,
                    "candidates": "",
                    "label": entry["id"],
                }
            )

    classes_path = dest / "classes.yaml"
    classes_path.write_text(
        "# Demo classes: every ordering of the same three events (see actalign/demo_data.py).\n"
        + yaml.safe_dump({"classes": classes}, sort_keys=False, allow_unicode=True),
        encoding="utf-8",
    )
    manifest_path = dest / "manifest.csv"
    with open(manifest_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest_path, classes_path


def _class_entry(order: tuple[int, ...]) -> dict[str, object]:
    """The classes.yaml entry of one ordering, e.g. id "red-blue-yellow"."""
    names = [DEMO_EVENTS[i][0] for i in order]
    bare = [name.removeprefix("a ") for name in names]  # "red circle"
    return {
        "id": "-".join(name.split()[0] for name in bare),
        "action": ", then ".join(bare),
        "domain": DOMAIN,
        "steps": names,
        # Order-free texts for attribute-saliency and storyboard: the same for every class, on purpose.
        "attributes": sorted(word for name in bare for word in name.split()),
        "subtexts": [f"This action is {name} on a grey background" for name in names],
    }


def _render(order: tuple[int, ...], n_frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (n_frames, size, size, 3) frames showing the events in ``order``, a third each."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    frames = np.empty((n_frames, size, size, 3), dtype=np.uint8)
    bounds = [round(j * n_frames / len(order)) for j in range(len(order) + 1)]
    for slot, event in enumerate(order):
        _, colour, shape = DEMO_EVENTS[event]
        centre = size / 2 + rng.uniform(-0.08, 0.08, 2) * size
        radius = size * 0.3 * rng.uniform(0.95, 1.05)
        drift = rng.uniform(-0.4, 0.4, 2) * size / 128  # pixels per frame
        for t in range(bounds[slot], bounds[slot + 1]):
            cx, cy = centre + drift * (t - bounds[slot])
            mask = _shape_mask(shape, xs - cx, ys - cy, radius)
            image = np.full((size, size, 3), BACKGROUND, dtype=np.int16)
            image[mask] = colour
            image += rng.integers(-6, 7, image.shape, dtype=np.int16)
            frames[t] = np.clip(image, 0, 255)
    return frames


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    """Boolean mask of a shape centred at dx = dy = 0."""
    if shape == "circle":
        return dx**2 + dy**2 <= radius**2
    if shape == "square":
        half = radius * 0.85
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    if shape == "triangle":  # apex up, base at the bottom
        top, bottom = -radius, radius * 0.8
        return (dy >= top) & (dy <= bottom) & (np.abs(dx) <= (dy - top) * 0.62)
    raise ValueError(f"unknown shape {shape!r}")


def _write_video(path: Path, frames: np.ndarray, fps: int) -> None:
    """H.264 (yuv420p) MP4; single-threaded x264 so the bytes are reproducible."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "veryfast", "threads": "1"})
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
