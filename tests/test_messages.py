"""Error messages name what the user wrote and how to fix it; config files mean the same from any folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from actalign.cli.main import app
from actalign.models import load_encoder

CLASSES = "classes:\n  - action: Kick\n    steps: [lift the knee, snap the leg]\n  - action: Punch\n    steps: [draw back, strike]\n"


def invoke(*args: object):
    """The CLI as a narrow, non-TTY terminal sees it; the output with its line wrapping undone."""
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "60", "TERM": "dumb"})
    return result, " ".join(result.output.split())


def inputs(folder: Path, manifest: str = "path,label\nclip.mp4,kick\n", name: str = "m.csv", classes: str = CLASSES) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "clip.mp4").write_bytes(b"")
    (folder / name).write_text(manifest)
    (folder / "classes.yaml").write_text(classes)
    return folder / name, folder / "classes.yaml"


def status(*args: object):
    return invoke("status", "--model", "toy-shapes", *args)


def test_an_unknown_manifest_column_is_named_with_the_accepted_ones(tmp_path):
    manifest, classes = inputs(tmp_path, "file,label\nclip.mp4,kick\n")
    result, said = status("--videos", manifest, "--classes", classes, "--workdir", tmp_path / "w")
    assert result.exit_code == 2
    assert "unrecognised column(s) 'file'" in said and "video_id, path, url, youtube_id, start_s, end_s, domain, candidates, label" in said


def test_a_class_without_steps_names_the_classes_file_and_the_class(tmp_path):
    manifest, classes = inputs(tmp_path, classes="classes:\n  - action: Punch\n    steps: [a, b]\n  - action: Kick\n")
    result, said = status("--videos", manifest, "--classes", classes, "--workdir", tmp_path / "w")
    assert result.exit_code == 2
    assert "class #2: class 'kick' (Kick) has no steps" in said
    assert f"classesfile{classes},class#2" in "".join(said.split())  # the path whole, however the terminal wraps it


def test_an_unknown_scorer_names_the_option_and_the_closest_scorer(tmp_path):
    manifest, classes = inputs(tmp_path)
    result, said = invoke("config", "--videos", manifest, "--classes", classes, "--scorer", "actalgn")
    assert result.exit_code == 2
    assert "--scorer: unknown scorer(s) 'actalgn'; did you mean 'actalign'" in said and "Value error" not in said


def test_a_bad_value_names_the_option_on_the_command_line_and_the_field_in_a_file(tmp_path):
    manifest, classes = inputs(tmp_path)
    result, said = invoke("config", "--videos", manifest, "--classes", classes, "--fps", "0")
    assert result.exit_code == 2 and "--fps: Input should be greater than 0 (got 0.0)" in said
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"videos": "m.csv", "classes": "classes.yaml", "fps": 0, "smoothng": 2}))
    result, said = invoke("config", "--config", config)
    assert result.exit_code == 2 and "--fps" not in said
    assert "fps: Input should be greater than 0 (got 0)" in said and "smoothng: Extra inputs are not permitted; did you mean 'smoothing'?" in said


def test_an_unknown_label_suggests_the_closest_class_id(tmp_path):
    manifest, classes = inputs(tmp_path, "path,label\nclip.mp4,kik\n")
    result, said = status("--videos", manifest, "--classes", classes, "--workdir", tmp_path / "w")
    assert result.exit_code == 2 and "unknown label class 'kik'; did you mean 'kick'?" in said


def test_a_tsv_manifest_is_read_like_a_csv(tmp_path):
    manifest, classes = inputs(tmp_path, "path\tlabel\tdomain\nclip.mp4\tkick\tkarate\n", name="m.tsv")
    result, said = status("--videos", manifest, "--classes", classes, "--workdir", tmp_path / "w")
    assert result.exit_code == 0, said
    assert "1 videos, 2 classes" in said


def test_relative_paths_in_a_config_file_resolve_against_its_folder(tmp_path, monkeypatch):
    inputs(tmp_path / "exp1")
    hand_written = tmp_path / "exp1" / "run.yaml"
    hand_written.write_text(yaml.safe_dump({"videos": "m.csv", "classes": "classes.yaml", "workdir": "work", "model": "toy-shapes"}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result, said = invoke("status", "--config", hand_written)
    assert result.exit_code == 0, said
    result, _ = invoke("config", "--config", hand_written, "--workdir", "here")  # an option is relative to the current folder
    printed = yaml.safe_load(result.output)
    assert printed["videos"] == str(tmp_path / "exp1" / "m.csv") and printed["classes"] == str(tmp_path / "exp1" / "classes.yaml")
    assert printed["workdir"] == str(elsewhere / "here")
    (tmp_path / "copy.yaml").write_text(result.output)  # what `actalign config` writes works from any folder
    monkeypatch.chdir(tmp_path / "exp1")
    again, _ = invoke("config", "--config", tmp_path / "copy.yaml")
    assert yaml.safe_load(again.output) == printed


def test_an_unknown_model_suggests_the_closest_registry_name(tmp_path):
    manifest, classes = inputs(tmp_path)
    result, said = invoke("status", "--model", "siglip-bse", "--videos", manifest, "--classes", classes, "--workdir", tmp_path / "w")
    assert result.exit_code == 2 and "Unknown model 'siglip-bse'" in said and "did you mean 'siglip-base'" in said


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_a_suggested_command_arrives_whole_in_a_narrow_terminal_and_in_a_pipe(tmp_path):
    """`explain` of an unknown video suggests an `actalign sql` command naming the workdir: on one line of a
    40-column terminal and of a pipe, quoted so that pasting it into a shell runs that exact query."""
    import os
    import shlex
    import subprocess
    import sys

    from terminal import run_in_terminal

    workdir = tmp_path / "a folder name long enough to wrap twice" / "work"
    workdir.mkdir(parents=True)
    argv = [str(Path(sys.executable).with_name("actalign")), "explain", "--workdir", str(workdir), "--video", "nope"]
    code, shown = run_in_terminal(argv, columns=40)
    piped = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "COLUMNS": "40"}, timeout=120)
    for exit_code, text in ((code, shown), (piped.returncode, piped.stderr)):
        assert exit_code == 2, text
        lines = text.splitlines()
        command = shlex.split(lines[lines.index(next(line for line in lines if line.endswith("check the id with:"))) + 1])
        assert command == ["actalign", "sql", "--workdir", str(workdir), "SELECT run_id, video_id, scorer FROM predictions"], text


def test_a_calibration_is_checked_by_name_and_against_the_models_family(tmp_path):
    manifest, classes = inputs(tmp_path)
    result, said = invoke("config", "--videos", manifest, "--classes", classes, "--calibration", "cosin")
    assert result.exit_code == 2 and "--calibration: unknown calibration 'cosin'; did you mean 'cosine'" in said
    load_encoder("tiny-clip", device="cpu", batch_size=4)  # built: status reads its identity (an unbuilt model is only planned)
    result, said = invoke("status", "--model", "tiny-clip", "--calibration", "sigmoid", "--videos", manifest, "--classes", classes, "--workdir", tmp_path / "w")
    assert result.exit_code == 2 and "--calibration 'sigmoid' needs the checkpoint's logit_bias" in said and "use 'midpoint' or 'cosine'" in said
