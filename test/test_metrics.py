"""Gesture metrics against inputs whose answer is known: identical sets, analytic derivatives, planted beats."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import cumulative_trapezoid

from dimgestor_ros.evaluation import metrics

FPS = 30.0
SAMPLE_RATE = 16000
ONSETS = np.array([0.6, 1.3, 1.8, 2.7, 3.3, 4.2, 4.8, 5.7])  # irregular, so a shifted copy cannot line up again
DURATION = 6.5


def beat_motion(beats: np.ndarray, duration: float = DURATION, fps: float = FPS) -> np.ndarray:
    """(F, 1, 3) a point moving along x whose speed is a sin^2 bump between beats: zero exactly at each beat."""
    fine = np.linspace(0.0, duration, int(duration * 3000) + 1)
    bounds = np.concatenate([[0.0], beats, [duration]])
    segment = np.clip(np.searchsorted(bounds, fine, side="right") - 1, 0, len(bounds) - 2)
    start, length = bounds[segment], np.diff(bounds)[segment]
    speed = 0.5 * np.sin(np.pi * (fine - start) / length) ** 2  # m/s, peak 0.5
    x = cumulative_trapezoid(speed, fine, initial=0.0)
    times = np.arange(int(duration * fps)) / fps
    positions = np.zeros((len(times), 1, 3))
    positions[:, 0, 0] = np.interp(times, fine, x)
    return positions


def click_track(onsets: np.ndarray, duration: float = DURATION, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 audio: silence with a 40 ms decaying 1 kHz tone burst starting at each onset time."""
    audio = np.zeros(int(duration * rate), dtype=np.float32)
    t = np.arange(int(0.04 * rate)) / rate
    burst = 0.5 * np.sin(2 * np.pi * 1000 * t) * np.exp(-t / 0.01)
    for onset in onsets:
        start = int(round(onset * rate))
        audio[start:start + len(burst)] += burst[: len(audio) - start]
    return audio


def test_frechet_distance_of_a_set_with_itself_is_zero():
    features = np.random.default_rng(0).normal(size=(500, 6)) @ np.random.default_rng(1).normal(size=(6, 6))
    assert metrics.frechet_distance(features, features) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_of_a_mean_shift_is_its_squared_length():
    features = np.random.default_rng(0).normal(size=(400, 4))
    shift = np.array([0.3, -0.4, 0.0, 1.2])
    assert metrics.frechet_distance(features, features + shift) == pytest.approx(shift @ shift, rel=1e-6)


def test_frechet_distance_grows_monotonically_with_added_noise():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(1000, 8))
    noise = rng.normal(size=features.shape)
    distances = [metrics.frechet_distance(features, features + level * noise) for level in (0.0, 0.1, 0.3, 1.0, 3.0)]
    assert distances[0] < 1e-8
    assert all(a < b for a, b in zip(distances, distances[1:])), distances


def test_frechet_distance_survives_singular_covariances():
    features = np.random.default_rng(3).normal(size=(5, 20))  # fewer samples than features
    value = metrics.frechet_distance(features, features + 0.5)
    assert value == pytest.approx(20 * 0.25, rel=1e-6)  # a mean shift of 0.5 in each of 20 features


def test_kinetic_fgd_is_zero_for_the_same_motion_and_grows_with_speed():
    slow = beat_motion(ONSETS)
    reference = metrics.kinetic_features(slow, FPS, window_s=1.0)
    assert reference.shape == (12, 4)  # 1 s windows starting every 0.5 s up to 5.5 s; 4 statistics of a joint
    same = metrics.kinetic_fgd(reference, reference)
    faster = metrics.kinetic_fgd(reference, metrics.kinetic_features(1.5 * slow, FPS, window_s=1.0))
    fastest = metrics.kinetic_fgd(reference, metrics.kinetic_features(3.0 * slow, FPS, window_s=1.0))
    assert same == pytest.approx(0.0, abs=1e-8) and 0 < faster < fastest


def test_beat_alignment_formula_and_which_set_it_averages_over():
    assert metrics.beat_alignment([1.0], [1.1], sigma_s=0.1) == pytest.approx(np.exp(-0.5))
    # three motion beats, one onset: only one motion beat is near an onset, but the one onset has a motion beat
    assert metrics.beat_alignment([1.0, 2.0, 3.0], [1.0], over="motion") == pytest.approx(1 / 3)
    assert metrics.beat_alignment([1.0, 2.0, 3.0], [1.0], over="audio") == pytest.approx(1.0)
    assert np.isnan(metrics.beat_alignment([], [1.0]))


def test_kinematic_beats_are_the_planted_speed_minima():
    beats = metrics.kinematic_beats(beat_motion(ONSETS), FPS)
    np.testing.assert_allclose(beats, ONSETS, atol=1.01 / FPS)


def test_audio_onsets_find_the_tone_bursts():
    onsets = metrics.audio_onsets(click_track(ONSETS), SAMPLE_RATE)
    np.testing.assert_allclose(onsets, ONSETS, atol=0.03)


def test_beat_alignment_is_near_one_on_planted_beats_and_low_when_shifted():
    audio_beats = metrics.audio_onsets(click_track(ONSETS), SAMPLE_RATE)
    aligned = metrics.beat_alignment(metrics.kinematic_beats(beat_motion(ONSETS), FPS), audio_beats)
    shifted = metrics.beat_alignment(metrics.kinematic_beats(beat_motion(ONSETS + 0.3), FPS), audio_beats)
    shuffled_beats = np.sort(np.random.default_rng(4).uniform(0.3, 6.2, len(ONSETS)))
    shuffled = metrics.beat_alignment(metrics.kinematic_beats(beat_motion(shuffled_beats), FPS), audio_beats)
    assert aligned > 0.95
    assert shifted < 0.3 and shuffled < 0.6


def test_jerk_and_acceleration_of_constant_velocity_are_zero():
    times = np.arange(90) / FPS
    positions = np.stack([times * 0.7, times * -0.2, np.full_like(times, 1.0)], axis=1)[:, None, :]
    assert metrics.mean_jerk(positions, FPS) == pytest.approx(0.0, abs=1e-6)
    assert metrics.acceleration_magnitude(positions, FPS) == pytest.approx(0.0, abs=1e-6)


def test_jerk_and_acceleration_of_a_sinusoid_match_the_analytic_means():
    fps, amplitude, omega = 60.0, 0.2, 2 * np.pi * 1.0
    times = np.arange(int(20 * fps)) / fps
    positions = np.zeros((len(times), 2, 3))
    positions[:, :, 1] = amplitude * np.sin(omega * times)[:, None]
    # mean |A w^3 cos(w t)| = A w^3 * 2/pi, and the same for acceleration with w^2
    assert metrics.mean_jerk(positions, fps) == pytest.approx(amplitude * omega**3 * 2 / np.pi, rel=0.01)
    assert metrics.acceleration_magnitude(positions, fps) == pytest.approx(amplitude * omega**2 * 2 / np.pi, rel=0.01)


def circle(frames: int, fps: float = FPS, radius: float = 0.3, omega: float = np.pi) -> np.ndarray:
    """(F, 1, 3) uniform circular motion: its jerk magnitude is the same at every frame."""
    times = np.arange(frames) / fps
    return np.stack([radius * np.cos(omega * times), radius * np.sin(omega * times), 0 * times], axis=1)[:, None]


def test_seam_continuity_is_one_for_smooth_motion():
    seams = np.arange(15, 180, 15)
    assert metrics.seam_continuity(circle(180), FPS, seams) == pytest.approx(1.0, abs=1e-6)


def test_seam_continuity_is_large_with_a_step_at_each_seam():
    positions = circle(180)
    positions[:, 0, 2] += 0.02 * (np.arange(180) // 15)  # each 15-frame window 2 cm off the previous one
    assert metrics.seam_continuity(positions, FPS, np.arange(15, 180, 15)) > 10
    # the same steps seen from seams placed between them are not seams of this motion
    assert metrics.seam_continuity(circle(180), FPS, np.arange(7, 180, 15)) == pytest.approx(1.0, abs=1e-6)


def test_diversity_is_the_rms_joint_distance_between_windows_and_ignores_where_the_body_stands():
    frames = int(2.0 * FPS)  # one 2 s window per clip
    first = np.zeros((frames, 2, 3))
    first[:, 1, 1] = 1.0  # a joint 1 m above the root
    second = first.copy()
    second[:, 1, 1] = 1.5
    second[:, :, 0] += 4.0  # standing elsewhere changes nothing
    expected = 0.5 / np.sqrt(2)  # one of two joints 0.5 m apart, RMS over joints
    assert metrics.diversity([first, second], FPS, window_s=2.0) == pytest.approx(expected)
    assert metrics.diversity([first, first.copy()], FPS, window_s=2.0) == pytest.approx(0.0)


def test_frechet_distance_matches_the_closed_form_for_known_gaussians():
    # N(0, I) vs N(0, 4 I) in K dims: K * (1 + 4 - 2 * 2) = K, with covariances fitted from whitened samples
    rng = np.random.default_rng(5)
    samples = rng.normal(size=(2000, 3))
    samples = (samples - samples.mean(0)) @ np.linalg.inv(np.linalg.cholesky(np.cov(samples, rowvar=False))).T
    assert metrics.frechet_distance(samples, 2.0 * samples) == pytest.approx(3.0, rel=1e-9)


def test_kinetic_fgd_is_not_blown_up_by_a_joint_the_reference_never_moves():
    rng = np.random.default_rng(3)
    reference = rng.normal(1.0, 0.2, size=(200, 8))  # 4 groups x 2 joints
    reference[:, ::2] = 1e-6 + 1e-8 * rng.normal(size=(200, 4))  # joint 0 never moves: spread 1e-8
    generated = reference + rng.normal(0.0, 0.02, size=reference.shape)  # 2 cm/s of noise everywhere
    value = metrics.kinetic_fgd(reference, generated)
    still = reference.copy()
    still[:, 1::2] = 0.0  # a generator that does not move at all
    assert 0.0 < value < 1.0 < metrics.kinetic_fgd(reference, still)
