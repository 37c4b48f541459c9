"""Running figures of a stream (real-time factor, latency percentiles, overruns) for /diagnostics."""

from __future__ import annotations

from collections import deque

import numpy as np


class StreamStats:
    def __init__(self, window: int = 200) -> None:
        self.latencies_ms: deque[float] = deque(maxlen=window)
        self.compute_seconds = 0.0
        self.audio_seconds = 0.0
        self.overruns = 0  # hops published later than one hop after their audio
        self.dropped_audio_chunks = 0
        self.errors = 0
        self.hops = 0

    def record_hop(self, latency_s: float, hop_seconds: float) -> None:
        self.hops += 1
        self.latencies_ms.append(latency_s * 1000.0)
        if latency_s > hop_seconds:
            self.overruns += 1

    def record_compute(self, compute_s: float, audio_s: float) -> None:
        self.compute_seconds += compute_s
        self.audio_seconds += audio_s

    @property
    def real_time_factor(self) -> float:
        return self.compute_seconds / self.audio_seconds if self.audio_seconds > 0 else 0.0

    def latency_percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else 0.0
