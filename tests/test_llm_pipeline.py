"""LLM-written scripts through the whole pipeline: a loopback OpenAI-compatible server, the real
openai client, a real Prefect flow. Counts prove what a prompt edit recomputes and what it reuses."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb
import pytest
import yaml
from llm_server import LLMServer, Reply, answer, candidates_of, good, steps_for

import actalign
from actalign.config import RunConfig
from actalign.flows.pipeline import run_pipeline
from actalign.llm import LLMSettings

pytestmark = pytest.mark.usefixtures("prefect_harness")
SECRET = "sk-test-never-stored-0123456789"


@pytest.fixture
def inputs(demo_dataset, tmp_path) -> tuple[Path, Path]:
    """The demo videos with three different candidate sets, and classes of which one keeps hand-written steps."""
    manifest, classes = demo_dataset
    entries = yaml.safe_load(classes.read_text())["classes"]
    for entry in entries[1:]:
        for kind in ("steps", "attributes", "subtexts"):
            del entry[kind]
    step_less = tmp_path / "classes.yaml"
    step_less.write_text(yaml.safe_dump({"classes": entries}))
    rows = list(csv.DictReader(open(manifest)))
    ids = [e["id"] for e in entries]
    sets = [ids[:4], ids[2:], ids[:2] + ids[4:]]
    for number, row in enumerate(rows):
        row["path"] = str(manifest.parent / row["path"])
        candidates = sets[number % 3] if row["label"] in sets[number % 3] else [row["label"], *sets[number % 3][1:]]
        row["candidates"] = "|".join(candidates)
    out = tmp_path / "manifest.csv"
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out, step_less


def candidate_sets(manifest: Path) -> list[list[str]]:
    return [row["candidates"].split("|") for row in csv.DictReader(open(manifest))]


def config(inputs, workdir: Path, server: LLMServer, prompt: str = "context-rich") -> RunConfig:
    llm = LLMSettings(base_url=server.base_url, timeout=5, backoff_initial=0.01, requests_per_minute=None)
    return RunConfig(videos=inputs[0], classes=inputs[1], workdir=workdir, model="tiny-random", provider="openai", llm=llm, prompts={"steps": prompt})


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_prompt_edit_regenerates_scripts_and_reuses_frames(inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    workdir = tmp_path / "work"
    with LLMServer(good(5)) as server:
        first = run_pipeline(config(inputs, workdir, server))
        sent_first = len(server.calls)
        again = run_pipeline(config(inputs, workdir, server))
        sent_again = len(server.calls) - sent_first

        edited = tmp_path / "context-rich-edited.yaml"
        edited.write_text((Path(actalign.__file__).parent / "prompts" / "context-rich.yaml").read_text() + "\n# tightened wording\n")
        after_edit = run_pipeline(config(inputs, workdir, server, prompt=str(edited)))
        sent_after_edit = len(server.calls) - sent_first - sent_again
        prompts = [call.first_user for call in server.calls]

    assert first.state == "completed" and first.n_failed == 0
    assert sent_first == first.llm_requests == 5  # one per distinct candidate set, the hand-written class left out
    # The class with hand-written steps is never sent to the LLM.
    hand_written = yaml.safe_load(inputs[1].read_text())["classes"][0]["action"]
    hand_written_id = yaml.safe_load(inputs[1].read_text())["classes"][0]["id"]
    assert not any(hand_written in prompt for prompt in prompts)
    assert first.encoded_frames == 72 and first.encoded_texts > 0

    assert (sent_again, again.llm_requests, again.scripts_generated) == (0, 0, 0)
    assert (again.scored_pairs, again.reused_pairs) == (0, first.scored_pairs)
    assert (again.encoded_texts, again.encoded_frames, again.decoded_frames) == (0, 0, 0)

    assert sent_after_edit == sent_first and after_edit.llm_requests == sent_first
    assert after_edit.scripts_generated == first.scripts_generated - 1  # all but the hand-written one
    assert (after_edit.encoded_frames, after_edit.decoded_frames) == (0, 0)
    # The loopback LLM writes the same steps for the new template: new scripts and embedding files under
    # new keys, but the identical texts come from the text cache, not the encoder.
    assert after_edit.encoded_texts == 0
    # Only the pairs whose script changed are re-scored: every pair but those of the hand-written class.
    hand_written_pairs = 2 * sum(hand_written_id in c for c in candidate_sets(inputs[0]))
    assert (after_edit.scored_pairs, after_edit.reused_pairs) == (first.scored_pairs - hand_written_pairs, hand_written_pairs)

    with duckdb.connect(str(workdir / "actalign.duckdb"), read_only=True) as con:
        per_run = con.execute("SELECT run_id, count(*), sum(prompt_tokens) FROM llm_requests GROUP BY 1 ORDER BY 1").fetchall()
        assert [n for _, n, _ in per_run] == [sent_first, sent_first]  # the unchanged re-run sent nothing
        assert con.execute("SELECT count(DISTINCT template_hash) FROM scripts WHERE provider = 'openai'").fetchone()[0] == 2
        embed_files = con.execute("SELECT count(DISTINCT embed_key) FROM step_embeddings").fetchone()[0]
        assert embed_files == first.scripts_generated + after_edit.scripts_generated
        assert con.execute("SELECT count(*) FROM predictions WHERE run_id = ?", [after_edit.run_id]).fetchone()[0] == 12
        # The run's plan said so before any work: the LLM requests are stale because the template changed.
        stale = con.execute(
            "SELECT stage, count(*), list(DISTINCT reason) FROM freshness WHERE run_id = ? AND state = 'stale' GROUP BY 1 ORDER BY 1", [after_edit.run_id]
        ).fetchall()
        assert [(stage, n) for stage, n, _ in stale] == [("score", after_edit.scored_pairs), ("scripts", sent_first), ("step_embeddings", after_edit.scripts_generated)]
        assert all(reason.startswith("steps.template ") or reason.startswith("steps.template_hash ") for reason in stale[1][2][0].split("; "))
    leaked = [p for p in workdir.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaked == []


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_a_failed_question_fails_its_videos_only(inputs, tmp_path):
    """An LLM that never writes one candidate's script: its questions fail with the raw answers kept,
    their videos fail at scoring, and the other questions' videos are scored."""
    target = yaml.safe_load(inputs[1].read_text())["classes"][-1]["action"]

    def responder(call):
        listed = candidates_of(call)
        entries = [{"index": i, "action": a, "steps": steps_for(a)} for i, a in enumerate(listed, start=1) if a != target]
        return Reply(answer(entries))

    with LLMServer(responder) as server:
        summary = run_pipeline(config(inputs, tmp_path / "work", server))
    assert summary.state == "completed_with_failures"
    with duckdb.connect(str(tmp_path / "work" / "actalign.duckdb"), read_only=True) as con:
        failed = con.execute("SELECT actions, error_class, raw_response, requests FROM llm_requests WHERE state = 'failed'").fetchall()
        assert failed and all(target in actions and err == "InvalidAnswerError" and raw and n == 3 for actions, err, raw, n in failed)
        missing = con.execute("SELECT count(*) FROM status WHERE stage = 'score' AND error_class = 'MissingScriptError'").fetchone()[0]
        scored = con.execute("SELECT count(DISTINCT video_id) FROM scores").fetchone()[0]
        assert missing > 0 and scored > 0 and missing + scored == 6


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_attributes_and_storyboard_texts_are_scripts_like_any_other(inputs, tmp_path):
    """Scorers that need attribute keywords and storyboard sub-texts get them from the LLM, each kind with
    its own template, stored and keyed like steps; an unchanged re-run asks for nothing."""
    def responder(call):
        prompt, listed = call.first_user, candidates_of(call)
        if "attribute keywords" in prompt:  # at most 4 words each
            texts = [[f"keyword {k} of {i}" for k in range(8)] for i in range(len(listed))]
        elif "This action is" in prompt:
            texts = [[f"This action is {a}, view {k}" for k in range(4)] for a in listed]
        else:
            texts = [steps_for(a) for a in listed]
        return Reply(answer([{"index": i, "action": a, "steps": t} for i, (a, t) in enumerate(zip(listed, texts), start=1)]))

    scorers = ("mean-pool", "actalign", "attribute-saliency", "storyboard")
    with LLMServer(responder) as server:
        settings = config(inputs, tmp_path / "work", server).model_dump() | {"scorers": scorers}
        first = run_pipeline(RunConfig(**settings))
        again = run_pipeline(RunConfig(**settings))
        prompts = [call.first_user for call in server.calls]
    assert first.state == "completed" and first.llm_requests == 3 * 5  # 5 candidate sets x 3 kinds of text
    assert sum("attribute keywords" in p for p in prompts) == 5 and sum("This action is" in p for p in prompts) == 5
    assert (again.llm_requests, again.encoded_texts) == (0, 0)
    with duckdb.connect(str(tmp_path / "work" / "actalign.duckdb"), read_only=True) as con:
        kinds = con.execute("SELECT kind, count(DISTINCT class_id) FROM scripts GROUP BY 1 ORDER BY 1").fetchall()
        assert kinds == [("attributes", 6), ("steps", 6), ("subtexts", 6)]
        per_scorer = con.execute("SELECT scorer, count(*) FROM scores WHERE run_id = ? GROUP BY 1 ORDER BY 1", [first.run_id]).fetchall()
        assert [s for s, _ in per_scorer] == sorted(scorers) and len({n for _, n in per_scorer}) == 1
