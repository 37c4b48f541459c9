"""Tests for the built-in acoustic front end: frame count and rate, exact chunked streaming, causality, and that
the energy and pitch features measure what they claim to."""

from __future__ import annotations

import numpy as np
import pytest

from dimgestor_ros.audio.io import load_audio
from dimgestor_ros.features.acoustic import AcousticConfig, AcousticFrontEnd
from dimgestor_ros.paths import demo_audio_file

SR = 16000
HOP = 320
ENERGY = 40  # feature columns: 40 log-mel, then energy, flux, pitch
FLUX = 41
PITCH = 42


@pytest.fixture(scope="module")
def front_end() -> AcousticFrontEnd:
    return AcousticFrontEnd()


def synthetic_speech(seconds: float, seed: int = 0) -> np.ndarray:
    """Harmonic 'voice' with a gliding pitch, syllable-like amplitude envelope, pauses and a little noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0 = 140.0 + 40.0 * np.sin(2 * np.pi * 0.6 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voice = sum(np.sin(k * phase) / k for k in range(1, 7))
    envelope = np.clip(np.sin(2 * np.pi * 2.5 * t), 0.0, None) ** 0.5
    envelope[(t % 1.0) > 0.8] = 0.0  # a pause every second
    return (0.3 * voice * envelope + 0.003 * rng.standard_normal(n)).astype(np.float32)


def tone(freq: float, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


def encode_in_chunks(front_end: AcousticFrontEnd, audio: np.ndarray, sizes) -> np.ndarray:
    state = front_end.init_state()
    out, i, k = [], 0, 0
    while i < len(audio):
        size = sizes[k % len(sizes)]
        features, state = front_end.encode_stream(audio[i : i + size], state)
        out.append(features)
        i += size
        k += 1
    return np.concatenate(out)


def test_front_end_is_43_dimensional_at_50_fps(front_end):
    assert front_end.sample_rate == SR
    assert front_end.frame_rate == 50.0
    assert front_end.dim == 43 == AcousticConfig().n_mels + 3


@pytest.mark.parametrize("length", [0, 1, HOP - 1, HOP, HOP + 1, 5 * HOP + 17, SR + 123])
def test_encode_gives_one_frame_per_complete_hop(front_end, length):
    features = front_end.encode(synthetic_speech(1.1)[:length])
    assert features.shape == (length // HOP, 43)
    assert features.dtype == np.float32


@pytest.mark.parametrize("chunk", [1, 157, 320, 999])
def test_streaming_in_fixed_chunks_matches_whole_clip(front_end, chunk):
    audio = synthetic_speech(1.3)
    whole = front_end.encode(audio)
    streamed = encode_in_chunks(front_end, audio, [chunk])
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-5)


def test_streaming_in_irregular_chunks_of_real_speech_matches_whole_clip(front_end):
    audio = load_audio(demo_audio_file(), SR)[: 2 * SR + 77]
    whole = front_end.encode(audio)
    streamed = encode_in_chunks(front_end, audio, [1, 2, 157, 0, 320, 999, 3000, 5])
    assert streamed.shape == whole.shape == (len(audio) // HOP, 43)
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-5)


def test_frame_depends_only_on_audio_up_to_its_end(front_end):
    audio = synthetic_speech(1.0)
    k = 20  # frame k ends at sample (k + 1) * HOP
    changed = audio.copy()
    changed[(k + 1) * HOP :] = np.random.default_rng(1).standard_normal(len(audio) - (k + 1) * HOP)
    a, b = front_end.encode(audio), front_end.encode(changed)
    np.testing.assert_array_equal(a[: k + 1], b[: k + 1])
    assert np.abs(a[k + 1] - b[k + 1]).max() > 1e-3  # the next frame does see the change


def test_silence_gives_finite_features_with_zero_pitch(front_end):
    features = front_end.encode(np.zeros(SR, dtype=np.float32))
    assert np.isfinite(features).all()
    np.testing.assert_array_equal(features[:, PITCH], 0.0)
    np.testing.assert_array_equal(features[:, FLUX], 0.0)


def test_louder_signal_has_higher_energy_feature(front_end):
    quiet = front_end.encode(tone(220.0, 0.5, amplitude=0.02))
    loud = front_end.encode(tone(220.0, 0.5, amplitude=0.4))
    # Frames 3 on see a full window of tone; 20x amplitude is +26 dB, i.e. +1.3 after the /20 scaling.
    assert (loud[3:, ENERGY] > quiet[3:, ENERGY] + 1.0).all()


@pytest.mark.parametrize("freq", [100.0, 200.0, 400.0])
def test_pitch_feature_is_log2_of_f0_over_100hz(front_end, freq):
    features = front_end.encode(tone(freq, 1.0))
    pitch = features[3:, PITCH]  # frames whose 1024-sample window lies inside the tone
    np.testing.assert_allclose(pitch, np.log2(freq / 100.0), atol=0.05)


def test_quiet_tone_below_voicing_threshold_has_no_pitch(front_end):
    features = front_end.encode(tone(200.0, 0.5, amplitude=1e-3))  # about -63 dB, under the -45 dB gate
    np.testing.assert_array_equal(features[:, PITCH], 0.0)


def test_onset_raises_spectral_flux(front_end):
    audio = np.concatenate([np.zeros(SR // 2, np.float32), tone(300.0, 0.5)])
    features = front_end.encode(audio)
    onset = SR // 2 // HOP  # first frame reaching into the tone
    assert features[onset : onset + 3, FLUX].max() > 0.5
    assert features[onset + 6 :, FLUX].max() < 0.05  # a steady tone has no further onsets
