"""The soak (issue 9): a short run of `dimgestor bench soak` through the real nodes, and its checks shown to catch
what they look for (a traceback, a memory leak; the URDF-limit check it uses is pinned in test_limit_check.py), so a
clean run means something."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from dimgestor_ros.bench.soak import NODES, memory_drift, read_proc, scan_log

from conftest import REPO

pytestmark = pytest.mark.timeout(240)

MINUTES = 0.6  # 36 s of speech: about 15 s through both nodes on 2 cores, plus their start
SUMMARY_KEYS = {"benchmark", "schema", "command", "machine", "settings", "method", "audio", "wall_seconds",
                "started_utc", "ended_utc", "exit_codes", "failure", "samples", "stream", "memory", "cpu",
                "latency_ms", "timestamp_drift_frames", "robot_limits", "log", "acceptance"}
SAMPLE_KEYS = {"wall_s", "audio_s", "robot_audio_s", "hops", "robot_trajectories", "sim_s", "stamp_drift_frames_max",
               "robot_drift_frames_max", "out_of_limits", "diagnostics", *NODES}


def test_short_soak_through_the_real_nodes_meets_the_acceptance_figures(tmp_path):
    """36 s of speech through the gesture and retargeting nodes (dimgestor-launch's command lines), time-compressed:
    the summary, the per-sample log, the nodes' log and the markdown exist with their documented keys; every frame
    arrived with stamps that do not drift, every hop was retargeted once and the robot timeline follows the audio,
    the robot faded home at the end, no command left the URDF limits, no traceback or error line, memory flat after
    the warm-up, both nodes exited 0."""
    out, samples, doc, logs = (tmp_path / name for name in ("soak.json", "samples.jsonl", "soak.md", "nodes.log"))
    command = [sys.executable, "-m", "dimgestor_ros.bench", "soak", "--minutes", str(MINUTES), "--threads", "1",
               "--sample-interval", "0.5", "--out", str(out), "--samples", str(samples), "--doc", str(doc),
               "--logs", str(logs)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "acceptance: PASSED" in result.stdout

    summary = json.loads(out.read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["benchmark"] == "soak" and summary["settings"]["minutes"] == MINUTES
    assert summary["exit_codes"] == {"gesture_node": 0, "retarget_node": 0} and summary["failure"] == ""

    stream = summary["stream"]
    audio_frames = MINUTES * 60 * 30
    assert stream["frames"] == pytest.approx(audio_frames, abs=1)  # every frame of the audio, none twice
    assert stream["hops"] == pytest.approx(audio_frames / 15, abs=1)
    assert stream["hops_out_of_order"] == 0 and stream["clock_gate_timeouts"] == 0
    # Every hop passed on and answered with one robot trajectory, at its (simulated) paced moment; then the
    # retargeting node held and faded home on its own (trajectories that answer no hop).
    assert stream["hops_passed_on"] == stream["robot_answers"] == stream["hops"]
    assert stream["retarget_frames_in"] == stream["frames"]
    assert stream["robot_trajectories_unsolicited"] >= 1
    assert abs(stream["answer_sim_time_minus_arrival_ms"]["max"]) < 1000 / 30  # within one clock step
    assert stream["retarget_audio_seconds_per_wall_second"]["while_generating"] > 0
    robot_diag = stream["last_diagnostics"]["retarget_node"]
    assert robot_diag["state"] == "idle" and int(robot_diag["late_chunks"]) == 0
    assert int(robot_diag["trajectories_invalid"]) == 0 and int(robot_diag["rejected_messages"]) == 0

    drift = summary["timestamp_drift_frames"]
    assert drift["gesture_stamps_vs_frame_index"] <= 1e-3
    assert drift["gesture_frames_vs_audio_length"] <= 1
    assert drift["robot_timeline_vs_audio"] is not None and drift["robot_timeline_vs_audio"] <= 1e-3

    limits = summary["robot_limits"]
    assert limits["points_checked"] >= stream["frames"] * 0.9 and limits["out_of_limits"] == 0

    log = summary["log"]
    assert log["tracebacks"] == 0 and log["error_lines"] == 0, log["examples"]
    node_log = logs.read_text()
    assert "[gesture_node]: stream ended after 36.0 s of audio, 1080 frames published" in node_log

    for name in NODES:
        memory, cpu = summary["memory"][name], summary["cpu"][name]
        assert memory["samples_first_window"] >= 2 and memory["samples_last_window"] >= 2
        assert abs(memory["drift_percent"]) <= 2.0, (name, memory)
        assert 0 < cpu["cpu_seconds_per_audio_second"] < 2.0
    latency = summary["latency_ms"]["gesture"]
    assert 133 <= latency["p50"] <= latency["p95"] < 5000  # at least the 4-frame lookahead
    assert all(summary["acceptance"].values())

    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(rows) >= 10 and all(SAMPLE_KEYS <= set(row) for row in rows)
    assert all(row[name] is None or row[name]["rss_mb"] > 50 for row in rows for name in NODES)
    assert rows[-1]["hops"] == stream["hops"]
    assert [row["audio_s"] for row in rows] == sorted(row["audio_s"] for row in rows)

    text = doc.read_text()
    assert "all acceptance criteria met" in text
    assert f"0 of {limits['commands_checked']:,} joint commands" in text
    assert f"{stream['frames']:,} of {stream['frames_expected']:,.0f} frames" in text


def test_proc_reading_of_an_exited_but_unreaped_node_is_none_not_a_crash():
    """A node that has exited but not yet been reaped is a zombie: /proc/PID/status is still there, without VmRSS.
    The soak samples every node on a timer, so it meets this at the end of every run (CI once crashed on it)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        assert read_proc(os.getpid())["rss_mb"] > 0  # a live process reads
        deadline = time.monotonic() + 30
        while open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.01)
        assert read_proc(child.pid) is None
    finally:
        child.wait()
    assert read_proc(child.pid) is None  # reaped: gone from /proc


def test_log_scan_counts_tracebacks_and_error_lines():
    clean = "[INFO] [1.0] [gesture_node]: streaming x.wav (30.0 s)\n[WARN] [2.0] [retarget_node]: holding\n"
    assert scan_log(clean)["tracebacks"] == 0 and scan_log(clean)["error_lines"] == 0
    crashed = clean + ("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\nValueError: boom\n"
                       "[ERROR] [3.0] [gesture_node]: streaming failed: ValueError('boom')\n")
    found = scan_log(crashed)
    assert found["tracebacks"] == 1 and found["error_lines"] == 1
    assert found["error_lines_per_node"] == {"gesture_node": 1, "retarget_node": 0}
    assert "ValueError: boom" in found["examples"][0]


def test_memory_drift_is_the_median_of_the_last_window_against_the_first_after_warmup():
    # One sample per 10 s of audio over an hour: the warm-up (first 5 min) climbs, then a steady 1 MB per 10 min.
    rows = [{"audio_s": t, "gesture_node": {"rss_mb": (400.0 if t < 300 else 600.0) + t / 600}}
            for t in range(0, 3601, 10)]
    rows[200]["gesture_node"]["rss_mb"] += 300  # a one-sample spike does not move a median
    drift = memory_drift(rows, "gesture_node", 3600, warmup_s=300, window_s=300)
    expected = ((600 + 3450 / 600) - (600 + 445 / 600)) / (600 + 445 / 600) * 100  # medians at 445 s and 3450 s
    assert drift["drift_percent"] == pytest.approx(expected, rel=1e-6)
    assert drift["slope_mb_per_hour"] == pytest.approx(6.0, rel=0.2)
    assert drift["drift_percent"] < 2.0
    leaking = [{"audio_s": row["audio_s"], "gesture_node": {"rss_mb": 600 + row["audio_s"] / 100}} for row in rows]
    assert memory_drift(leaking, "gesture_node", 3600, 300, 300)["drift_percent"] > 2.0  # 36 MB over the hour
