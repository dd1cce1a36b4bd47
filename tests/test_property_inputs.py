"""Generated hostile manifests and classes files against `actalign status` (hypothesis).

Whatever the ids, texts and paths, `status` answers with exit 0 (planned) or 2 (an input
error it explains), never a traceback, and writes nothing outside its workdir.
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from actalign.cli.main import app

HOSTILE_TEXT = st.one_of(
    st.sampled_from(["../../outside/x", "/outside/abs", "..", ".", "[/]", "[link=http://x]y", "<img src=x onerror=alert(1)>", "a|b", "x" * 300, "", " ", "\x00", "line\nbreak"]),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
)
SAFE_TEXT = st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True)
TEXT = st.one_of(*[SAFE_TEXT] * 12, HOSTILE_TEXT)  # mostly legal, so that many examples get as far as a plan
SOURCES = st.sampled_from(["video"] * 12 + ["../outside/v.mp4", "{outside}/v.mp4", "/dev/zero", "fifo", "file:///etc/passwd", "ftp://host/v.mp4", "-o/x", "v\x00.mp4", "https://127.0.0.1:9/v.mp4"])
CLASS = st.fixed_dictionaries({"id": TEXT, "action": TEXT, "steps": st.lists(st.one_of(*[TEXT] * 12, st.none(), st.integers()), min_size=1, max_size=3)})


@pytest.fixture(scope="module")
def video(demo_dataset: tuple[Path, Path]) -> Path:
    """A real video file of the demo set; the tiny model is built so that `status` plans for real."""
    from actalign.tiny_model import tiny_random_path

    tiny_random_path()
    return next(demo_dataset[0].parent.glob("videos/*.mp4"))


def files_outside(sandbox: Path, workdir: Path) -> set[Path]:
    return {path for path in sandbox.rglob("*") if workdir not in path.parents and path != workdir}


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(classes=st.lists(CLASS, min_size=1, max_size=3), data=st.data())
def test_status_on_hostile_inputs_exits_0_or_2_and_writes_only_its_workdir(video: Path, classes: list[dict], data: st.DataObject):
    labels = st.one_of(*[st.sampled_from([c["id"] for c in classes] + [""])] * 12, TEXT)  # mostly a class of the file
    rows = data.draw(st.lists(st.tuples(TEXT, SOURCES, labels), min_size=1, max_size=3))
    with tempfile.TemporaryDirectory(prefix="actalign-property-") as tmp:
        sandbox = Path(tmp)
        inputs, workdir, outside = sandbox / "in", sandbox / "work", sandbox / "outside"
        inputs.mkdir()
        outside.mkdir()
        os.mkfifo(inputs / "fifo")
        (inputs / "classes.yaml").write_text(yaml.safe_dump({"classes": classes}, allow_unicode=True), encoding="utf-8")
        with (inputs / "manifest.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["video_id", "path", "label"])
            for video_id, source, label in rows:
                path = str(video) if source == "video" else source.replace("{outside}", str(outside))
                writer.writerow([video_id, path, label])
        before = files_outside(sandbox, workdir)
        args = ["status", "--videos", str(inputs / "manifest.csv"), "--classes", str(inputs / "classes.yaml"), "--model", "tiny-random", "--workdir", str(workdir)]
        result = CliRunner().invoke(app, args)
        event(f"exit {result.exit_code}")  # --hypothesis-show-statistics: how many examples got as far as a plan
        assert result.exit_code in (0, 2), (result.exit_code, result.output, result.exception)
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert "Traceback" not in result.output
        assert files_outside(sandbox, workdir) == before
