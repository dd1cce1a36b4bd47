"""Classes files and manifests: every format, and a clear error for each bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actalign.classes import load_classes
from actalign.errors import InputError
from actalign.manifest import load_manifest
from actalign.scripts import validate_texts

CLASSES_YAML = """
classes:
  - action: Axe kick
    domain: taekwondo
    steps: ["raise the leg high", "drop the heel down"]
  - id: roundhouse
    action: Roundhouse kick
    domain: taekwondo
    steps: ["pivot on the standing foot", "swing the leg around", "strike with the instep"]
"""


@pytest.fixture
def classes(tmp_path: Path):
    path = tmp_path / "classes.yaml"
    path.write_text(CLASSES_YAML)
    return load_classes(path)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_classes_ids_and_steps(classes):
    assert [c.class_id for c in classes] == ["axe-kick", "roundhouse"]
    assert classes[1].steps == ("pivot on the standing foot", "swing the leg around", "strike with the instep")
    assert validate_texts(classes[0]) == ("raise the leg high", "drop the heel down")


def test_classes_json_list_form(tmp_path):
    path = write(tmp_path / "c.json", json.dumps([{"action": "Spin", "steps": ["turn"]}]))
    assert load_classes(path)[0].class_id == "spin"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("classes: []", "has no classes"),
        ("classes:\n  - domain: x\n", "non-empty 'action'"),
        ("classes:\n  - {action: A, steps: [a]}\n  - {action: a, steps: [b]}\n", "duplicate class id 'a'"),
        ("classes:\n  - {action: A, steps: ['ok', '']}\n", "an entry of 'steps' is empty"),
        ("classes: [unclosed", "cannot parse"),
    ],
)
def test_bad_classes_files(tmp_path, text, message):
    path = write(tmp_path / "c.yaml", text)
    with pytest.raises(InputError, match=message) as info:
        load_classes(path)
    assert str(path) in str(info.value)


def test_class_without_steps_is_refused(tmp_path):
    classes = load_classes(write(tmp_path / "c.yaml", "classes:\n  - {action: Lonely kick}\n"))
    with pytest.raises(InputError, match="'lonely-kick'.*has no steps"):
        validate_texts(classes[0])


def test_csv_jsonl_and_parquet_manifests_agree(tmp_path, classes):
    rows = [
        {"video_id": "v1", "path": "a.mp4", "start_s": 1.5, "end_s": 4.0, "domain": "taekwondo", "candidates": ["Axe kick", "roundhouse"], "label": "roundhouse"},
        {"video_id": "v2", "path": "b.mp4", "start_s": None, "end_s": None, "domain": None, "candidates": None, "label": None},
    ]
    csv_text = "video_id,path,start_s,end_s,domain,candidates,label\nv1,a.mp4,1.5,4.0,taekwondo,Axe kick|roundhouse,roundhouse\nv2,b.mp4,,,,,\n"
    from_csv = load_manifest(write(tmp_path / "m.csv", csv_text), classes)
    from_jsonl = load_manifest(write(tmp_path / "m.jsonl", "\n".join(json.dumps(r) for r in rows)), classes)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "m.parquet")
    from_parquet = load_manifest(tmp_path / "m.parquet", classes)
    assert from_csv == from_jsonl == from_parquet
    first, second = from_csv
    assert first.candidates == ("axe-kick", "roundhouse") and first.label == "roundhouse"
    assert (first.start_s, first.end_s) == (1.5, 4.0)
    assert first.source == str((tmp_path / "a.mp4").resolve())
    assert second.candidates == ("axe-kick", "roundhouse") and second.label is None  # default: all classes


def test_urls_youtube_ids_and_file_urls(tmp_path, classes):
    text = (
        "video_id,path,url,youtube_id\n"
        "a,,https://example.org/videos/clip.mp4?x=1,\n"
        "b,,,dQw4w9WgXcQ\n"
        f"c,,file://{tmp_path}/sub/c.mp4,\n"
        ",rel/d.webm,,\n"
    )
    videos = load_manifest(write(tmp_path / "m.csv", text), classes)
    assert [v.source for v in videos] == [
        "https://example.org/videos/clip.mp4?x=1",
        "dQw4w9WgXcQ",
        str(tmp_path / "sub" / "c.mp4"),
        str((tmp_path / "rel" / "d.webm").resolve()),
    ]
    assert videos[3].video_id == "d"


def test_folder_is_an_unlabelled_manifest(tmp_path, classes):
    for name in ("b.mp4", "a.gif", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    videos = load_manifest(tmp_path, classes)
    assert [v.video_id for v in videos] == ["a", "b"] and all(v.label is None for v in videos)


@pytest.mark.parametrize(
    ("csv_text", "message"),
    [
        ("video_id,path\n", "lists no videos"),
        ("video_id,path,label\nv1,a.mp4,Flying kick\n", r"row 1: unknown label class 'Flying kick'"),
        ("video_id,path,candidates\nv1,a.mp4,\nv2,b.mp4,axe-kick|flying\n", r"row 2: unknown candidate class 'flying'"),
        ("video_id,path\nv1,a.mp4\nv1,b.mp4\n", "row 2: duplicate video_id 'v1'"),
        ("video_id,path,start_s,end_s\nv1,a.mp4,5,2\n", r"row 1: end_s \(2.0\) must be after start_s \(5.0\)"),
        ("video_id,path,start_s\nv1,a.mp4,soon\n", "start_s must be a number"),
        ("video_id,path\nv1,\n", "row 1: missing the video"),
        ("video_id,path,candidates,label\nv1,a.mp4,axe-kick,roundhouse\n", "not among the row's candidates"),
    ],
)
def test_bad_manifests_name_the_row(tmp_path, classes, csv_text, message):
    path = write(tmp_path / "m.csv", csv_text)
    with pytest.raises(InputError, match=message) as info:
        load_manifest(path, classes)
    assert str(path) in str(info.value)


def test_missing_videos_source(tmp_path, classes):
    with pytest.raises(InputError, match="neither a folder of videos nor a manifest"):
        load_manifest(tmp_path / "nowhere", classes)


def test_inputs_are_parsed_once_per_process_until_a_file_changes(tmp_path, monkeypatch):
    """The CLI's preflight and the flow it starts read the same inputs: the second read parses nothing,
    and an edited manifest or classes file is parsed again."""
    import os

    import actalign.inputs as inputs_module
    from actalign.config import RunConfig

    (tmp_path / "a.mp4").write_bytes(b"x")
    manifest = write(tmp_path / "m.csv", "path,label\na.mp4,axe-kick\n")
    classes_file = write(tmp_path / "classes.yaml", CLASSES_YAML)
    config = RunConfig(videos=manifest, classes=classes_file, workdir=tmp_path / "w")
    parses = []
    monkeypatch.setattr(inputs_module, "load_manifest", lambda *a: parses.append(a) or load_manifest(*a))

    first = inputs_module.read_inputs(config)
    assert inputs_module.read_inputs(config) is first and len(parses) == 1
    write(manifest, "path,label\na.mp4,roundhouse\n")
    os.utime(manifest, ns=(1, 1))  # a change however coarse the file system's clock
    assert inputs_module.read_inputs(config).videos[0].label == "roundhouse" and len(parses) == 2


def test_unset_shard_size_makes_about_four_shards_per_worker_of_16_to_64_videos():
    """Fewer, larger shards mean fewer task runs (each costs the Prefect server CPU), but enough of them
    that no worker idles at the end; on a Dask cluster, whose size the flow does not know, many small ones."""
    from pydantic import ValidationError

    from actalign.config import RunConfig

    two_workers = RunConfig(videos="v.csv", classes="c.yaml")
    assert two_workers.shard_size is None and two_workers.workers == 2
    assert [two_workers.videos_per_shard(n) for n in (1, 128, 200, 934, 1000)] == [16, 16, 25, 64, 64]
    assert [RunConfig(videos="v.csv", classes="c.yaml", workers=w).videos_per_shard(200) for w in (1, 4)] == [50, 16]
    assert RunConfig(videos="v.csv", classes="c.yaml", dask_address="tcp://127.0.0.1:8786").videos_per_shard(1000) == 16
    assert RunConfig(videos="v.csv", classes="c.yaml", shard_size=5).videos_per_shard(1000) == 5
    with pytest.raises(ValidationError, match="shard_size"):
        RunConfig(videos="v.csv", classes="c.yaml", shard_size=0)
