"""`dimgestor bench streaming`: real-time factor and latency of the streaming generator, per configuration.

A long clip (the shipped speech clip looped to ``--minutes``) is pushed through StreamingGestureGenerator in
50 ms chunks as fast as possible, timing every push. Latency is then what a paced (microphone) stream would see,
replayed from those measured compute times: chunk k arrives at k x 50 ms, is processed as soon as the previous
chunk is done, and a hop's latency is the time from the arrival of the audio chunk that completes it to the end
of the push that publishes it, plus the lookahead (the hop waits for lookahead_frames of audio after its own
frames). The hop's own length (the audio it covers) is not counted: "latency beyond the hop". RTF is total
compute time / audio duration.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..audio.io import load_audio
from ..errors import UserError
from ..features.factory import make_speech_encoder
from ..model.gesture_model import DiMGestor
from ..paths import default_weights_dir, demo_audio_file
from ..streaming.generator import StreamingConfig, StreamingGestureGenerator
from .report import rss_mb, write_report

CHUNK_SECONDS = 0.05


def paced_latencies(arrivals: np.ndarray, compute: np.ndarray, hops_per_chunk: np.ndarray) -> np.ndarray:
    """Replay measured compute times as a paced stream: one latency (s) per hop published."""
    latencies = []
    finish = 0.0
    for arrival, cost, hops in zip(arrivals, compute, hops_per_chunk):
        finish = max(finish, arrival) + cost
        latencies += [finish - arrival] * int(hops)
    return np.asarray(latencies)


def measure(model: DiMGestor, audio: np.ndarray, config: StreamingConfig) -> dict:
    encoder = make_speech_encoder(model.config.speech_encoder)
    generator = StreamingGestureGenerator(model, encoder, config)
    rate, fps = encoder.sample_rate, model.config.motion_fps
    chunk = int(CHUNK_SECONDS * rate)
    minute = 60 * rate
    starts = range(0, len(audio), chunk)
    # Preallocated: per-chunk records kept in Python lists would grow the process by ~100 bytes per chunk
    # (7 MB over an hour of 50 ms chunks) and show up as memory drift that is the benchmark's, not the generator's.
    compute_s = np.zeros(len(starts))
    hops_n = np.zeros(len(starts), dtype=np.int64)
    # Lag (frames) between the audio pushed and the motion published; it swings within a hop by design, so drift
    # is how far its range in the last minute has moved from its range in the first. NaN before the first hop.
    lags = np.full(len(starts), np.nan)
    rss_start = rss_mb()
    rss_trace = [rss_start]  # one reading per minute of audio
    for index, start in enumerate(starts):
        began = time.perf_counter()
        published = generator.push(audio[start : start + chunk])
        compute_s[index] = time.perf_counter() - began
        hops_n[index] = len(published)
        if generator.frames_emitted:  # from the first published hop on: before it, the lag is the warm-up fill
            lags[index] = generator.samples_pushed * fps / rate - generator.frames_emitted
        if (start + chunk) // minute > start // minute:
            rss_trace.append(rss_mb())
    rss_end = rss_mb()
    arrivals = (np.arange(len(compute_s)) + 1) * CHUNK_SECONDS  # the chunk's last sample arrives then
    lookahead_s = config.lookahead_frames / fps
    latencies = (paced_latencies(arrivals, compute_s, hops_n) + lookahead_s) * 1000
    duration = len(audio) / rate
    per_minute = max(1, int(60 / CHUNK_SECONDS))
    lags = lags[np.isfinite(lags)]
    first, last = lags[:per_minute], lags[-per_minute:]
    return {
        "config": asdict(config),
        "audio_seconds": duration,
        "rtf": float(compute_s.sum() / duration),
        "latency_ms": {
            "p50": float(np.percentile(latencies, 50)),
            "p95": float(np.percentile(latencies, 95)),
            "max": float(latencies.max()),
        },
        "hops": int(hops_n.sum()),
        "frames": int(generator.frames_emitted),
        "rss_mb": {"start": rss_start, "end": rss_end, "peak": max(rss_trace + [rss_end]),
                   "drift_percent": 100.0 * (rss_end - rss_start) / rss_start, "per_minute": rss_trace},
        "timestamp": {
            "lag_frames_first_minute": [float(first.min()), float(first.max())],
            "lag_frames_last_minute": [float(last.min()), float(last.max())],
            "drift_frames": float(max(abs(last.min() - first.min()), abs(last.max() - first.max()))),
        },
    }


def configurations() -> list[tuple[str, StreamingConfig]]:
    """The default configuration first, then variants that trade quality for latency."""
    return [
        ("default", StreamingConfig()),
        ("steps4", StreamingConfig(steps=4)),
        ("dpmpp2m_steps4", StreamingConfig(steps=4, sampler="dpmpp2m")),
        ("hop10_window45", StreamingConfig(hop_frames=10, window_frames=45)),
        ("no_lookahead", StreamingConfig(lookahead_frames=0)),
    ]


def run(out: Path | None, minutes: float, threads: int = 2, weights: Path | None = None,
        configs: list[str] | None = None) -> dict:
    """Stream ``minutes`` of speech through each configuration (``configs``: names, default all, default first)."""
    chosen = [(name, config) for name, config in configurations() if configs is None or name in configs]
    unknown = sorted(set(configs or []) - {name for name, _ in configurations()})
    if unknown:
        raise UserError(f"unknown configuration(s) {', '.join(unknown)}; choose from "
                        f"{', '.join(name for name, _ in configurations())}")
    torch.set_num_threads(threads)
    model = DiMGestor.load(weights or default_weights_dir())
    clip = load_audio(demo_audio_file(), 16000)
    repeats = max(1, int(np.ceil(minutes * 60 * 16000 / len(clip))))
    audio = np.tile(clip, repeats)[: int(minutes * 60 * 16000)]
    measure(model, audio[: 5 * 16000], StreamingConfig())  # warm-up: first-call allocations are not drift
    results = {}
    for name, config in chosen:
        result = measure(model, audio, config)
        results[name] = result
        print(
            f"{name:>16}: rtf {result['rtf']:.3f}  latency beyond hop p50 {result['latency_ms']['p50']:7.1f} ms  "
            f"p95 {result['latency_ms']['p95']:7.1f} ms  rss {result['rss_mb']['start']:.0f} -> "
            f"{result['rss_mb']['end']:.0f} MB ({result['rss_mb']['drift_percent']:+.2f} %)  timestamp drift "
            f"{result['timestamp']['drift_frames']:.2f} frames",
            flush=True,
        )
    report = {
        "benchmark": "streaming",
        "machine": {"platform": platform.platform(), "threads": threads, "torch": torch.__version__},
        "weights": str(weights or default_weights_dir()),
        "audio_minutes": minutes,
        "latency_definition": __doc__.split("\n\n")[1].replace("\n", " "),
        "drift_definition": "memory: resident memory after the stream vs after the warm-up, percent; timestamp: "
        "lag = audio pushed (in motion frames) - frames published, sampled after every chunk; drift is how far "
        "its range in the last minute moved from its range in the first (frames)",
        "configurations": results,
    }
    write_report(report, out)
    return report
