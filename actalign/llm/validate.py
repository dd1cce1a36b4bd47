"""Parse and validate an LLM's answer: JSON extraction, candidate matching, step checks.

The answer has the form ``{"scripts": [{"index": 1, "action": "...",
"steps": ["...", ...]}, ...]}`` with the candidates numbered from 1 as listed
in the prompt. Every candidate must map back to *its own* index even when the
model renames, re-cases, abbreviates or reorders it; a candidate left without
a script is an error, never silently dropped (the ActAlign reference scripts
shifted the answer index that way).

Matching, in order, each step only for the entries still unmatched:

1. the entry's ``index`` when its name agrees with that candidate or matches
   no candidate at all (a renamed candidate keeps its number);
2. the name, exactly, case-folded or normalised (accents and punctuation
   removed, then spaces too: "Lay-back spin" -> "Layback spin"); a name that matches a *different* candidate than the
   index wins over the index, since the steps were written for the name;
3. the entry's index when it was not used by step 2;
4. an abbreviation: each word of the entry abbreviates (same first letter,
   letters in order) a word of the candidate, in order ("Dbl axel" ->
   "Double Axel"), and exactly one candidate qualifies;
5. a fuzzy match (``difflib`` ratio of the normalised names) that is above
   ``FUZZY_CUTOFF`` and beats every other candidate by ``FUZZY_MARGIN``.

Steps 4 and 5 compare with *all* candidates, so a name closer to an already
matched candidate is reported as a duplicate instead of being handed to the
one that is left. Two entries for one candidate, or an entry that fits
several candidates equally, is an error sent back to the model rather than a
guess.
"""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

FUZZY_CUTOFF = 0.6
FUZZY_MARGIN = 0.1
# "1. ", "2) ", "3: ", "Step 4: ", "- ", "* ": but not "2.5 somersaults" or "3-point turn".
_ENUMERATOR = re.compile(r"^\s*(?:step\s*\d+\s*[.):\-]?\s+|\d{1,2}\s*[.):]\s+|[-*\u2022]\s+)", re.IGNORECASE)


class AnswerError(ValueError):
    """The answer cannot be used; the message is written to be sent back to the model."""


class AnswerParseError(AnswerError):
    """The answer is not (or does not contain) a JSON object."""


class AnswerValidationError(AnswerError):
    """The JSON does not give every candidate a valid script."""


def parse_json_answer(text: str | None) -> Any:
    """The JSON object in an answer: the whole text, else a fenced block, else the outermost braces."""
    if text is None or not text.strip():
        raise AnswerParseError("the answer is empty")
    candidates = [text.strip()]
    fenced = re.findall(r"```(?:json)?\s*(.*?)```", text, flags=re.DOTALL | re.IGNORECASE)
    candidates.extend(block.strip() for block in fenced)
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    first_error: json.JSONDecodeError | None = None
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except json.JSONDecodeError as exc:
            first_error = first_error or exc
    raise AnswerParseError(f"the answer is not valid JSON ({first_error})")


def normalise_name(name: str) -> str:
    """Casefold, strip accents, turn punctuation into spaces, collapse spaces."""
    decomposed = unicodedata.normalize("NFKD", name)
    stripped = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(re.sub(r"[^0-9a-z]+", " ", stripped.casefold()).split())


def clean_step(step: str) -> str:
    """Collapse whitespace and drop a leading enumerator ("1.", "Step 2:", "-")."""
    return " ".join(_ENUMERATOR.sub("", step, count=1).split())


def _is_step_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _entries(data: Any) -> list[dict[str, Any]]:
    """The answer's script objects; also accepts the common variants {"name": [steps], ...} and a lone script."""
    if isinstance(data, dict):
        for field in ("scripts", "candidates", "actions", "answers"):
            if isinstance(data.get(field), (list, dict)):
                data = data[field]
                break
        else:
            if isinstance(data.get("steps"), list):  # a lone script object
                data = [data]
    if isinstance(data, dict) and data and all(_is_step_list(value) for value in data.values()):
        data = [{"action": name, "steps": steps} for name, steps in data.items()]  # {"name": [steps]}
    if not isinstance(data, list):
        raise AnswerValidationError('expected a JSON object {"scripts": [{"index": ..., "action": ..., "steps": [...]}]}')
    entries = [entry for entry in data if isinstance(entry, dict)]
    if len(entries) != len(data):
        raise AnswerValidationError('every item of "scripts" must be an object with "index", "action" and "steps"')
    return entries


def _index(entry: dict[str, Any], count: int) -> int | None:
    value = entry.get("index")
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and 1 <= value <= count:
        return value - 1
    return None


def _name(entry: dict[str, Any]) -> str:
    for field in ("action", "name", "candidate"):
        if isinstance(entry.get(field), str):
            return entry[field]
    return ""


def _exact_match(name: str, actions: Sequence[str]) -> int | None:
    """The one candidate equal to ``name`` exactly, case-folded or normalised; None if none or several."""
    for key in (lambda s: s, str.casefold, normalise_name, lambda s: normalise_name(s).replace(" ", "")):
        target = key(name)
        if not target:
            return None
        hits = [i for i, action in enumerate(actions) if key(action) == target]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            return None
    return None


def _abbreviates(short: str, word: str) -> bool:
    if not short or not word or short[0] != word[0]:
        return False
    position = 0
    for char in short:
        position = word.find(char, position)
        if position < 0:
            return False
        position += 1
    return True


def _is_abbreviation(name: str, action: str) -> bool:
    """Every word of ``name`` abbreviates a word of ``action``, in order (words may be skipped)."""
    short, long = normalise_name(name).split(), normalise_name(action).split()
    if not short or short == long:
        return False
    position = 0
    for word in short:
        while position < len(long) and not _abbreviates(word, long[position]):
            position += 1
        if position == len(long):
            return False
        position += 1
    return True


def _fuzzy_match(name: str, actions: Sequence[str]) -> int | None:
    target = normalise_name(name)
    if not target:
        return None
    ratios = sorted(
        ((difflib.SequenceMatcher(None, target, normalise_name(action)).ratio(), i) for i, action in enumerate(actions)),
        reverse=True,
    )
    best, index = ratios[0]
    second = ratios[1][0] if len(ratios) > 1 else 0.0
    if best >= FUZZY_CUTOFF and best - second >= FUZZY_MARGIN:
        return index
    return None


def match_candidates(entries: Sequence[dict[str, Any]], actions: Sequence[str]) -> tuple[dict[int, int], list[str]]:
    """Map answer entries to candidate positions: ``({candidate position: entry position}, problems)``.

    ``problems`` lists duplicates and ambiguous or unmatched entries, in words the model can act on.
    """
    count = len(actions)
    assigned: dict[int, int] = {}  # candidate -> entry
    done: set[int] = set()
    problems: list[str] = []

    def assign(entry: int, candidate: int) -> None:
        done.add(entry)
        if candidate in assigned:
            problems.append(f"two scripts were given for candidate {candidate + 1} ({actions[candidate]!r}); give exactly one")
        else:
            assigned[candidate] = entry

    indexes = [_index(entry, count) for entry in entries]
    names = [_name(entry) for entry in entries]
    exact = [_exact_match(name, actions) for name in names]
    for e in range(len(entries)):  # 1. the index, where the name agrees or names no candidate
        if indexes[e] is not None and exact[e] in (None, indexes[e]):
            if indexes[e] not in assigned:
                assign(e, indexes[e])
    for e in range(len(entries)):  # 2. an exact / case-folded / normalised name
        if e not in done and exact[e] is not None:
            assign(e, exact[e])
    for e in range(len(entries)):  # 3. an index not consumed by a name
        if e not in done and indexes[e] is not None and indexes[e] not in assigned:
            assign(e, indexes[e])
    for stage in ("abbreviation", "fuzzy"):  # 4-5. only over the candidates still open
        for e in range(len(entries)):
            if e in done:
                continue
            if stage == "abbreviation":
                hits = [c for c, action in enumerate(actions) if _is_abbreviation(names[e], action)]
                candidate = hits[0] if len(hits) == 1 else None
            else:
                candidate = _fuzzy_match(names[e], actions)
            if candidate is not None:
                assign(e, candidate)
    for e in range(len(entries)):
        if e not in done and len(assigned) < count:
            problems.append(f"the script named {names[e]!r} matches no candidate unambiguously; copy the candidate's name exactly")
    return assigned, problems


def check_steps(raw_steps: Any, action: str, *, min_steps: int, max_steps: int, max_words: int | None) -> tuple[tuple[str, ...], list[str]]:
    """Cleaned steps and the problems with them (count, empty, duplicate, too long)."""
    if not isinstance(raw_steps, list) or not all(isinstance(step, str) for step in raw_steps):
        return (), [f"the steps of {action!r} must be a JSON list of strings"]
    steps = tuple(clean_step(step) for step in raw_steps)
    problems = []
    if any(not step for step in steps):
        problems.append(f"{action!r} has an empty step; write every step out")
    seen: set[str] = set()
    for step in steps:
        key = normalise_name(step)
        if step and key in seen:
            problems.append(f"{action!r} repeats the step {step!r}; make each step distinct")
        seen.add(key)
    if not min_steps <= len(steps) <= max_steps:
        wanted = f"exactly {min_steps}" if min_steps == max_steps else f"{min_steps} to {max_steps}"
        problems.append(f"{action!r} has {len(steps)} steps; it needs {wanted}")
    if max_words is not None:
        for number, step in enumerate(steps, start=1):
            if len(step.split()) > max_words:
                problems.append(f"step {number} of {action!r} has {len(step.split())} words; at most {max_words} are allowed")
    return steps, problems


def validate_answer(
    data: Any, actions: Sequence[str], *, min_steps: int, max_steps: int, max_words: int | None
) -> tuple[tuple[str, ...], ...]:
    """The steps of every candidate, in candidate order; AnswerValidationError listing all problems otherwise."""
    entries = _entries(data)
    assigned, problems = match_candidates(entries, actions)
    result: list[tuple[str, ...]] = []
    for position, action in enumerate(actions):
        if position not in assigned:
            problems.append(f"candidate {position + 1} ({action!r}) has no script")
            result.append(())
            continue
        steps, step_problems = check_steps(
            entries[assigned[position]].get("steps"), action, min_steps=min_steps, max_steps=max_steps, max_words=max_words
        )
        problems.extend(step_problems)
        result.append(steps)
    if problems:
        raise AnswerValidationError("; ".join(dict.fromkeys(problems)))
    return tuple(result)
