"""Loudness of the incoming audio per motion frame, kept incrementally, for the idle (silence) behaviour.

Why in the generator and not from the speech features: the features depend on the encoder (HuBERT has no
loudness channel), while "is anyone speaking" must mean the same thing for every model. RMS level in dBFS per
motion frame is encoder-independent and costs one bincount per pushed chunk.
"""

from __future__ import annotations

import numpy as np

FLOOR_DB = -100.0


class FrameLoudness:
    """Running sum of squares and sample count per motion frame; frame m covers samples [m r, (m + 1) r), r = rate/fps."""

    def __init__(self, sample_rate: int, fps: float) -> None:
        self.sample_rate, self.fps = sample_rate, fps
        self.reset()

    def reset(self) -> None:
        self.samples = 0
        self.first_frame = 0  # frame of self._energy[0]
        self._energy = np.zeros(0)  # (n,) sum of squares per frame
        self._count = np.zeros(0)  # (n,) samples per frame

    def push(self, audio: np.ndarray) -> None:
        if len(audio) == 0:
            return
        frames = ((self.samples + np.arange(len(audio))) * self.fps // self.sample_rate).astype(np.int64)
        last = int(frames[-1]) - self.first_frame + 1
        if last > len(self._energy):
            grow = last - len(self._energy)
            self._energy = np.concatenate([self._energy, np.zeros(grow)])
            self._count = np.concatenate([self._count, np.zeros(grow)])
        offset = frames - self.first_frame
        values = np.nan_to_num(np.asarray(audio, dtype=np.float64), nan=0.0, posinf=1.0, neginf=-1.0)
        self._energy += np.bincount(offset, weights=values**2, minlength=len(self._energy))
        self._count += np.bincount(offset, minlength=len(self._count))
        self.samples += len(audio)

    def db(self, start: int, end: int) -> np.ndarray:
        """(end - start,) RMS level in dBFS of motion frames [start, end); frames with no audio yet are silent."""
        out = np.full(end - start, FLOOR_DB)
        lo, hi = max(start, self.first_frame), min(end, self.first_frame + len(self._energy))
        if hi > lo:
            energy = self._energy[lo - self.first_frame : hi - self.first_frame]
            count = np.maximum(self._count[lo - self.first_frame : hi - self.first_frame], 1)
            out[lo - start : hi - start] = 10.0 * np.log10(np.maximum(energy / count, 10 ** (FLOOR_DB / 10)))
        return out

    def forget_before(self, frame: int) -> None:
        """Drop frames before ``frame``: the generator never asks for them again."""
        drop = min(max(0, frame - self.first_frame), len(self._energy))
        self._energy, self._count = self._energy[drop:], self._count[drop:]
        self.first_frame += drop
