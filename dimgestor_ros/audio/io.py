"""Reading speech files into the model's format (mono float32 at the model's sample rate)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError


def to_mono_float32(samples: np.ndarray) -> np.ndarray:
    """Downmix (frames, channels) or (frames,) audio to mono float32; non-finite samples become silence."""
    samples = np.asarray(samples)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    elif samples.ndim != 1:
        raise ValueError(f"audio must be (frames,) or (frames, channels), got shape {samples.shape}")
    samples = samples.astype(np.float32, copy=False)
    if not np.isfinite(samples).all():
        samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
    return samples


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """High-quality rate conversion (libsoxr), so devices and files at any rate feed a 16 kHz model."""
    if source_rate == target_rate:
        return samples
    import soxr

    return soxr.resample(samples, source_rate, target_rate).astype(np.float32, copy=False)


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Read a speech file (WAV, FLAC, OGG, ...) as mono float32 at ``sample_rate``.

    Raises UserError naming the file and the fix when it is missing, empty or not audio.
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
    return resample(to_mono_float32(samples), int(file_rate), sample_rate)
