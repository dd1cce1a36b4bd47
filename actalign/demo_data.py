"""The demo datasets: short generated videos whose classes differ only in the order of events.

Three visual events (a red circle, a blue square, a yellow triangle, each a
large shape on a grey background, drawn by ``actalign.shapes``) are shown one
after another. Every ordering of the three is a class (6 classes). All
classes show the same events for the same total time, so a mean-pooled video
embedding cannot tell them apart; only the order differs, which aligning the
class's steps with the frames can see. Per-video jitter (position, size, a
small drift each frame, pixel noise) from the seed keeps the videos distinct.

Two sets (``DEMO_SETS``):
- ``order``: the events fill the video, a third each.
- ``background``: the same events, half a second each, inside 16 s stretches
  of unrelated shapes before and after. Unrelated is not unlike: each stretch
  shows large crosses (no event's shape, nor one that blurs into it: small
  stars and rings look like circles) in the colour of one event
  (before: one event's colour, after: another's), as real footage before and
  after an action faintly resembles some of its steps. Each such frame adds a
  little to that step's affinity, and over a stretch 16 times longer than an
  event, an alignment that must cover every frame (paper-exact ``actalign``)
  is pulled towards the class that starts and ends with those colours;
  ``actalign-subsequence`` and ``drop-dtw-calibrated`` leave the background out.

Everything is generated here, deterministically for a seed, in a few seconds.
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from actalign.shapes import Scene, render

DEMO_EVENTS: list[tuple[str, str, str]] = [
    ("a red circle", "red", "circle"),
    ("a blue square", "blue", "square"),
    ("a yellow triangle", "yellow", "triangle"),
]
"""(step text, colour, shape) of each visual event."""

DOMAIN = "shapes"
BACKGROUND = "grey"


@dataclass(frozen=True)
class DemoSet:
    name: str
    description: str
    event_s: float  # seconds the three events take together
    background_s: float  # seconds of unrelated shapes before and after the events
    scorers: tuple[str, ...]  # what the demo compares on this set


DEMO_SETS: dict[str, DemoSet] = {
    demo_set.name: demo_set
    for demo_set in (
        DemoSet("order", "the events fill each video; classes differ only in their order", 3.0, 0.0, ("mean-pool", "actalign")),
        DemoSet(
            "background",
            "each video's events sit between long stretches of unrelated shapes",
            1.5,
            16.0,
            ("mean-pool", "actalign", "actalign-subsequence", "drop-dtw-calibrated"),
        ),
    )
}


def make_demo_dataset(
    dest: Path,
    videos_per_class: int = 2,
    seconds: float | None = None,
    fps: int = 12,
    size: int = 128,
    seed: int = 0,
    demo_set: str = "order",
) -> tuple[Path, Path]:
    """Write dest/videos/*.mp4, dest/classes.yaml and dest/manifest.csv; return (manifest, classes).

    ``seconds`` is the time the three events take together (default: the set's);
    the ``background`` set adds its stretches of unrelated shapes before and after.
    """
    spec = DEMO_SETS[demo_set]
    seconds = spec.event_s if seconds is None else seconds
    dest = Path(dest)
    videos_dir = dest / "videos"
    videos_dir.mkdir(parents=True, exist_ok=True)
    n_frames = max(3, round(seconds * fps))
    n_background = round(spec.background_s * fps)
    orders = list(itertools.permutations(range(len(DEMO_EVENTS))))
    classes = [_class_entry(order) for order in orders]

    from actalign.video_files import write_video  # here: the CLI imports this module for the set names, and needs PyAV only to write

    rows = []
    for class_index, (order, entry) in enumerate(zip(orders, classes)):
        for k in range(videos_per_class):
            number = class_index * videos_per_class + k
            video_id = f"demo-{number:03d}"
            rng = np.random.default_rng([seed, number])
            frames = _render_events(order, n_frames, size, rng)
            if n_background:
                lures = rng.choice(len(DEMO_EVENTS), size=2, replace=False)
                frames = np.concatenate(
                    [_render_background(lures[0], n_background, fps, size, rng), frames, _render_background(lures[1], n_background, fps, size, rng)]
                )
            write_video(videos_dir / f"{video_id}.mp4", frames, fps)
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
        f"# Demo classes ({spec.name} set): every ordering of the same three events (see actalign/demo_data.py).\n"
        + yaml.safe_dump({"classes": classes}, sort_keys=False, allow_unicode=True),
        encoding="utf-8",
    )
    manifest_path = dest / "manifest.csv"
    with open(manifest_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest_path, classes_path


def without_texts(classes: Path, dest: Path) -> Path:
    """``classes`` with every hand-written text removed, written to ``dest``: an LLM then writes every
    script (the tests and benchmarks of LLM runs)."""
    from actalign.classes import TEXT_KINDS

    entries = yaml.safe_load(classes.read_text())["classes"]
    for entry in entries:
        for kind in TEXT_KINDS:
            entry.pop(kind, None)
    dest.write_text(yaml.safe_dump({"classes": entries}))
    return dest


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


def _render_events(order: tuple[int, ...], n_frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (n_frames, size, size, 3) frames showing the events in ``order``, a third each."""
    scenes = []
    bounds = [round(j * n_frames / len(order)) for j in range(len(order) + 1)]
    for slot, event in enumerate(order):
        _, colour, shape = DEMO_EVENTS[event]
        centre = 0.5 + rng.uniform(-0.04, 0.04, 2)
        radius = 0.3 * rng.uniform(0.95, 1.05)
        drift = rng.uniform(-0.2, 0.2, 2) / 128  # image sides per frame
        for t in range(bounds[slot + 1] - bounds[slot]):
            cx, cy = centre + drift * t
            scenes.append(Scene(colour, shape, radius, (float(cx), float(cy)), BACKGROUND))
    return render(scenes, size, rng)


def _render_background(lure: int, n_frames: int, fps: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Large crosses in the colour of event ``lure``, a new one each second: no event's shape, nor one that shrinks into it."""
    colour = DEMO_EVENTS[lure][1]
    scenes = []
    for start in range(0, n_frames, fps):
        radius = float(rng.uniform(0.27, 0.33))
        centre = (float(rng.uniform(0.46, 0.54)), float(rng.uniform(0.46, 0.54)))
        scenes += [Scene(colour, "cross", radius, centre, BACKGROUND)] * min(fps, n_frames - start)
    return render(scenes, size, rng)

