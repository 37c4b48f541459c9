"""Per-motion-frame loudness of the incoming audio: exact levels of known signals, independent of chunking."""

from __future__ import annotations

import numpy as np
import pytest

from dimgestor_ros.streaming.loudness import FLOOR_DB, FrameLoudness

RATE, FPS = 16000, 30


def test_levels_of_silence_and_a_half_scale_square_wave_are_exact():
    loudness = FrameLoudness(RATE, FPS)
    loudness.push(np.zeros(RATE, np.float32))
    loudness.push(np.where(np.arange(RATE) % 2, 0.5, -0.5).astype(np.float32))  # RMS 0.5 = -6.02 dBFS
    levels = loudness.db(0, 60)
    assert levels[:29] == pytest.approx(FLOOR_DB)  # frames 0..28 lie wholly in the silent second
    assert levels[31:] == pytest.approx(20 * np.log10(0.5))
    assert loudness.db(60, 65) == pytest.approx(FLOOR_DB)  # frames not heard yet count as silent


@pytest.mark.parametrize("chunks", [[1], [533, 534], [7919], [2 * RATE]])
def test_chunking_of_the_audio_does_not_change_the_levels(chunks):
    audio = np.random.default_rng(0).normal(0, 0.1, 2 * RATE).astype(np.float32) * np.linspace(0, 1, 2 * RATE)
    whole = FrameLoudness(RATE, FPS)
    whole.push(audio)
    pieces = FrameLoudness(RATE, FPS)
    i, k = 0, 0
    while i < len(audio) and (chunks != [1] or i < 3000):  # one sample at a time: the first 3000 suffice
        n = chunks[k % len(chunks)]
        pieces.push(audio[i : i + n])
        i, k = i + n, k + 1
    frames = int(i * FPS // RATE)
    np.testing.assert_allclose(pieces.db(0, frames), whole.db(0, frames), rtol=0, atol=1e-9)


def test_forgotten_frames_read_as_silent_and_later_frames_keep_their_level():
    loudness = FrameLoudness(RATE, FPS)
    loudness.push(np.full(RATE, 0.1, np.float32))
    before = loudness.db(0, 30)
    loudness.forget_before(20)
    assert loudness.first_frame == 20
    np.testing.assert_array_equal(loudness.db(20, 30), before[20:])
    assert loudness.db(0, 20) == pytest.approx(FLOOR_DB)


def test_nan_and_inf_samples_do_not_poison_the_levels():
    loudness = FrameLoudness(RATE, FPS)
    audio = np.full(RATE, 0.1, np.float32)
    audio[100], audio[9000] = np.nan, np.inf
    loudness.push(audio)
    assert np.isfinite(loudness.db(0, 30)).all()
