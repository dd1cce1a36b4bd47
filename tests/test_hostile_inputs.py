"""Hostile and careless inputs (issue 15), each written as the attack: real files, and the installed
`actalign` where a user would see the answer. Bad input is exit 2 with a message naming the file and
the row, never a hang or a traceback. `status` reads and checks the inputs without loading a model."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from actalign.classes import TEXT_KINDS, load_classes
from actalign.errors import InputError
from actalign.llm.prompts import parse_template
from actalign.manifest import load_manifest
from actalign.structured_files import NoAliasLoader
from tests.test_startup import ACTALIGN

CLASSES = "classes:\n  - {id: a, action: A, steps: [open, close]}\n"
BILLION_LAUGHS = 'l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"l{n}: &l{n} [{','.join([f'*l{n - 1}'] * 9)}]\n" for n in range(1, 9)
)  # 9 levels of 9 aliases: 9**9 (387 million) strings once expanded


def status(folder: Path, manifest: str, classes: str = CLASSES, *extra: str) -> tuple[int, str]:
    """``actalign status`` on these files; its exit code and its words on one line. A hang fails the test."""
    (folder / "m.csv").write_text(manifest)
    (folder / "c.yaml").write_text(classes)
    args = ["status", "--videos", "m.csv", "--classes", "c.yaml", "--model", "tiny-random", "--workdir", "work", *extra]
    done = subprocess.run([*ACTALIGN, *args], cwd=folder, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, " ".join((done.stdout + done.stderr).split())


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "folder"])
def test_a_path_that_is_no_regular_file_is_refused_before_it_is_read(kind: str, tmp_path: Path):
    """A FIFO or /dev/zero used to hang `status` and `run` while their content was hashed."""
    if kind == "fifo":
        os.mkfifo(tmp_path / "clip.mp4")
    if kind == "folder":
        (tmp_path / "clip.mp4").mkdir()
    path = kind if kind.startswith("/") else "clip.mp4"
    code, said = status(tmp_path, f"video_id,path\nv1,{path}\n")
    assert code == 2 and "m.csv, row 1:" in said and "is not a regular file" in said, said


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ('v1,"clip\0.mp4",,', r"the path 'clip\x00.mp4' contains a NUL character"),
        ("v1,file:///tmp/clip%00.mp4,,", "names no usable path (embedded null byte)"),
        ("v1,,notanid,", "youtube_id 'notanid' is not a YouTube id"),
        ("v1,,dQw4w9WgXcQQ,", "youtube_id 'dQw4w9WgXcQQ' is not a YouTube id"),
        ("v1,,,ftp://example.org/clip.mp4", "url 'ftp://example.org/clip.mp4' is not an http://, https:// or file:// URL"),
        ("v1,,,-o/tmp/owned.mp4", "url '-o/tmp/owned.mp4' is not an http://, https:// or file:// URL"),
    ],
    ids=["nul", "nul-in-file-url", "short-youtube-id", "long-youtube-id", "ftp-url", "option-as-url"],
)
def test_bad_sources_exit_2_naming_the_row(row: str, message: str, tmp_path: Path):
    """These became local paths (or a traceback) and failed late with exit 1."""
    code, said = status(tmp_path, f"video_id,path,youtube_id,url\nv0,a.mp4,,\n{row}\n")
    assert code == 2 and "m.csv, row 2:" in said and message in said, said


@pytest.mark.parametrize(
    ("kind", "value", "shown"),
    [("steps", "null", "None"), ("attributes", "{x: 1}", "{'x': 1}"), ("subtexts", "3.5", "3.5")],
)
def test_texts_that_are_not_strings_are_refused(kind: str, value: str, shown: str, tmp_path: Path):
    """They used to become the texts "None", "{'x': 1}" and "3.5"."""
    assert kind in TEXT_KINDS
    classes = f"classes:\n  - {{id: a, action: A, steps: [open, close]}}\n  - {{id: b, action: B, steps: [open], {kind}: [fine, {value}]}}\n"
    code, said = status(tmp_path, "video_id,path\nv1,a.mp4\n", classes)
    assert code == 2 and f"c.yaml, class #2 (b): an entry of '{kind}' is not a text (#2: {shown})" in said, said


def test_a_bom_hides_no_column(tmp_path: Path):
    """A UTF-8 BOM (Excel's "CSV UTF-8") used to rename the first column to '\\ufeffpath'."""
    classes_yaml, classes_json = tmp_path / "c.yaml", tmp_path / "c.json"
    classes_yaml.write_text(CLASSES, encoding="utf-8-sig")
    classes_json.write_text(json.dumps([{"id": "a", "action": "A", "steps": ["open", "close"]}]), encoding="utf-8-sig")
    classes = load_classes(classes_yaml)
    assert classes == load_classes(classes_json)
    manifests = {
        "m.csv": "path,video_id,label\nclip.mp4,v1,a\n",
        "m.jsonl": json.dumps({"path": "clip.mp4", "video_id": "v1", "label": "a"}) + "\n",
        "m.json": json.dumps([{"path": "clip.mp4", "video_id": "v1", "label": "a"}]),
    }
    for name, text in manifests.items():
        (tmp_path / name).write_text(text, encoding="utf-8-sig")
        [video] = load_manifest(tmp_path / name, classes)
        assert (video.video_id, video.source, video.label) == ("v1", str(tmp_path / "clip.mp4"), "a"), name


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_yaml_aliases_are_refused_in_classes_configurations_and_prompt_templates(tmp_path: Path):
    """486 bytes of nested aliases took 3 GB and 77 s; now any alias is refused as it is parsed."""
    code, said = status(tmp_path, "video_id,path\nv1,a.mp4\n", BILLION_LAUGHS + "classes: [{action: A, steps: *l8}]\n")
    assert code == 2 and "cannot parse classes file c.yaml: YAML aliases (*name) are not allowed" in said, said

    (tmp_path / "config.yaml").write_text(BILLION_LAUGHS)
    done = subprocess.run([*ACTALIGN, "config", "--config", "config.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "cannot parse configuration file config.yaml: YAML aliases" in " ".join(done.stderr.split()), done.stderr

    with pytest.raises(InputError, match="YAML aliases"):
        parse_template(BILLION_LAUGHS.encode(), "my.yaml")


def test_deep_json_nesting_is_an_input_error(tmp_path: Path):
    (tmp_path / "c.json").write_text("[" * 100_000)
    with pytest.raises(InputError, match="cannot parse classes file"):
        load_classes(tmp_path / "c.json")


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_twenty_thousand_classes_parse_with_the_c_loader(tmp_path: Path):
    """29 s with the pure-Python loader; libyaml's, when installed, is the base of the no-alias loader."""
    assert issubclass(NoAliasLoader, yaml.CSafeLoader) or not yaml.__with_libyaml__
    lines = (f"  - {{id: c{n}, action: Action {n}, domain: sport, steps: [{', '.join(f'step {k} of {n}' for k in range(5))}]}}\n" for n in range(20_000))
    path = tmp_path / "c.yaml"
    path.write_text("classes:\n" + "".join(lines))
    classes = load_classes(path)
    assert len(classes) == 20_000 and classes[-1].steps[-1] == "step 4 of 19999"
