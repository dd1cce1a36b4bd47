"""Start-up of the commands a user types first, against bare Python start-up in the same run.

Run ``.venv/bin/python -m benchmarks.bench_startup [--repeat 3] [--skip-run]``.
Each command runs as a new process (the installed ``actalign`` script), ``--repeat``
times; the table shows the best wall time, the excess over ``python -c pass`` and
the ratio to it. The demo's workdir is made once with tiny-random (``status`` is
planned on it). The cold run is ``actalign demo --model tiny-random`` in a fresh
workdir with its own fresh Prefect home: it reports when the first line appeared,
the longest silence between two lines of output and the line before it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ACTALIGN = [str(Path(sys.executable).parent / "actalign")]


def best_time(argv: list[str], repeat: int, env: dict[str, str], expect: int = 0) -> float:
    """The fastest of ``repeat`` runs, seconds; an exit code other than ``expect`` stops the benchmark."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, env=env)
        times.append(time.perf_counter() - start)
        if done.returncode != expect:
            raise SystemExit(f"{' '.join(argv)} exited {done.returncode}, expected {expect}: {done.stderr[-2000:]}")
    return min(times)


def timed_lines(argv: list[str], env: dict[str, str]) -> tuple[float, list[tuple[float, str]]]:
    """Run ``argv``; (total seconds, [(seconds since start, line) for every line of stdout and stderr])."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1)
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append((time.perf_counter() - start, line.rstrip()))

    reader = threading.Thread(target=read)
    reader.start()
    code = process.wait()
    reader.join()
    total = time.perf_counter() - start
    if code not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} failed ({code}): {lines[-20:]}")
    return total, lines


def silences(total: float, lines: list[tuple[float, str]], top: int = 3) -> dict[str, object]:
    """When the first line came, and the ``top`` longest gaps between lines with the line each followed."""
    stamps = [0.0] + [t for t, _ in lines] + [total]
    texts = ["(start)"] + [text for _, text in lines]
    gaps = sorted(((stamps[i + 1] - stamps[i], texts[i]) for i in range(len(stamps) - 1)), reverse=True)[:top]
    return {
        "first_line_s": round(lines[0][0], 2) if lines else None,
        "longest_silences": [{"s": round(gap, 2), "after": after[-100:]} for gap, after in gaps],
        "total_s": round(total, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-run", action="store_true", help="skip the cold run of the demo")
    parser.add_argument("--actalign", help="the command to measure instead of the installed script, e.g. 'python -m cli.main' in an older checkout")
    args = parser.parse_args()
    actalign = args.actalign.split() if args.actalign else ACTALIGN

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory(prefix="actalign-bench-startup-") as tmp:
        demo = Path(tmp) / "demo"
        demo_env = {**env, "PREFECT_HOME": str(Path(tmp) / "prefect-demo")}
        subprocess.run([*actalign, "demo", "--model", "tiny-random", "--workdir", str(demo)], capture_output=True, env=demo_env, check=True)
        manifest, classes = demo / "demo-input" / "order" / "manifest.csv", demo / "demo-input" / "order" / "classes.yaml"
        inputs = ["--videos", str(manifest), "--classes", str(classes), "--model", "tiny-random", "--workdir", str(demo)]
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "actalign --help": [*actalign, "--help"],
            "actalign --bogus (an input error)": [*actalign, "--bogus"],
            'actalign sql "select 1"': [*actalign, "sql", "select 1", "--workdir", str(demo)],
            "actalign config": [*actalign, "config", *inputs],
            "actalign status (demo workdir)": [*actalign, "status", *inputs],
        }
        bare = None
        rows = []
        for label, argv in commands.items():
            seconds = best_time(argv, args.repeat, demo_env, expect=2 if "bogus" in label else 0)
            bare = seconds if bare is None else bare
            rows.append({"command": label, "best_s": round(seconds, 3), "over_python_s": round(seconds - bare, 3), "x_python": round(seconds / bare, 1)})
        print(f"{'command':40} {'best s':>8} {'+python s':>10} {'x python':>9}")
        for row in rows:
            print(f"{row['command']:40} {row['best_s']:8.2f} {row['over_python_s']:10.2f} {row['x_python']:9.1f}")
        result: dict[str, object] = {"commands": rows}
        if not args.skip_run:
            cold = Path(tmp) / "cold"
            cold_env = {**env, "PREFECT_HOME": str(Path(tmp) / "prefect-cold")}
            cold_env.pop("PREFECT_API_URL", None)
            total, lines = timed_lines([*actalign, "demo", "--model", "tiny-random", "--workdir", str(cold)], cold_env)
            result["cold_demo_run"] = silences(total, lines)
            print("cold demo run (tiny-random, fresh workdir and Prefect home):", json.dumps(result["cold_demo_run"]))
        shutil.rmtree(demo, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
