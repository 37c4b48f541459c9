"""The `dimgestor` command line."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from conftest import VENV_BIN

DIMGESTOR = str(VENV_BIN / "dimgestor")


def test_help_lists_the_commands():
    result = subprocess.run([DIMGESTOR, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "bench" in result.stdout


@pytest.mark.reliability("bad input", "unknown bench target", "non-zero exit, usage error, no traceback")
def test_unknown_bench_target_is_refused_without_traceback():
    result = subprocess.run([DIMGESTOR, "bench", "everything"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr and "Traceback" not in result.stderr


def test_bench_streaming_reports_rtf_and_latency_per_configuration_default_first(tmp_path):
    out = tmp_path / "streaming.json"
    # One thread: two OpenMP threads spin against each other on a busy 2-core CI machine (5x slower seen).
    result = subprocess.run([DIMGESTOR, "bench", "streaming", "--minutes", "0.2", "--threads", "1", "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    configurations = json.loads(out.read_text())["configurations"]
    assert next(iter(configurations)) == "default"
    for figures in configurations.values():
        assert 0 < figures["rtf"] < 10
        assert 0 < figures["latency_ms"]["p50"] <= figures["latency_ms"]["p95"] <= figures["latency_ms"]["max"]
        assert figures["frames"] >= 0.2 * 60 * 30 - figures["config"]["hop_frames"]


def test_bench_streaming_reports_memory_and_timestamp_drift_for_the_chosen_configuration(tmp_path):
    out = tmp_path / "drift.json"
    result = subprocess.run([DIMGESTOR, "bench", "streaming", "--minutes", "1.1", "--configs", "default",
                             "--threads", "1", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    configurations = json.loads(out.read_text())["configurations"]
    assert list(configurations) == ["default"]
    figures = configurations["default"]
    config = figures["config"]
    assert len(figures["rss_mb"]["per_minute"]) == 2  # after the warm-up, after the first minute
    assert figures["rss_mb"]["drift_percent"] == pytest.approx(
        100 * (figures["rss_mb"]["end"] - figures["rss_mb"]["start"]) / figures["rss_mb"]["start"])
    for low, high in (figures["timestamp"]["lag_frames_first_minute"], figures["timestamp"]["lag_frames_last_minute"]):
        # published motion trails the audio by the lookahead plus at most a hop (and a partial speech frame)
        assert config["lookahead_frames"] <= low <= high <= config["lookahead_frames"] + config["hop_frames"] + 1
    assert 0 <= figures["timestamp"]["drift_frames"] < 1


@pytest.mark.reliability("bad input", "unknown bench configuration name", "error listing the known configurations")
def test_bench_streaming_names_the_configurations_when_one_is_unknown():
    result = subprocess.run([DIMGESTOR, "bench", "streaming", "--minutes", "0.1", "--configs", "fastest"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "unknown configuration(s) fastest; choose from default, steps4" in result.stderr
    assert "Traceback" not in result.stderr


def test_paced_latency_replay_queues_work_behind_slow_chunks():
    from dimgestor_ros.bench.streaming import paced_latencies

    arrivals = [0.05, 0.10, 0.15]
    # the first chunk takes 0.12 s, so the second waits for it; only chunks 1 and 3 complete hops
    latencies = paced_latencies(np.array(arrivals), np.array([0.12, 0.01, 0.01]), np.array([1, 0, 1]))
    np.testing.assert_allclose(latencies, [0.12, (0.05 + 0.12 + 0.01 + 0.01) - 0.15])


def test_make_corpus_then_train_gives_weights_the_streaming_generator_runs(tmp_path):
    """The commands chain: a synthetic corpus (espeak-ng) -> `dimgestor train` -> a weights folder that loads."""
    from dimgestor_ros.features.factory import make_speech_encoder
    from dimgestor_ros.model.gesture_model import DiMGestor
    from dimgestor_ros.streaming.generator import StreamingConfig, StreamingGestureGenerator

    corpus, run = tmp_path / "corpus", tmp_path / "run"
    made = subprocess.run([DIMGESTOR, "make-corpus", str(corpus), "--clips-per-speaker", "1", "--speakers", "ana",
                           "ben", "--max-sentences", "1"], capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    config = tmp_path / "train.yaml"
    config.write_text("steps: 12\nbatch_size: 2\ncheckpoint_every: 6\nval_every: 6\n"
                      "model: {d_model: 32, n_blocks: 1, mamba: {d_state: 16, headdim: 16, chunk_size: 16}}\n")
    trained = subprocess.run([DIMGESTOR, "train", "--data", str(corpus / "train"), "--out", str(run), "--config", str(config)],
                             capture_output=True, text=True, timeout=300, env={**os.environ, "CI": "true"})
    assert trained.returncode == 0, trained.stderr
    assert len((run / "train_log.jsonl").read_text().splitlines()) == 12
    model = DiMGestor.load(run / "weights")
    generator = StreamingGestureGenerator(model, make_speech_encoder("acoustic"), StreamingConfig(steps=2))
    hops = generator.push(np.zeros(16000, dtype=np.float32)) + generator.flush()
    assert sum(len(h.poses) for h in hops) == 30
    assert all(np.isfinite(h.poses).all() for h in hops)


def test_generate_writes_a_bvh_covering_the_whole_clip(tmp_path):
    import soundfile

    from dimgestor_ros.motion.bvh import read_bvh
    from dimgestor_ros.motion.skeleton import HUMANOID

    speech = tmp_path / "speech.wav"
    t = np.arange(int(2.5 * 44100)) / 44100
    soundfile.write(speech, np.stack([0.3 * np.sin(2 * np.pi * 180 * t)] * 2, axis=1), 44100)  # stereo 44.1 kHz
    out = tmp_path / "gestures.bvh"
    preview = tmp_path / "preview" / "gestures.png"
    result = subprocess.run([DIMGESTOR, "generate", str(speech), "-o", str(out), "--steps", "2", "--preview",
                             str(preview)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert preview.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    motion = read_bvh(out)
    assert motion.num_frames == 75 and abs(motion.fps - 30) < 1e-9
    assert motion.project_skeleton(0.01).bone_names == HUMANOID.bone_names
    assert np.isfinite(motion.to_poses(0.01)).all()


@pytest.mark.reliability(
    "bad input",
    "dimgestor generate with a missing WAV, a wrong output suffix, missing weights, a bad preview suffix, an "
    "out-of-range lookahead, a lookahead without --windowed, an out-of-range temperature",
    "exit 2, one line naming the problem",
)
@pytest.mark.parametrize("arguments, message", [
    (["/nonexistent.wav", "-o", "x.bvh"], "audio file not found: /nonexistent.wav"),
    (["{speech}", "-o", "x.mp4"], "must end in .bvh"),
    (["{speech}", "-o", "x.bvh", "--weights", "/nonexistent"], "weights folder not found"),
    (["{speech}", "-o", "x.bvh", "--preview", "x.avi"], "--preview x.avi must end in one of .png, .gif, .mp4"),
    (["{speech}", "-o", "x.bvh", "--windowed", "--lookahead", "50"], "lookahead_frames (50) must be between 0 and"),
    (["{speech}", "-o", "x.bvh", "--lookahead", "4"], "--lookahead applies to --windowed generation"),
    (["{speech}", "-o", "x.bvh", "--temperature", "-1"], "temperature must be in [0, 2], got -1.0"),
], ids=["missing wav", "output not bvh", "missing weights", "bad preview suffix", "lookahead out of range",
        "lookahead without windowed", "temperature out of range"])
def test_generate_bad_input_is_a_one_line_error(tmp_path, arguments, message):
    import soundfile

    speech = tmp_path / "s.wav"
    soundfile.write(speech, np.zeros(1600, dtype=np.float32), 16000)
    arguments = [a.replace("{speech}", str(speech)) for a in arguments]
    result = subprocess.run([DIMGESTOR, "generate", *arguments], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr


def test_generate_with_the_node_lookahead_writes_what_the_node_would_publish(tmp_path):
    from dimgestor_ros.audio.io import load_audio
    from dimgestor_ros.generate import generate_poses
    from dimgestor_ros.model.gesture_model import DiMGestor
    from dimgestor_ros.motion.bvh import read_bvh
    from dimgestor_ros.paths import default_weights_dir, demo_audio_file
    from dimgestor_ros.streaming.generator import StreamingConfig

    speech = tmp_path / "speech.wav"
    import soundfile

    soundfile.write(speech, load_audio(demo_audio_file(), 16000)[: 3 * 16000], 16000)
    out = tmp_path / "node.bvh"
    result = subprocess.run([DIMGESTOR, "generate", str(speech), "-o", str(out), "--steps", "2", "--windowed",
                             "--lookahead", "4"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    expected = generate_poses(load_audio(speech, 16000), DiMGestor.load(default_weights_dir()), StreamingConfig(steps=2))
    np.testing.assert_allclose(read_bvh(out).to_poses(0.01), expected, rtol=0, atol=1e-4)


def test_generate_samples_the_whole_clip_by_default(tmp_path):
    """Without --windowed the BVH is the whole-clip sample (dimgestor_ros.offline) with the given settings."""
    import soundfile

    from dimgestor_ros.audio.io import load_audio
    from dimgestor_ros.model.gesture_model import DiMGestor
    from dimgestor_ros.motion.bvh import read_bvh
    from dimgestor_ros.offline import OfflineConfig, sample_clip
    from dimgestor_ros.paths import default_weights_dir, demo_audio_file

    speech = tmp_path / "speech.wav"
    soundfile.write(speech, load_audio(demo_audio_file(), 16000)[: 3 * 16000], 16000)
    out = tmp_path / "clip.bvh"
    result = subprocess.run([DIMGESTOR, "generate", str(speech), "-o", str(out), "--steps", "2", "--temperature",
                             "0.5", "--seed", "3"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    expected = sample_clip(load_audio(speech, 16000), DiMGestor.load(default_weights_dir()),
                           OfflineConfig(steps=2, temperature=0.5, seed=3))
    assert expected.shape == (90, 63)
    np.testing.assert_allclose(read_bvh(out).to_poses(0.01), expected, rtol=0, atol=1e-4)
