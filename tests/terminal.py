"""A command run in a real pseudo-terminal of a given size, as a user's terminal shows it."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
from pathlib import Path


def run_in_terminal(argv: list[str | Path], columns: int, rows: int = 40, timeout: float = 120) -> tuple[int, str]:
    """(exit code, text) of ``argv`` on a ``columns``-wide pseudo-terminal, colour and cursor codes removed.
    The terminal inserts no line breaks: a long line arrives whole, as a terminal's copy would give it."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")} | {"TERM": "xterm", "NO_COLOR": "1"}
    proc = subprocess.Popen([str(a) for a in argv], stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    code = proc.wait(timeout=timeout)
    return code, re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode()).replace("\r\n", "\n")
