"""actalign.demo_data: a dataset that mean pooling cannot classify but the order of events can."""

from __future__ import annotations

import csv
import hashlib
import itertools
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from actalign.demo_data import DEMO_EVENTS, DEMO_SETS, make_demo_dataset
from actalign.frames import sample_frames, video_duration
from actalign.shapes import COLOURS

VIDEOS_PER_CLASS = 2
SECONDS, FPS = 3.0, 12


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_demo_dataset(tmp_path_factory.mktemp("demo"), videos_per_class=VIDEOS_PER_CLASS, seed=0)


@pytest.fixture(scope="module")
def classes(dataset: tuple[Path, Path]) -> dict[str, dict]:
    data = yaml.safe_load(dataset[1].read_text(encoding="utf-8"))
    return {entry["id"]: entry for entry in data["classes"]}


@pytest.fixture(scope="module")
def rows(dataset: tuple[Path, Path]) -> list[dict[str, str]]:
    with open(dataset[0], newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def frames(dataset: tuple[Path, Path], rows: list[dict[str, str]]) -> dict[str, np.ndarray]:
    """Every frame of every video (sampled at the native rate), by video id."""
    return {row["video_id"]: sample_frames(dataset[0].parent / row["path"], fps=FPS, size=(64, 64)).frames for row in rows}


def test_classes_file_schema(dataset: tuple[Path, Path], classes: dict[str, dict]) -> None:
    assert dataset[1].name == "classes.yaml"
    assert len(classes) == 6
    step_names = [name for name, _, _ in DEMO_EVENTS]
    orders = {tuple(entry["steps"]) for entry in classes.values()}
    assert orders == set(itertools.permutations(step_names))
    for class_id, entry in classes.items():
        assert set(entry) == {"id", "action", "domain", "steps", "attributes", "subtexts"}
        # order-free texts are the same for every class: only the steps' order tells classes apart
        assert entry["attributes"] == next(iter(classes.values()))["attributes"]
        assert sorted(entry["subtexts"]) == sorted(next(iter(classes.values()))["subtexts"])
        assert re.fullmatch(r"[a-z0-9-]+", class_id)
        assert entry["domain"] == "shapes"
        assert isinstance(entry["action"], str) and ", then " in entry["action"]
        assert all(isinstance(step, str) and step for step in entry["steps"])
    assert classes["red-blue-yellow"]["action"] == "red circle, then blue square, then yellow triangle"
    assert classes["red-blue-yellow"]["steps"] == ["a red circle", "a blue square", "a yellow triangle"]


def test_manifest_rows_match_videos(dataset: tuple[Path, Path], classes: dict[str, dict], rows: list[dict[str, str]]) -> None:
    manifest = dataset[0]
    assert manifest.name == "manifest.csv"
    assert list(rows[0]) == ["video_id", "path", "start_s", "end_s", "domain", "candidates", "label"]
    assert len(rows) == 6 * VIDEOS_PER_CLASS
    assert len({row["video_id"] for row in rows}) == len(rows)
    for row in rows:
        assert re.fullmatch(r"demo-\d{3}", row["video_id"])
        assert row["path"] == f"videos/{row['video_id']}.mp4"
        assert (manifest.parent / row["path"]).is_file()
        assert (row["start_s"], row["end_s"], row["candidates"], row["domain"]) == ("", "", "", "shapes")
        assert row["label"] in classes
    assert sorted(p.name for p in (manifest.parent / "videos").iterdir()) == sorted(f"{r['video_id']}.mp4" for r in rows)
    for class_id in classes:
        assert sum(row["label"] == class_id for row in rows) == VIDEOS_PER_CLASS


def test_videos_decode_with_the_expected_frame_count(
    dataset: tuple[Path, Path], rows: list[dict[str, str]], frames: dict[str, np.ndarray]
) -> None:
    for row in rows:
        assert video_duration(dataset[0].parent / row["path"]) == pytest.approx(SECONDS)
        assert frames[row["video_id"]].shape == (round(SECONDS * FPS), 64, 64, 3)
    videos = list(frames.values())
    assert not np.array_equal(videos[0], videos[1])  # same class, different jitter


def test_mean_colour_is_the_same_for_every_class(rows: list[dict[str, str]], frames: dict[str, np.ndarray]) -> None:
    """What defeats a mean-pooled embedding: averaged over time, every class looks the same."""
    means: dict[str, list[np.ndarray]] = {}
    for row in rows:
        means.setdefault(row["label"], []).append(frames[row["video_id"]].reshape(-1, 3).mean(axis=0))
    per_class = np.array([np.mean(values, axis=0) for values in means.values()])
    assert np.ptp(per_class, axis=0).max() < 4  # grey levels; the events themselves differ by ~50


def test_dominant_colour_order_follows_the_steps(
    classes: dict[str, dict], rows: list[dict[str, str]], frames: dict[str, np.ndarray]
) -> None:
    colours = {name: np.array(COLOURS[colour], dtype=float) for name, colour, _ in DEMO_EVENTS}
    for row in rows:
        video = frames[row["video_id"]].astype(float)
        dominant = []
        for image in video:
            pixels = image.reshape(-1, 3)
            counts = {name: int((np.abs(pixels - rgb).max(axis=1) < 40).sum()) for name, rgb in colours.items()}
            dominant.append(max(counts, key=counts.__getitem__))
        order = [name for name, _ in itertools.groupby(dominant)]
        assert order == classes[row["label"]]["steps"], row["video_id"]
        third = len(video) // 3
        assert dominant == [step for step in order for _ in range(third)], row["video_id"]


def test_deterministic_for_a_seed(tmp_path: Path, dataset: tuple[Path, Path]) -> None:
    def digests(root: Path) -> dict[str, str]:
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}

    manifest, _ = make_demo_dataset(tmp_path / "again", videos_per_class=VIDEOS_PER_CLASS, seed=0)
    assert digests(manifest.parent) == digests(dataset[0].parent)
    other, _ = make_demo_dataset(tmp_path / "other", videos_per_class=1, seed=1)
    assert (other.parent / "videos" / "demo-000.mp4").read_bytes() != (dataset[0].parent / "videos" / "demo-000.mp4").read_bytes()


def test_loads_with_the_project_readers(dataset: tuple[Path, Path]) -> None:
    from actalign.classes import load_classes
    from actalign.manifest import load_manifest

    specs = load_classes(dataset[1])
    videos = load_manifest(dataset[0], specs)
    assert len(specs) == 6 and all(spec.steps and len(spec.steps) == 3 for spec in specs)
    assert len(videos) == 6 * VIDEOS_PER_CLASS
    assert all(Path(v.source).is_file() and len(v.candidates) == 6 and v.label for v in videos)


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_background_set_puts_short_events_between_long_stretches_of_other_shapes(tmp_path: Path) -> None:
    spec = DEMO_SETS["background"]
    manifest, classes_file = make_demo_dataset(tmp_path, videos_per_class=1, demo_set="background")
    classes = {entry["id"]: entry for entry in yaml.safe_load(classes_file.read_text(encoding="utf-8"))["classes"]}
    colours = {name: np.array(COLOURS[colour], dtype=float) for name, colour, _ in DEMO_EVENTS}
    with open(manifest, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        path = manifest.parent / row["path"]
        assert video_duration(path) == pytest.approx(spec.event_s + 2 * spec.background_s)
        video = sample_frames(path, fps=FPS, size=(64, 64)).frames.astype(float)
        start = round(spec.background_s * FPS)
        events = video[start : start + round(spec.event_s * FPS)]
        dominant = [max(colours, key=lambda name: int((np.abs(image.reshape(-1, 3) - colours[name]).max(axis=1) < 40).sum())) for image in events]
        assert [name for name, _ in itertools.groupby(dominant)] == classes[row["label"]]["steps"], row["video_id"]
        before, after = video[:start], video[start + len(events) :]
        assert len(before) == len(after) == start
