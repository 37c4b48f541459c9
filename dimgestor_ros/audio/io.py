"""Reading speech files into the model's format (mono float32 at the model's sample rate)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError

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
    with AudioFileStream(path, sample_rate, stats) as stream:
        blocks = []
        while len(block := stream.read(_BLOCK_SAMPLES)):
            blocks.append(block)
    return np.concatenate(blocks)


class AudioFileStream:
    """A speech file decoded as it is read: mono float32 at ``sample_rate``, ``block_seconds`` of the file at a time
    (default: _BLOCK_SAMPLES samples).

    Why: a file streamed by the node need not be held decoded (an hour at 16 kHz is 230 MB of float32), and a
    damaged header that claims 2**36 frames must not make anything allocate them. One resampler (libsoxr) runs
    over the whole file, so the samples are exactly those of resampling it in one piece. The constructor checks
    what load_audio promises (the file exists, is audio at a sane rate and yields at least one sample) and raises
    UserError naming the file and the fix; a file that turns unreadable further in raises the same.
    """

    def __init__(self, path: str | Path, sample_rate: int, stats: AudioStats | None = None,
                 block_seconds: float | None = None) -> None:
        import soundfile

        self.path = Path(path)
        self.sample_rate = sample_rate
        self.stats = stats
        if not self.path.is_file():
            raise UserError(f"audio file not found: {self.path} (give an existing WAV/FLAC file)")
        try:
            self._file = soundfile.SoundFile(str(self.path))
        except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
            raise self._unreadable(error) from None
        self.file_rate = int(self._file.samplerate)
        if not MIN_FILE_RATE <= self.file_rate <= MAX_FILE_RATE:
            self._file.close()
            raise UserError(f"audio file {self.path} says its sample rate is {self.file_rate} Hz, outside "
                            f"{MIN_FILE_RATE}-{MAX_FILE_RATE} Hz: its header is damaged or it is not speech; "
                            f"re-export it at 16000 Hz")
        block = _BLOCK_SAMPLES // self._file.channels if block_seconds is None else block_seconds * self.file_rate
        self._block_frames = max(1, int(block))
        self._frames_read = 0  # file frames decoded since the (last) start
        try:
            self._restart()
            self._fill(1)
        except BaseException:  # the first block undecodable: no handle left for the garbage collector to close
            self._file.close()
            raise
        if not len(self._pending):
            self._file.close()
            if self._frames_read == 0:
                raise UserError(f"audio file {self.path} holds no samples; record or choose a non-empty file")
            raise UserError(f"audio file {self.path} holds {self._frames_read} sample(s) at {self.file_rate} Hz, "
                            f"less than one at {sample_rate} Hz; record or choose a longer file")

    @property
    def duration_s(self) -> float:
        """The length the header claims (a damaged one may claim more than there is)."""
        return self._file.frames / self.file_rate

    @property
    def exhausted(self) -> bool:
        """Every sample of the file has been read."""
        return self._ended and not len(self._pending)

    def read(self, count: int) -> np.ndarray:
        """The next ``count`` samples, fewer only at the end of the file (empty once exhausted)."""
        self._fill(count)
        out, self._pending = self._pending[:count], self._pending[count:]
        return out

    def rewind(self) -> None:
        """Start again from the file's first sample (a looping source)."""
        self._file.seek(0)
        self._restart()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> AudioFileStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _restart(self) -> None:
        import soxr

        self._frames_read = 0
        self._ended = False
        self._pending = np.zeros(0, dtype=np.float32)
        same = self.file_rate == self.sample_rate
        self._resampler = None if same else soxr.ResampleStream(self.file_rate, self.sample_rate, 1,
                                                                  dtype="float32")

    def _fill(self, count: int) -> None:
        """Decode blocks until ``count`` samples wait or the file has ended; reading stops at the end of the data
        even where the header claims more."""
        import soundfile

        while len(self._pending) < count and not self._ended:
            try:
                block = self._file.read(self._block_frames, dtype="float32", always_2d=True)
            except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
                raise self._unreadable(error) from None
            self._frames_read += block.shape[0]
            self._ended = block.shape[0] < self._block_frames
            mono = to_mono_float32(block, self.stats)
            if self._resampler is not None:
                mono = self._resampler.resample_chunk(mono, last=self._ended)
                if not np.isfinite(mono).all():  # finite samples near float32's limit overflow in the filter
                    mono = to_mono_float32(mono, self.stats)  # made silence, like non-finite samples in the file
            self._pending = np.concatenate([self._pending, mono]) if len(self._pending) else mono

    def _unreadable(self, error: Exception) -> UserError:
        return UserError(f"cannot read {self.path} as audio ({error}); convert it to WAV, e.g. "
                         f"'sox IN {self.path.stem}.wav'")
