"""The built-in acoustic front end: log-mel spectrum plus prosody, computed causally so it streams exactly.

It needs no downloaded model, so it is the embedded default. Frame i looks only at audio up to sample
(i + 1) * hop, which makes chunk-by-chunk streaming give the very same features as one pass over the clip.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class AcousticConfig:
    sample_rate: int = 16000
    hop_length: int = 320  # 50 frames per second, the rate of HuBERT-style encoders
    n_fft: int = 1024
    n_mels: int = 40
    fmin_pitch: float = 65.0
    fmax_pitch: float = 500.0
    voicing_threshold_db: float = -45.0  # frames quieter than this have no pitch

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def dim(self) -> int:
        return self.n_mels + 3  # log-mel, log energy, spectral flux (onsets), log pitch


@dataclass
class AcousticStreamState:
    """What the front end carries from one audio chunk to the next."""

    pending: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))  # samples not yet framed
    context: np.ndarray | None = None  # last n_fft - hop samples already framed
    previous_log_mel: np.ndarray | None = None  # (n_mels,) for spectral flux


class AcousticFrontEnd:
    """Log-mel + energy + onset strength + pitch at 50 fps from 16 kHz mono audio."""

    def __init__(self, config: AcousticConfig | None = None) -> None:
        import librosa

        self.config = config or AcousticConfig()
        c = self.config
        self._mel_basis = librosa.filters.mel(sr=c.sample_rate, n_fft=c.n_fft, n_mels=c.n_mels).astype(np.float32)
        self._window = np.hanning(c.n_fft).astype(np.float32)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    @property
    def dim(self) -> int:
        return self.config.dim

    def init_state(self) -> AcousticStreamState:
        c = self.config
        return AcousticStreamState(context=np.zeros(c.n_fft - c.hop_length, dtype=np.float32))

    def encode(self, audio: np.ndarray) -> np.ndarray:
        """Features (floor(len / hop), dim) of a whole clip."""
        features, _ = self.encode_stream(audio, self.init_state())
        return features

    def encode_stream(self, audio: np.ndarray, state: AcousticStreamState) -> tuple[np.ndarray, AcousticStreamState]:
        """Features of every frame completed by ``audio``, and the state to continue with."""
        c = self.config
        samples = np.concatenate([state.pending, np.asarray(audio, dtype=np.float32)])
        n_frames = len(samples) // c.hop_length
        if n_frames == 0:
            return np.zeros((0, c.dim), dtype=np.float32), AcousticStreamState(
                samples, state.context, state.previous_log_mel
            )
        framed = samples[: n_frames * c.hop_length]
        buffer = np.concatenate([state.context, framed])  # (n_fft - hop + n_frames * hop,)
        # frames: (n_frames, n_fft), frame i ends at sample (i + 1) * hop of the stream
        frames = np.lib.stride_tricks.sliding_window_view(buffer, c.n_fft)[:: c.hop_length][:n_frames]
        spectrum = np.abs(np.fft.rfft(frames * self._window, axis=1)) ** 2  # (n_frames, n_fft / 2 + 1)
        log_mel = np.log10(spectrum @ self._mel_basis.T + 1e-6).astype(np.float32)  # (n_frames, n_mels)

        energy = np.mean(frames**2, axis=1)
        log_energy = 10.0 * np.log10(energy + 1e-10)

        previous = state.previous_log_mel if state.previous_log_mel is not None else log_mel[0]
        shifted = np.concatenate([previous[None], log_mel[:-1]], axis=0)
        flux = np.maximum(log_mel - shifted, 0.0).mean(axis=1)

        log_pitch = self._log_pitch(frames, log_energy)
        features = np.concatenate(
            [log_mel, (log_energy[:, None] + 50.0) / 20.0, flux[:, None] * 4.0, log_pitch[:, None]], axis=1
        ).astype(np.float32)
        new_state = AcousticStreamState(
            pending=samples[n_frames * c.hop_length :].copy(),
            context=buffer[len(buffer) - (c.n_fft - c.hop_length) :].copy(),
            previous_log_mel=log_mel[-1].copy(),
        )
        return features, new_state

    def _log_pitch(self, frames: np.ndarray, log_energy: np.ndarray) -> np.ndarray:
        """Per-frame log2(f0 / 100 Hz) from YIN on the same frames; 0 for unvoiced or quiet frames."""
        import librosa

        c = self.config
        # Feeding the frames back to back with hop = n_fft makes YIN analyse exactly these frames.
        f0 = librosa.yin(
            frames.reshape(-1),
            fmin=c.fmin_pitch,
            fmax=c.fmax_pitch,
            sr=c.sample_rate,
            frame_length=c.n_fft,
            hop_length=c.n_fft,
            center=False,
        )[: len(frames)]
        voiced = (log_energy > c.voicing_threshold_db) & np.isfinite(f0)
        return np.where(voiced, np.log2(np.maximum(f0, 1.0) / 100.0), 0.0).astype(np.float32)
