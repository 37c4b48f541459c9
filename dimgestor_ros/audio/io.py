"""Reading speech files into the model's format (mono float32 at the model's sample rate)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UserError

if TYPE_CHECKING:
    import soundfile

# File sample rates load_audio accepts, with room on both sides: telephone speech is 8 kHz and audio interfaces
# stop at 768 kHz. A rate outside them is a damaged header (or not speech), and resampling it to the model's rate
# would blow the file up (a 1 Hz header turns a 1 MB file into 32 GB of float32 at 16 kHz) or leave no sample of it.
MIN_FILE_RATE = 4000
MAX_FILE_RATE = 768_000
# Samples (frames x channels) read at a time. soundfile.read() allocates up front what the header claims, and a
# damaged FLAC header claims up to 2**36 frames (256 GiB of float32: MemoryError); read block by block, memory grows
# only with the audio that is really there.
_BLOCK_SAMPLES = 1 << 22


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
    missing, empty, not audio or claims a sample rate outside MIN_FILE_RATE-MAX_FILE_RATE. The result is never
    empty. ``stats`` counts non-finite samples (replaced by silence).
    """
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise UserError(f"audio file not found: {path} (give an existing WAV/FLAC file)")
    try:
        with soundfile.SoundFile(str(path)) as file:
            file_rate = file.samplerate
            mono = _read_mono(file, stats) if MIN_FILE_RATE <= file_rate <= MAX_FILE_RATE else None
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        raise UserError(
            f"cannot read {path} as audio ({error}); convert it to WAV, e.g. 'sox IN {path.stem}.wav'"
        ) from None
    if mono is None:
        raise UserError(f"audio file {path} says its sample rate is {file_rate} Hz, outside {MIN_FILE_RATE}-"
                        f"{MAX_FILE_RATE} Hz: its header is damaged or it is not speech; re-export it at 16000 Hz")
    if mono.shape[0] == 0:
        raise UserError(f"audio file {path} holds no samples; record or choose a non-empty file")
    audio = resample(mono, int(file_rate), sample_rate)
    if not np.isfinite(audio).all():  # finite samples near float32's limit (1e38) overflow in the resampler's filter
        audio = to_mono_float32(audio, stats)  # made silence, like non-finite samples in the file
    if audio.shape[0] == 0:  # e.g. one sample at 48 kHz: less than one sample at 16 kHz
        raise UserError(f"audio file {path} holds {mono.shape[0]} sample(s) at {file_rate} Hz, less than one at "
                        f"{sample_rate} Hz; record or choose a longer file")
    return audio


def _read_mono(file: soundfile.SoundFile, stats: AudioStats | None) -> np.ndarray:
    """All the audio of an open ``soundfile.SoundFile``, downmixed block by block (see _BLOCK_SAMPLES); reading
    stops at the end of the data even where the header claims more."""
    frames = max(1, _BLOCK_SAMPLES // file.channels)
    blocks = []
    while True:
        block = file.read(frames, dtype="float32", always_2d=True)
        blocks.append(to_mono_float32(block, stats))
        if block.shape[0] < frames:
            return np.concatenate(blocks)
