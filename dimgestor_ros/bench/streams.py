"""`dimgestor bench streams`: how many real-time streams one device sustains, streams batched together.

A hop of B streams at once (the streaming defaults: every 15 frames = 0.5 s, each stream's fuzzy extractor takes the
hop's speech frames, then the 60-frame window is sampled with 8 DDIM steps, its first 41 frames known as clean
context) must finish within the hop's duration. The search doubles B from 1 while the slowest of ``repeats`` hops
stays within a hop's duration, then bisects between the last batch that kept up and the first that did not (or ran
out of memory); ``streams`` is the largest that kept up. Speech features (the acoustic front end runs on the CPU per
stream, see ``bench speech``) and the CPU-side smoothing of each hop are not included.

Modes: ``eager``; ``cuda_graph`` (each denoiser call replays a CUDA graph captured for the batch's shapes, CUDA
only); ``compile`` (``torch.compile`` of the denoiser, dynamic shapes). A mode that fails (no CUDA, a capture or
compile error) is reported with its error instead of figures.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import torch

from .common import autocast, machine_info, report_head, set_threads, synchronize, time_interleaved
from .models import build, shipped_config
from .report import write_report

SCHEMA = 1
MODES = ("eager", "cuda_graph", "compile")


@dataclass
class Settings:
    configs: tuple[str, ...]
    modes: tuple[str, ...]
    max_batch: int
    warmup: int
    repeats: int
    hop_frames: int
    lookahead_frames: int
    window_frames: int
    steps: int
    threads: int
    device: str
    dtype: str
    quick: bool


class CudaGraphDenoiser:
    """Replays one CUDA graph of ``denoiser`` captured for fixed input shapes (static input buffers are refilled)."""

    def __init__(self, denoiser, example: tuple[torch.Tensor, ...]) -> None:
        self.static = [tensor.clone() for tensor in example]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                denoiser(*self.static)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = denoiser(*self.static)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        for buffer, value in zip(self.static, inputs):
            buffer.copy_(value)
        self.graph.replay()
        return self.output.clone()


class _Hop:
    """One hop of ``batch`` streams, for one model and mode."""

    def __init__(self, model, batch: int, settings: Settings, mode: str, compiled=None) -> None:
        device = settings.device
        config = model.config
        self.model, self.settings = model, settings
        length = settings.window_frames
        self.speech = torch.randn(batch, settings.hop_frames * config.speech_fps // config.motion_fps, config.speech_dim,
                                  device=device)
        self.state = model.fuzzy.init_state(batch, device=device)
        self.local = torch.randn(batch, length, config.d_model, device=device)
        self.known = torch.randn(batch, length, config.pose_dim, device=device)
        self.mask = torch.zeros(batch, length, 1, dtype=torch.bool, device=device)
        self.mask[:, : length - settings.hop_frames - settings.lookahead_frames] = True
        self.denoise = model.denoiser if mode == "eager" else compiled
        if mode == "cuda_graph":
            t = torch.zeros(batch, length, dtype=torch.long, device=device)  # per-token timesteps (clean context)
            style = torch.randn(batch, config.d_model, device=device)
            with torch.inference_mode():
                self.denoise = CudaGraphDenoiser(model.denoiser, (self.known, t, self.local, style))

    def __call__(self) -> None:
        s = self.settings
        with torch.inference_mode():
            _, style, _ = self.model.fuzzy.forward_stream(self.speech, self.state)
            self.model.diffusion.sample(
                lambda x, t: self.denoise(x, t, self.local, style),
                tuple(self.known.shape), steps=s.steps, known=self.known, known_mask=self.mask,
                device=torch.device(s.device), context=True)


def _keeps_up(model, batch: int, settings: Settings, mode: str, compiled, hop_seconds: float) -> dict:
    if torch.device(settings.device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        hop = _Hop(model, batch, settings, mode, compiled)
        seconds = time_interleaved({"hop": hop}, settings.warmup, settings.repeats, settings.device)["hop"]
        memory = None
        if torch.device(settings.device).type == "cuda":
            memory = torch.cuda.max_memory_allocated() / 2**20
        return {"batch": batch, "ms_median": statistics.median(seconds) * 1000, "ms_max": max(seconds) * 1000,
                "keeps_up": max(seconds) <= hop_seconds, "peak_memory_mb": memory}
    except torch.cuda.OutOfMemoryError:
        return {"batch": batch, "keeps_up": False, "error": "out of memory"}
    finally:
        if torch.device(settings.device).type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()


def find_streams(model, settings: Settings, mode: str, compiled, hop_seconds: float) -> dict:
    """Largest batch whose slowest hop stays within ``hop_seconds``: doubling, then bisection."""
    probes = []

    def probe(batch: int) -> bool:
        result = _keeps_up(model, batch, settings, mode, compiled, hop_seconds)
        probes.append(result)
        print(f"    {mode:>10} batch {batch:>5}: " + (f"{result['ms_max']:8.1f} ms slowest hop"
              if "ms_max" in result else result.get("error", "")) + ("  keeps up" if result["keeps_up"] else ""),
              flush=True)
        return result["keeps_up"]

    good, bad = 0, None
    batch = 1
    while batch <= settings.max_batch:
        if probe(batch):
            good = batch
            batch *= 2
        else:
            bad = batch
            break
    if bad is not None:
        while bad - good > 1:
            middle = (good + bad) // 2
            if probe(middle):
                good = middle
            else:
                bad = middle
    at = next((p for p in probes if p["batch"] == good), None)
    return {"streams": good, "limited_by_max_batch": bad is None, "at_streams": at,
            "probes": sorted(probes, key=lambda p: p["batch"])}


def run(out: Path | None, quick: bool, threads: int = 2, device: str = "cpu", dtype: str = "float32",
        modes: list[str] | None = None, max_batch: int | None = None) -> dict:
    from ..streaming.generator import StreamingConfig

    stream = StreamingConfig()
    cuda = torch.device(device).type == "cuda"
    settings = Settings(
        configs=("shipped_mamba2",) if quick else ("shipped_mamba2", "shipped_transformer"),
        modes=tuple(modes or (("eager",) if quick else ("eager", "cuda_graph", "compile") if cuda else ("eager",))),
        max_batch=max_batch or (4 if quick else 4096 if cuda else 64),
        warmup=1 if quick else 2,
        repeats=2 if quick else 10,
        hop_frames=stream.hop_frames,
        lookahead_frames=stream.lookahead_frames,
        window_frames=stream.window_frames,
        steps=stream.steps,
        threads=threads,
        device=device,
        dtype=dtype,
        quick=quick,
    )
    set_threads(threads)
    machine = machine_info(device, threads)
    results = {}
    for name in settings.configs:
        backbone = "transformer" if name.endswith("transformer") else "mamba2"
        config = shipped_config(backbone)
        hop_seconds = settings.hop_frames / config.motion_fps
        model = build(config, device)
        results[name] = {"backbone": backbone, "hop_seconds": hop_seconds, "modes": {}}
        print(f"{name}: streams whose hop ({hop_seconds:g} s) keeps up on {device}", flush=True)
        for mode in settings.modes:
            try:
                if mode == "cuda_graph" and not cuda:
                    raise RuntimeError("CUDA graphs need a CUDA device")
                compiled = torch.compile(model.denoiser, dynamic=True) if mode == "compile" else None
                with autocast(device, dtype):
                    results[name]["modes"][mode] = find_streams(model, settings, mode, compiled, hop_seconds)
                synchronize(device)
                print(f"  {mode}: {results[name]['modes'][mode]['streams']} real-time streams", flush=True)
            except Exception as error:  # noqa: BLE001 - a mode that cannot run here is reported, not fatal
                results[name]["modes"][mode] = {"streams": None, "error": f"{type(error).__name__}: {error}"[:500]}
                print(f"  {mode}: not measured ({type(error).__name__}: {str(error)[:200]})", flush=True)
        del model
    report = {
        **report_head("streams", SCHEMA, machine, settings, __doc__),
        "results": results,
    }
    write_report(report, out)
    return report
