"""Suggest the valid name a user probably meant, for error messages that name the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(names: Iterable[str], valid: Iterable[str]) -> str:
    """"; did you mean 'x'?" for the valid names nearest to the unknown ones (difflib), or ""."""
    choices = [str(name) for name in valid]
    matches = dict.fromkeys(match for name in names for match in difflib.get_close_matches(str(name), choices, n=2, cutoff=0.6))
    return f"; did you mean {' or '.join(map(repr, matches))}?" if matches else ""
