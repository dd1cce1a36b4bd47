"""Hostile and careless ids (issue 15): refused where they enter, and harmless if they are in the store anyway.

Entry: each hostile id in a classes file, a manifest, a folder of videos or an ActionAtlas copy makes the
installed `actalign status` exit 2, naming the file, the row and the rule. Defence in depth: a workdir
whose Parquet rows already hold hostile video and class ids (written directly, as a run of an older
actalign or a hand-edited store would have them) is drawn by `actalign explain` and `actalign report`
without one file landing outside the workdir or the chosen --out, and a symlink or run id that points
elsewhere is refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from actalign.cli.main import app
from actalign.errors import InputError
from actalign.ids import RULE, check_id, file_stem
from actalign.queries.explain import explain_video
from actalign.storage import schemas
from actalign.storage.embeddings import write_frame_embeddings, write_text_embeddings
from actalign.storage.parquet import write_atomic
from actalign.storage.records import RunRecord, mark_interrupted, write_run
from actalign.storage.safe_paths import contained
from actalign.storage.workdir import Workdir

ACTALIGN = [str(Path(sys.executable).parent / "actalign")]  # the installed script, as a user runs it
RUN = "20260101-000000-hostil"
RULE_START = "an id has 1 to 128 printable characters"


def tree(root: Path) -> set[Path]:
    return set(root.rglob("*"))


# --------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    "legitimate",
    ["demo-000", "v1", "q-001", "dQw4w9WgXcQ", "My clip (2)", "c'est la vie", "Salto à l'arrière", "跳水", "taekwondo--axe-kick-1a2b3c",
     "red-blue-yellow", "a.b", "x" * 128],
)
def test_real_ids_pass(legitimate: str):
    assert check_id(legitimate, "id", "here") == legitimate


def test_file_stems_are_short_safe_and_distinct():
    ids = ["a/b", "a_b", "a-b", "a b", "A-b", "..", ".", "/abs", "跳水", "x" * 300, "x" * 301, "\x00", ""]
    stems = [file_stem(i) for i in ids]
    assert len(set(stems)) == len(ids)
    assert all(len(s) <= 51 and set(s) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") for s in stems)


# --------------------------------------------------------------------------- refused where they enter, by the real CLI

ESCAPE = "../../../../somewhere/escape"
CLASSES_YAML = "classes:\n  - {id: %s, action: Axe kick, steps: [raise the leg, drop the heel]}\n"


def status(tmp_path: Path, *options: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "100000"}  # one line per message: nothing wrapped
    return subprocess.run([*ACTALIGN, "status", *options, "--model", "tiny-random", "--workdir", str(tmp_path / "work")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def write_inputs(tmp_path: Path, class_id: str = "axe", video_id: str = "v1", action: str = "Axe kick") -> tuple[Path, Path]:
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps({"classes": [{"id": class_id, "action": action, "steps": ["raise the leg", "drop the heel"]}] if class_id
                                   else [{"action": action, "steps": ["raise the leg", "drop the heel"]}]}))
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(json.dumps({"video_id": video_id, "path": "a.mp4"}) + "\n")
    return manifest, classes


@pytest.mark.parametrize(
    "where, inputs, said",
    [
        ("classes", dict(class_id=ESCAPE), "contains '/'"),
        ("classes", dict(class_id="/somewhere/abs"), "contains '/'"),
        ("classes", dict(class_id="a\\b"), "contains '\\\\'"),
        ("classes", dict(class_id=".."), "it is a path component"),
        ("classes", dict(class_id="axe\x00kick"), "contains '\\x00'"),
        ("classes", dict(class_id="red\x1b[31mkick"), "contains '\\x1b'"),
        ("classes", dict(class_id="c" * 300), "it has 300 characters"),
        ("classes", dict(class_id=None, action="very " * 40 + "long kick"), "it has 209 characters"),  # made by slugify
        ("manifest", dict(video_id="/somewhere/absvid"), "contains '/'"),
        ("manifest", dict(video_id="v" * 300), "it has 300 characters"),
        ("manifest", dict(video_id="line\nbreak"), "contains '\\n'"),
    ],
    ids=["class-dotdot-path", "class-absolute", "class-backslash", "class-dotdot", "class-nul", "class-escape-sequence", "class-300",
         "class-slug-too-long", "video-absolute", "video-300", "video-newline"],
)
def test_entry_refuses_each_hostile_id(tmp_path: Path, where: str, inputs: dict, said: str):
    manifest, classes = write_inputs(tmp_path, **inputs)
    before = tree(tmp_path)
    done = status(tmp_path, "--videos", str(manifest), "--classes", str(classes))
    assert done.returncode == 2, done.stdout + done.stderr
    message = done.stderr
    named = f"{classes}, class #1" if where == "classes" else f"manifest {manifest}, row 1"
    assert named in message and said in message and RULE_START in message and "Traceback" not in message, message
    assert tree(tmp_path) - before <= {tmp_path / "work"} | set((tmp_path / "work").rglob("*"))  # nothing outside the workdir


def test_a_video_file_named_with_an_escape_sequence_is_refused(tmp_path: Path):
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "clip\x1b[2J.mp4").write_bytes(b"")
    _, classes = write_inputs(tmp_path)
    done = status(tmp_path, "--videos", str(folder), "--classes", str(classes))
    assert done.returncode == 2 and f"manifest {folder}, row 1: video_id" in done.stderr and "contains '\\x1b'" in done.stderr, done.stderr


@pytest.mark.parametrize(
    "row, said",
    [
        ({"id": ESCAPE}, f"row 2: question id {ESCAPE!r} is not a valid id: it contains '/'"),
        ({"id": "q\x1b[2J"}, "row 2: question id 'q\\x1b[2J' is not a valid id: it contains '\\x1b'"),
        ({"choices_str": "1. Axe kick\n2. " + "very " * 30 + "long kick"}, "row 2 (id q-002), choice 2: class id 'taekwondo--very-very"),
    ],
    ids=["question-path", "question-escape-sequence", "class-made-too-long"],
)
def test_actionatlas_rows_with_hostile_ids_are_refused(tmp_path: Path, row: dict, said: str):
    good = {"id": "q-001", "youtube_id": "abcdefghijk", "start_timestamp": 1.0, "end_timestamp": 3.0, "domain": "Taekwondo",
            "action": "Axe kick", "choices_str": "1. Axe kick\n2. Back kick", "answer": 1}
    atlas = tmp_path / "atlas.jsonl"
    atlas.write_text("\n".join(json.dumps(r) for r in (good, {**good, "id": "q-002", **row})) + "\n")
    done = status(tmp_path, "--benchmark", "actionatlas", "--videos", str(atlas))
    assert done.returncode == 2 and f"ActionAtlas manifest {atlas}, {said}" in done.stderr and RULE_START in done.stderr, done.stderr


# --------------------------------------------------------------------------- harmless when already in the store


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Workdir, list[str], list[str]]:
    """(tmp root, workdir, video ids, class ids): a scored run whose ids are paths, absolute paths and 300 characters.

    The workdir is deep enough in the tmp root that every '..' of the ids lands inside the root, where the
    tests can see it; absolute ids point into the root too.
    """
    root = tmp_path_factory.mktemp("hostile")
    workdir = Workdir.open(root / "a" / "b" / "c" / "work")
    classes = [ESCAPE, "../" * 8 + "deep-escape", str(root / "abs-class"), "k" * 300, "plain"]
    videos = [str(root / "absvid"), "v" * 300, "../../../../somewhere/escape-video"]
    rng = np.random.default_rng(0)
    config = {"scorers": ["actalign"], "fps": 4.0, "smoothing": 0, "provider": "file"}
    write_run(workdir, RunRecord(RUN, datetime(2026, 1, 1, tzinfo=UTC), "fake-model", True, config, state="completed",
                                 stage_keys={"model": {"logit_scale": 10.0, "logit_bias": -5.0}}, n_videos=len(videos)))
    rows = [{"run_id": RUN, "video_id": v, "source": "/nowhere.mp4", "start_s": None, "end_s": None, "domain": "d", "candidates": classes,
             "label": classes[i]} for i, v in enumerate(videos)]
    write_atomic(pa.Table.from_pylist(rows, schema=schemas.VIDEOS), workdir.videos_path(RUN))
    scores = []
    for i, video in enumerate(videos):
        frames_key = f"frames{i:040d}"
        write_frame_embeddings(workdir.frames_path(frames_key), video_id=video, times_s=np.arange(6) / 4,
                               embeddings=rng.normal(size=(6, 8)), model="fake-model", frames_key=frames_key, fps=4.0)
        for j, class_id in enumerate(classes):
            scores.append({"run_id": RUN, "video_id": video, "candidate": class_id, "scorer": "actalign", "score": float(rng.normal()),
                           "path_len": 8, "frames_key": frames_key, "embed_key": f"embed{j:040d}"})
    for j, class_id in enumerate(classes):
        texts = [("step", k, f"step {k} of {class_id[:20]}") for k in range(3)] + [("name", -1, class_id[:20])]
        write_text_embeddings(workdir.step_embeddings_path(f"embed{j:040d}"), class_id=class_id, texts=texts,
                              embeddings=rng.normal(size=(4, 8)), model="fake-model", embed_key=f"embed{j:040d}")
    write_atomic(pa.Table.from_pylist(scores, schema=schemas.SCORES), workdir.scores_path(RUN, "00000"))
    return root, workdir, videos, classes


def deep(root: Path, name: str) -> Path:
    """An --out folder (made here) as deep in the root as the workdir's figures, so escapes from it land in the root too."""
    folder = root.joinpath(*"pqrstuv", name)
    folder.mkdir(parents=True)
    return folder


def outside(root: Path, before: set[Path], *inside: Path) -> set[Path]:
    """What appeared in the root outside the given folders."""
    return {p for p in tree(root) - before if not any(p.is_relative_to(folder) for folder in inside)}


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_explain_writes_every_candidate_inside_the_workdir(hostile):
    root, workdir, videos, classes = hostile
    for video in videos:
        before = tree(root)
        result = CliRunner().invoke(app, ["explain", "--video", video, "--workdir", str(workdir.root)])
        assert result.exit_code == 0, result.output
        folder = workdir.run_dir(RUN) / "explain" / file_stem(video)
        assert sorted(p.name for p in folder.iterdir()) == sorted(f"{file_stem(c)}.png" for c in classes)
        assert not outside(root, before, workdir.root)


def test_explain_with_out_writes_only_there(hostile):
    root, workdir, videos, classes = hostile
    out = deep(root, "pictures")
    before = tree(root)
    written = explain_video(workdir, videos[1], out_dir=out)
    assert sorted(written) == sorted(out / f"{file_stem(c)}.png" for c in classes)
    assert not outside(root, before, out, workdir.root) and not any(p.suffix == ".png" for p in tree(workdir.root) - before)


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_report_heatmaps_stay_in_the_report_folder(hostile):
    root, workdir, videos, classes = hostile
    for out in (None, deep(root, "report")):
        before = tree(root)
        args = ["report", "--workdir", str(workdir.root), "--run", RUN, "--format", "md", "--format", "json", "--format", "html"]
        result = CliRunner().invoke(app, [*args, *(part for v in videos for part in ("--video", v)), *(["--out", str(out)] if out else [])])
        assert result.exit_code == 0, result.output
        folder = out or workdir.run_dir(RUN)
        doc = json.loads((folder / "report.json").read_text())
        assert [h["video_id"] for h in doc["heatmaps"]] == videos and not any(h["error"] for h in doc["heatmaps"])
        for heat, video in zip(doc["heatmaps"], videos):
            assert sorted(heat["paths"]) == sorted(f"figures/heatmaps/{file_stem(video)}/{file_stem(c)}.png" for c in classes)
            assert all((folder / p).stat().st_size > 1000 for p in heat["paths"])
        assert not outside(root, before, folder, workdir.root)
        assert out is None or not any(p.suffix in (".png", ".md", ".json", ".html") for p in tree(workdir.root) - before)


def test_a_symlink_out_of_the_workdir_is_refused(hostile, tmp_path: Path):
    _, workdir, videos, _ = hostile
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = workdir.run_dir(RUN) / "explain"
    kept = link.rename(link.with_name("explain-kept")) if link.exists() else None
    link.symlink_to(elsewhere, target_is_directory=True)
    try:
        with pytest.raises(InputError, match=f"refusing to write {link}/.*: it resolves to {elsewhere}/.*, outside {workdir.root}$"):
            explain_video(workdir, videos[2])
        assert CliRunner().invoke(app, ["explain", "--video", videos[2], "--workdir", str(workdir.root)]).exit_code == 2
        assert not any(elsewhere.iterdir())
    finally:
        link.unlink()
        if kept:
            kept.rename(link)


def test_a_run_id_that_points_outside_is_refused(hostile):
    """A run record whose run_id climbs out of runs/: its report would be written outside the workdir."""
    root, workdir, _, _ = hostile
    run = "../../../../outside-run"
    record = asdict(RunRecord(run, datetime(2026, 1, 2, tzinfo=UTC), "fake-model", True, {}, state="completed"))
    record.update(config=json.dumps({"scorers": ["actalign"]}), stage_keys="{}")
    path = write_atomic(pa.Table.from_pylist([record], schema=schemas.RUNS), workdir.run_dir("hostile-run") / "run.parquet")
    before = tree(root)
    try:
        result = CliRunner().invoke(app, ["report", "--workdir", str(workdir.root), "--run", run])
        assert result.exit_code == 2 and "refusing to write" in result.output, result.output
        assert not outside(root, before, workdir.root) and not (root / "a" / "outside-run").exists()
    finally:
        path.unlink()


def test_contained_names_the_path_and_the_root(tmp_path: Path):
    assert contained(tmp_path, tmp_path / "a" / ".." / "b.png") == tmp_path.resolve() / "b.png"
    with pytest.raises(InputError, match=r"refusing to write .*/x/\.\./\.\./y\.png: it resolves to .*/y\.png, outside .*/x$"):
        contained(tmp_path / "x", tmp_path / "x" / ".." / ".." / "y.png")
    assert RULE.startswith(RULE_START)


def test_store_and_run_writes_never_follow_a_planted_symlink_out_of_the_workdir(tmp_path: Path):
    """Every store and run file is named by the Workdir: a symlinked run folder or store folder, or a
    run id that climbs, is refused before anything is written through it."""
    workdir, outside = Workdir.open(tmp_path / "work"), tmp_path / "outside"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    record = RunRecord("planted", datetime.now(UTC), "tiny-random", False, {}, state="running", pid=int(gone.stdout))  # killed
    write_run(workdir, record)
    workdir.run_dir("planted").rename(outside)
    (workdir.root / "runs" / "planted").symlink_to(outside, target_is_directory=True)
    before = (outside / "run.parquet").read_bytes()
    with pytest.raises(InputError, match="outside"):
        mark_interrupted(workdir)  # it rewrites the records of killed runs: never through the link
    with pytest.raises(InputError, match="outside"):
        write_run(workdir, record)
    assert (outside / "run.parquet").read_bytes() == before
    with pytest.raises(InputError, match="outside"):
        workdir.run_dir("../store")
    (workdir.store_dir / "scripts").rename(workdir.root / "scripts-moved")
    (workdir.store_dir / "scripts").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InputError, match="outside"):
        workdir.script_path("0" * 40)
