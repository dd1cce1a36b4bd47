"""actalign.actionatlas: the benchmark manifest in its real schema (Parquet and JSONL), validation, id-keyed joins."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actalign.actionatlas import (
    HF_DATASET,
    Question,
    _download_from_hub,
    class_id_for,
    load_actionatlas,
    parse_choices,
    parse_obfuscation,
    question_classes,
    video_specs,
)
from actalign.classes import ClassSpec
from actalign.errors import InputError

# Three questions shaped like ActionAtlas v1.0 rows: mixed types as the real data has them
# (timestamps as strings or numbers, the answer as an int or a string), the official
# frames_to_blur layout (frame number string -> detected texts with bounding_poly vertices).
BLUR = {
    "3": [
        {"description": "AXE", "bounding_poly": {"vertices": [[10, 20], [110, 20], [110, 60], [10, 60]]}},
        {"description": "KICK", "bounding_poly": {"vertices": [[120, 20], [200, 20], [200, 60], [120, 60]]}},
    ],
    "4": [{"description": "AXE", "bounding_poly": {"vertices": [[12, 21], [112, 21], [112, 61], [12, 61]]}}],
}


def _rows() -> list[dict[str, Any]]:
    return [
        {
            "id": "q-001",
            "youtube_id": "abcdefghijk",
            "start_timestamp": "12.34",
            "end_timestamp": "17.06",
            "domain": "Taekwondo",
            "action": "Axe kick",
            "question": "Which kick does the athlete in red perform?",
            "choices_str": "1. Axe kick\n2. Roundhouse kick\n3. Back kick\n4. Hook kick",
            "answer": 1,
            "choice_descriptions": ["heel down", "shin across", "backwards", "hooking heel"],
            "frames_to_blur": json.dumps(BLUR),
        },
        {
            "id": "q-002",
            "youtube_id": "ABCDEFGHIJ_",
            "start_timestamp": 3.0,
            "end_timestamp": 6.55,
            "domain": "taekwondo",
            "action": "Roundhouse kick",
            "question": "Which kick?",
            "choices_str": "1. Back kick\r\n2. Roundhouse kick\r\n\r\n3. Axe kick\r\n4. Spinning hook kick\r\n5. Push kick",
            "answer": "2",
            "choice_descriptions": ["a", "b", "c", "d", "e"],
            "frames_to_blur": "{}",
        },
        {
            "id": "q-003",
            "youtube_id": "-_abcdefghi",
            "start_timestamp": "100",
            "end_timestamp": "104.2",
            "domain": "Figure skating",
            "action": "Biellmann spin",
            "question": "Which spin?",
            "choices_str": "2) Camel spin\n1) Biellmann spin\n3) Sit spin\n4) Layback spin",
            "answer": "1",
            "choice_descriptions": ["w", "x", "y", "z"],
            "frames_to_blur": None,
        },
    ]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def _write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    columns = {key: [r.get(key) for r in rows] for key in rows[0]}
    types = {"start_timestamp": pa.string(), "end_timestamp": pa.string(), "answer": pa.string()}  # as the hub stores them
    table = pa.table(
        {k: pa.array([None if v is None else str(v) for v in vals], types[k]) if k in types else pa.array(vals) for k, vals in columns.items()}
    )
    pq.write_table(table, path)
    return path


@pytest.fixture(params=["parquet", "jsonl"])
def manifest(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "parquet":
        return _write_parquet(tmp_path / "actionatlas.parquet", _rows())
    return _write_jsonl(tmp_path / "actionatlas.jsonl", _rows())


def test_load_real_schema(manifest: Path) -> None:
    questions = load_actionatlas(manifest)
    assert [q.question_id for q in questions] == ["q-001", "q-002", "q-003"]
    first, second, third = questions
    assert isinstance(first, Question)
    assert (first.youtube_id, first.start_s, first.end_s) == ("abcdefghijk", 12.3, 17.1)  # rounded to 0.1 s as the official segments
    assert (second.start_s, second.end_s) == (3.0, 6.5)  # Python's round(6.55, 1), as the official scripts compute it
    assert first.choices == ("Axe kick", "Roundhouse kick", "Back kick", "Hook kick")
    assert first.answer_index == 0 and first.choices[first.answer_index] == first.action
    assert second.choices == ("Back kick", "Roundhouse kick", "Axe kick", "Spinning hook kick", "Push kick")
    assert second.answer_index == 1 and second.choices[1] == "Roundhouse kick"
    assert third.choices == ("Biellmann spin", "Camel spin", "Sit spin", "Layback spin")  # ordered by number
    assert third.answer_index == 0
    assert first.obfuscation == {
        3: [[(10.0, 20.0), (110.0, 20.0), (110.0, 60.0), (10.0, 60.0)], [(120.0, 20.0), (200.0, 20.0), (200.0, 60.0), (120.0, 60.0)]],
        4: [[(12.0, 21.0), (112.0, 21.0), (112.0, 61.0), (12.0, 61.0)]],
    }
    assert second.obfuscation == {} and third.obfuscation == {}
    assert first.question.startswith("Which kick") and first.choice_descriptions[0] == "heel down"


def test_parquet_struct_and_alias_column(tmp_path: Path) -> None:
    """frames_to_blur as a Parquet struct (one nullable field per frame number) under the name frames_to_obfuscate."""
    rows = _rows()
    for row in rows:
        del row["frames_to_blur"]
        for key in ("start_timestamp", "end_timestamp", "answer"):
            row[key] = str(row[key])
    rows[0]["frames_to_obfuscate"] = BLUR
    rows[1]["frames_to_obfuscate"] = {"7": [{"description": "X", "bounding_poly": {"vertices": [{"x": 5}, {"x": 9, "y": 3}, {"y": 8}]}}]}
    rows[2]["frames_to_obfuscate"] = None
    path = tmp_path / "struct.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    assert pa.types.is_struct(pq.read_schema(path).field("frames_to_obfuscate").type)
    first, second, third = load_actionatlas(path)
    assert sorted(first.obfuscation) == [3, 4] and len(first.obfuscation[3]) == 2
    assert second.obfuscation == {7: [[(5.0, 0.0), (9.0, 3.0), (0.0, 8.0)]]}  # Google Vision omits zero coordinates
    assert third.obfuscation == {}


def test_parse_obfuscation_layouts() -> None:
    square = [[0, 0], [4, 0], [4, 4], [0, 4]]
    expected = {2: [[(0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (0.0, 4.0)]]}
    assert parse_obfuscation({"2": [square]}) == expected
    assert parse_obfuscation({2: square}) == expected  # a single polygon given directly
    assert parse_obfuscation([{"frame": 2, "polygons": [square]}]) == expected
    assert parse_obfuscation([[2, [square]]]) == expected
    assert parse_obfuscation([[], [square]]) == expected  # one entry per frame, from frame 1
    assert parse_obfuscation(json.dumps({"2": [{"bounding_poly": {"vertices": square}}]})) == expected
    for empty in (None, "", "{}", "[]", {}, [], float("nan")):
        assert parse_obfuscation(empty) == {}
    with pytest.raises(InputError, match="frame numbers start at 1"):
        parse_obfuscation({"0": [square]})
    with pytest.raises(InputError, match="not valid JSON"):
        parse_obfuscation("{not json")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1. Axe kick\n2. Roundhouse kick", ("Axe kick", "Roundhouse kick")),
        ("1) Axe kick\n2) Roundhouse kick", ("Axe kick", "Roundhouse kick")),
        ("\n\n1. A\n\n\n2. B\n\n", ("A", "B")),
        ("1. A\r\n2. B\r\n", ("A", "B")),
        ("1. A\r2. B", ("A", "B")),
        ("3. C\n1. A\n2. B", ("A", "B", "C")),
        ("  1 .  Spaced out  \n 2: colon\n3 - dash", ("Spaced out", "colon", "dash")),
        ("1. Salchow (jump)\n2. 3.5 turns", ("Salchow (jump)", "3.5 turns")),
    ],
)
def test_parse_choices(text: str, expected: tuple[str, ...]) -> None:
    assert parse_choices(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("\n \n", "empty"),
        ("1. A\n3. C", r"missing \[2\]"),
        ("2. B\n3. C", r"missing \[1\]"),
        ("1. A\n1. B", "appears twice"),
        ("1. A\nB", "does not start with a number"),
        ("1. A\n2. ", "empty"),
        ("1. A\n2. a", "same choice"),
    ],
)
def test_parse_choices_errors(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_choices(text)


def _expect_row_error(tmp_path: Path, rows: list[dict[str, Any]], row: int, message: str, fmt: str = "jsonl") -> None:
    path = _write_jsonl(tmp_path / "bad.jsonl", rows) if fmt == "jsonl" else _write_parquet(tmp_path / "bad.parquet", rows)
    with pytest.raises(InputError, match=message) as info:
        load_actionatlas(path)
    assert f"row {row}" in str(info.value) and str(path) in str(info.value)


def test_missing_column_names_the_row(tmp_path: Path) -> None:
    rows = _rows()
    del rows[1]["answer"]
    _expect_row_error(tmp_path, rows, 2, r"missing columns \['answer'\]")


def test_missing_column_in_parquet(tmp_path: Path) -> None:
    rows = _rows()
    for row in rows:
        del row["choices_str"]
    path = _write_parquet(tmp_path / "bad.parquet", rows)
    with pytest.raises(InputError, match=r"missing columns \['choices_str'\]"):
        load_actionatlas(path)


def test_empty_choices(tmp_path: Path) -> None:
    rows = _rows()
    rows[2]["choices_str"] = "  \n"
    _expect_row_error(tmp_path, rows, 3, "no choices")


@pytest.mark.parametrize("answer", [0, 5, "7", "-1"])
def test_answer_out_of_range(tmp_path: Path, answer: Any) -> None:
    rows = _rows()
    rows[0]["answer"] = answer
    message = "out of range" if answer != "-1" else "choice number"
    _expect_row_error(tmp_path, rows, 1, message)


def test_end_before_start(tmp_path: Path) -> None:
    rows = _rows()
    rows[1]["end_timestamp"] = "2.5"
    _expect_row_error(tmp_path, rows, 2, "not after start", fmt="parquet")


def test_not_a_number(tmp_path: Path) -> None:
    rows = _rows()
    rows[2]["start_timestamp"] = "soon"
    _expect_row_error(tmp_path, rows, 3, "start_timestamp must be a number")


def test_duplicate_ids(tmp_path: Path) -> None:
    rows = _rows()
    rows[2]["id"] = "q-001"
    _expect_row_error(tmp_path, rows, 3, r"duplicate id 'q-001' \(first at row 1\)", fmt="parquet")


def test_bad_youtube_id(tmp_path: Path) -> None:
    rows = _rows()
    rows[1]["youtube_id"] = "not an id"
    _expect_row_error(tmp_path, rows, 2, "YouTube id")


def test_classes_are_joined_by_question_id_and_index(manifest: Path) -> None:
    questions = load_actionatlas(manifest)
    joined = question_classes(questions)
    taekwondo = {spec.action.casefold() for spec in joined.classes if spec.domain.casefold() == "taekwondo"}
    # "Taekwondo"/"taekwondo" and the same kicks in both questions share classes.
    assert taekwondo == {"axe kick", "roundhouse kick", "back kick", "hook kick", "spinning hook kick", "push kick"}
    assert len(joined.classes) == 6 + 4
    assert all(isinstance(spec, ClassSpec) and spec.steps is None for spec in joined.classes)
    assert len({spec.class_id for spec in joined.classes}) == len(joined.classes)

    axe = class_id_for("Taekwondo", "Axe kick")
    assert joined.candidates[("q-001", 0)] == axe  # choice 1 of q-001
    assert joined.candidates[("q-002", 2)] == axe  # choice 3 of q-002: the same class at another position
    assert joined.labels["q-001"] == axe
    assert joined.labels["q-002"] == class_id_for("taekwondo", "Roundhouse kick") == joined.candidates[("q-002", 1)]
    assert joined.labels["q-003"] == class_id_for("Figure skating", "Biellmann spin")
    assert joined.candidate_ids("q-002") == tuple(joined.candidates[("q-002", k)] for k in range(5))
    for question in questions:
        assert joined.labels[question.question_id] == joined.candidates[(question.question_id, question.answer_index)]

    videos = video_specs(questions, joined)
    assert [v.video_id for v in videos] == ["q-001", "q-002", "q-003"]
    assert videos[0].source == "abcdefghijk" and videos[0].start_s == 12.3
    assert videos[1].label in videos[1].candidates and videos[1].candidates[1] == videos[1].label


def test_class_ids_are_stable_and_normalised() -> None:
    assert class_id_for("Taekwondo", "Axe kick") == class_id_for("taekwondo", "axe   kick")
    assert class_id_for("Taekwondo", "Axe kick").startswith("taekwondo--axe-kick-")
    assert class_id_for("Gymnastics", "Spin") != class_id_for("Figure skating", "Spin")
    assert class_id_for("Dance", "1/2 turn") != class_id_for("Dance", "1-2 turn")  # same slug, different class
    # Fixed for a given pair across processes and versions: it ends up in stored files.
    assert class_id_for("Taekwondo", "Axe kick") == "taekwondo--axe-kick-" + __import__("hashlib").sha256(
        "taekwondo\x1faxe kick".encode()
    ).hexdigest()[:6]


def test_two_choices_of_one_question_are_the_same_class() -> None:
    question = Question("q", "abcdefghijk", 0.0, 1.0, "Dance", "Turn", ("Turn", "turn  "), 0)
    with pytest.raises(InputError, match="question q: choices 1 and 2 are the same class"):
        question_classes([question])


def test_hub_offline_fails_fast_with_a_suggestion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(InputError) as info:
        _download_from_hub(cache_dir=tmp_path / "empty-cache")
    assert time.perf_counter() - started < 5
    assert HF_DATASET in str(info.value) and "--manifest" in str(info.value)


def test_load_without_source_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    try:
        questions = load_actionatlas(None)
    except InputError as exc:
        assert HF_DATASET in str(exc) and "--manifest" in str(exc)
    else:  # a machine with the dataset in its hub cache
        assert len(questions) == 934


def test_missing_or_unsupported_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_actionatlas(tmp_path / "nope.parquet")
    (tmp_path / "m.xlsx").write_text("id\n1\n")
    with pytest.raises(InputError, match="unsupported type"):
        load_actionatlas(tmp_path / "m.xlsx")
    (tmp_path / "m.csv").write_text("id\n1\n")  # a CSV copy reads, and names what it lacks
    with pytest.raises(InputError, match=r"row 1: missing columns \['youtube_id'"):
        load_actionatlas(tmp_path / "m.csv")
    (tmp_path / "broken.jsonl").write_text('{"id": 1}\n{oops\n')
    with pytest.raises(InputError, match="line 2: not valid JSON"):
        load_actionatlas(tmp_path / "broken.jsonl")
