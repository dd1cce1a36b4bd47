"""The pipeline benchmark runs end to end on a few videos, so that it does not rot.

Its timings are not checked (the machine's load decides them); its bookkeeping is:
both ratios are reported, and the unchanged re-run computed nothing new.
"""

from __future__ import annotations

import json

import pytest

from benchmarks import bench_pipeline

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_bench_pipeline_small(tmp_path, capsys):
    out = tmp_path / "bench.json"
    results = bench_pipeline.main(
        ["--videos", "12", "--shard-size", "4", "--warmup-videos", "0", "--server", "configured", "--json", str(out)]
    )
    printed = capsys.readouterr().out
    assert "UNTRAINED MODEL" in printed and "pipeline cold / plain loop" in printed and "re-run / cold run" in printed

    # Each ratio is the quotient of the wall times reported beside it, printed and written as computed.
    ratios, runs = results["ratios"], results["runs"]
    plain_mean = (runs["plain_before"]["wall_s"] + runs["plain_after"]["wall_s"]) / 2
    assert results["plain_mean_s"] == pytest.approx(plain_mean)
    assert ratios == pytest.approx({"pipeline_over_plain": runs["cold"]["wall_s"] / plain_mean, "rerun_over_cold": runs["rerun"]["wall_s"] / runs["cold"]["wall_s"]})
    assert f"= {ratios['pipeline_over_plain']:.3f} (goal <= 1.3)" in printed and f"= {ratios['rerun_over_cold']:.3f} (goal <= 0.15)" in printed
    assert json.loads(out.read_text())["ratios"] == ratios

    pairs = 12 * 6 * 2  # every video x all 6 classes x the 2 default scorers
    assert runs["plain_before"]["pairs"] == runs["plain_after"]["pairs"] == pairs
    cold, rerun = runs["cold"]["summary"], runs["rerun"]["summary"]
    assert (cold["n_videos"], cold["n_failed"], cold["decoded_frames"], cold["scored_pairs"]) == (12, 0, 12 * 12, pairs)
    assert (rerun["decoded_frames"], rerun["encoded_frames"], rerun["encoded_texts"], rerun["scored_pairs"]) == (0, 0, 0, 0)
    assert rerun["reused_pairs"] == pairs and rerun["reused_videos"] == 12
    assert runs["rerun"]["decode_stats"] == {"videos": 0, "frames": 0}
    # the timers saw the stages (functions that moved are listed in results["not_timed"] and printed)
    assert runs["cold"]["stages"]["acquire"]["calls"] == runs["cold"]["stages"]["score"]["calls"] == 3  # one per shard
    assert "report: queries and tables" in runs["rerun"]["stages"]

    import actalign.tasks.prefect_tasks

    assert not hasattr(actalign.tasks.prefect_tasks.acquire_videos, "__wrapped__")  # the timers are removed afterwards
