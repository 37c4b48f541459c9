"""Whole-clip sampling (dimgestor_ros.offline): length, seeding, temperature, segments and that it sees the clip."""

from __future__ import annotations

import numpy as np
import pytest

from dimgestor_ros.audio.io import load_audio
from dimgestor_ros.generate import generate_poses
from dimgestor_ros.model.gesture_model import DiMGestor
from dimgestor_ros.offline import OfflineConfig, sample_clip
from dimgestor_ros.paths import default_weights_dir, demo_audio_file
from dimgestor_ros.streaming.generator import StreamingConfig

RATE = 16000


@pytest.fixture(scope="module")
def model():
    return DiMGestor.load(default_weights_dir())


@pytest.fixture(scope="module")
def speech():
    return load_audio(demo_audio_file(), RATE)


@pytest.mark.parametrize("seconds", [0.01, 1.0, 1.37, 2.5])
def test_whole_clip_gives_as_many_frames_as_the_streaming_generator(model, speech, seconds):
    audio = speech[: int(seconds * RATE)]
    whole = sample_clip(audio, model, OfflineConfig(steps=1))
    windowed = generate_poses(audio, model, StreamingConfig(steps=1))
    assert whole.shape == windowed.shape == (int(np.ceil(seconds * 30)), 63)
    assert whole.dtype == np.float32 and np.isfinite(whole).all()


def test_empty_audio_gives_no_frames(model):
    assert sample_clip(np.zeros(0, np.float32), model).shape == (0, 63)


def test_same_seed_repeats_another_seed_differs_and_temperature_zero_ignores_the_seed(model, speech):
    audio = speech[: 3 * RATE]
    a = sample_clip(audio, model, OfflineConfig(steps=2, seed=1))
    np.testing.assert_array_equal(a, sample_clip(audio, model, OfflineConfig(steps=2, seed=1)))
    assert np.abs(a - sample_clip(audio, model, OfflineConfig(steps=2, seed=2))).mean() > 1e-3
    cold = [sample_clip(audio, model, OfflineConfig(steps=2, seed=s, temperature=0.0)) for s in (1, 2)]
    np.testing.assert_array_equal(cold[0], cold[1])


def test_early_frames_follow_later_speech_in_one_pass_but_not_across_segments(model, speech):
    """The whole clip is sampled at once, so speech 4 s in changes the motion of the first second; a segment only
    sees speech up to its end, so with 2-s segments the first second does not change."""
    audio = speech[: 5 * RATE].copy()
    changed = audio.copy()
    changed[4 * RATE :] = 0.0
    for config, moves in ((OfflineConfig(steps=2), True), (OfflineConfig(steps=2, segment_frames=60), False)):
        first = sample_clip(audio, model, config)[:30]
        other = sample_clip(changed, model, config)[:30]
        assert (np.abs(first - other).max() > 1e-4) == moves


def test_segments_join_without_a_jump(model, speech):
    """A clip longer than a segment is sampled in segments that continue the last context_frames; at the joins
    the frame-to-frame change stays within what the motion does anyway."""
    audio = speech[: 8 * RATE]
    poses = sample_clip(audio, model, OfflineConfig(steps=4, segment_frames=60, context_frames=20))
    assert poses.shape == (240, 63)
    step = np.abs(np.diff(poses, axis=0)).max(axis=1)  # (239,) largest per-DoF change between frames
    joins = np.arange(60, 240, 40)  # segments start at 0, 40, 80, ...: new frames from 60, 100, 140, ...
    assert step[joins - 1].max() < 3.0 * np.percentile(step, 95), (step[joins - 1], np.percentile(step, 95))


@pytest.mark.parametrize("settings, message", [
    ({"temperature": -0.1}, "temperature must be in [0, 2]"),
    ({"steps": 0}, "steps must be >= 1"),
    ({"sampler": "euler"}, "sampler must be one of"),
    ({"segment_frames": 30, "context_frames": 30}, "context_frames (30) must be between 1 and"),
    ({"smoothing": 11.0}, "smoothing and idle_smoothing must be in [0, 10]"),
])
def test_bad_settings_are_refused_naming_the_setting(settings, message):
    with pytest.raises(ValueError) as error:
        OfflineConfig(**settings)
    assert message in str(error.value)
