"""`dimgestor bench per-hop`: the cost of one streaming hop as the context the denoiser sees grows.

A hop (the streaming default: 15 new frames = 0.5 s, sampled with 4 frames of lookahead, 8 DDIM steps) costs:
8 denoiser evaluations over the hop's 19 new frames given the context, then committing its 15 clean frames to the
context. Causal forms of both backbones carry the context (``causal.py``):

- Mamba-2 (forward-only) continues from each block's carried state, whatever the context's length; timed both with
  the chunked scan and frame by frame (``Mamba2.step``; for the paper-sized model at the first context only, its
  hop not depending on the context); the faster is the Mamba-2 figure (``mamba2_mode``).
- The transformer (causal attention) either keeps a KV cache of the context (the new frames attend to it) or
  recomputes the whole context every step; both are timed where affordable and the faster is its figure
  (``transformer_mode``): the KV cache is less work by construction, so recompute is timed on the shipped size
  only, to show by how much.

``per_hop_ratio`` = Mamba-2 / transformer per context length (below 1: Mamba-2's hop is cheaper). For reference,
``windowed`` times what the package streams today: the bidirectional shipped denoisers re-sampling the whole
2 s window (60 frames, 41 of them known) every hop, a context that cannot grow. Contexts are random clean frames:
cost does not depend on their values. The speech encoder and the fuzzy extractor (shared by both backbones) are
not included.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .causal import CausalContext, CausalDenoiser
from .common import (
    FLOPS_METHOD,
    autocast,
    count_flops,
    machine_info,
    median_ms,
    pure_mamba,
    report_head,
    set_threads,
    time_interleaved,
)
from .models import build, causal, describe, named_configs
from .report import write_report

CONTEXT_SECONDS = (2, 10, 30, 60, 120)
QUICK_CONTEXT_SECONDS = (2, 10)
GOAL_RATIO_AT_60S = 0.25
SCHEMA = 1


@dataclass
class Settings:
    contexts_seconds: tuple[float, ...]
    hop_frames: int
    lookahead_frames: int
    window_frames: int
    steps: int
    batch: int
    warmup: int
    repeats: int
    paper_warmup: int
    paper_repeats: int
    threads: int
    device: str
    dtype: str
    quick: bool
    pairs: tuple[str, ...]


def seconds_key(seconds: float) -> str:
    return f"{seconds:g}"


def default_settings(quick: bool, threads: int, device: str, dtype: str, paper: bool = True,
                     contexts: list[float] | None = None, batch: int = 1) -> Settings:
    from ..streaming.generator import StreamingConfig

    stream = StreamingConfig()
    return Settings(
        contexts_seconds=tuple(contexts or (QUICK_CONTEXT_SECONDS if quick else CONTEXT_SECONDS)),
        hop_frames=stream.hop_frames,
        lookahead_frames=stream.lookahead_frames,
        window_frames=stream.window_frames,
        steps=stream.steps,
        batch=batch,
        warmup=1 if quick else 2,
        repeats=1 if quick else 10,
        paper_warmup=1,
        paper_repeats=5 if torch.device(device).type == "cuda" else 3,
        threads=threads,
        device=device,
        dtype=dtype,
        quick=quick,
        pairs=("shipped",) if quick or not paper else ("shipped", "paper"),
    )


def _timesteps(model, steps: int) -> list[int]:
    train = model.config.diffusion.num_train_steps
    return torch.linspace(train - 1, 0, steps).round().long().tolist()


class _Stream:
    """One backbone's causal denoiser, its committed context and the inputs of a hop."""

    def __init__(self, model, backbone: str, settings: Settings, capacity: int, compute_dtype: torch.dtype) -> None:
        device, b = settings.device, settings.batch
        self.model, self.settings = model, settings
        self.denoiser = CausalDenoiser(model.denoiser, backbone, capacity)
        self.compute_dtype = compute_dtype
        self.context: CausalContext = self.denoiser.empty(b, device, compute_dtype)
        d, pose = model.config.d_model, model.config.pose_dim
        new = settings.hop_frames + settings.lookahead_frames
        self.style = torch.randn(b, d, device=device)
        self.x_new = torch.randn(b, new, pose, device=device)
        self.local_new = torch.randn(b, new, d, device=device)
        self.timesteps = [torch.full((b,), t, dtype=torch.long, device=device) for t in _timesteps(model, settings.steps)]
        self.zero = torch.zeros(b, dtype=torch.long, device=device)
        self.context_x = torch.zeros(b, 0, pose, device=device)  # the committed clean frames (for recompute)
        self.context_local = torch.zeros(b, 0, d, device=device)

    def extend(self, frames: int) -> None:
        """Commit random clean frames until the context holds ``frames`` (untimed)."""
        missing = frames - self.context.frames
        if missing <= 0:
            return
        b, device = self.settings.batch, self.settings.device
        x0 = torch.randn(b, missing, self.context_x.shape[2], device=device)
        local = torch.randn(b, missing, self.context_local.shape[2], device=device)
        with torch.inference_mode(), autocast(device, self.settings.dtype):
            self.context = self.denoiser.commit(x0, local, self.style, self.context)
        self.context_x = torch.cat([self.context_x, x0], dim=1)
        self.context_local = torch.cat([self.context_local, local], dim=1)

    def hop(self, mode: str) -> None:
        """One hop: ``steps`` evaluations over the new frames, then committing the hop's frames (kept aside)."""
        s, hop = self.settings, self.settings.hop_frames
        with torch.inference_mode(), autocast(s.device, s.dtype):
            if mode == "recompute":
                # no carried context: every step runs over context + new frames, clean context at timestep 0
                x = torch.cat([self.context_x, self.x_new], dim=1)
                local = torch.cat([self.context_local, self.local_new], dim=1)
                scratch = self.denoiser.empty(s.batch, s.device, self.compute_dtype) if self._scratch is None \
                    else self._scratch
                self._scratch = scratch
                past = self.context_x.shape[1]
                for t in self.timesteps:
                    t_tokens = torch.cat([torch.zeros(s.batch, past, dtype=torch.long, device=t.device),
                                          t[:, None].expand(s.batch, x.shape[1] - past)], dim=1)
                    self.denoiser(x, t_tokens, local, self.style, scratch)
                return
            run = self.denoiser.step_frames if mode == "step" else self.denoiser
            for t in self.timesteps:
                run(self.x_new, t, self.local_new, self.style, self.context)
            run(self.x_new[:, :hop], self.zero, self.local_new[:, :hop], self.style, self.context, commit=True)

    _scratch: CausalContext | None = None


def _flops(stream: _Stream, mode: str) -> int:
    """FLOPs of one hop, counted on the pure-PyTorch path (a fused Triton scan is invisible to the counter)."""
    with pure_mamba(stream.model):
        return count_flops(lambda: stream.hop(mode))


def _windowed(models: dict, settings: Settings, warmup: int, repeats: int) -> dict:
    """Today's streaming hop: the bidirectional denoisers re-sample a whole window, its start known (clean context)."""
    device, b = settings.device, settings.batch
    length, known_frames = settings.window_frames, settings.window_frames - settings.hop_frames - settings.lookahead_frames
    calls = {}
    for backbone, model in models.items():
        d, pose = model.config.d_model, model.config.pose_dim
        local, style = torch.randn(b, length, d, device=device), torch.randn(b, d, device=device)
        known = torch.randn(b, length, pose, device=device)
        mask = torch.zeros(b, length, 1, dtype=torch.bool, device=device)
        mask[:, :known_frames] = True

        def call(model=model, local=local, style=style, known=known, mask=mask):
            with torch.inference_mode(), autocast(device, settings.dtype):
                model.sample(local, style, steps=settings.steps, known=known, known_mask=mask, context=True)
        calls[backbone] = call
    times = time_interleaved(calls, warmup, repeats, device)
    result = {f"{backbone}_ms": median_ms(times[backbone]) for backbone in models}
    result.update({"window_frames": length, "known_frames": known_frames, "steps": settings.steps,
                   "ratio": result["mamba2_ms"] / result["transformer_ms"]})
    return result


def run(out: Path | None, quick: bool, threads: int = 2, device: str = "cpu", dtype: str = "float32",
        paper: bool = True, contexts: list[float] | None = None, batch: int = 1) -> dict:
    settings = default_settings(quick, threads, device, dtype, paper, contexts, batch)
    set_threads(threads)
    machine = machine_info(device, threads)
    cuda = torch.device(device).type == "cuda"
    compute_dtype = torch.float32 if dtype == "float32" else getattr(torch, dtype)
    pair_configs = {"shipped": ("shipped_mamba2", "shipped_transformer"), "paper": ("paper_mamba2", "paper_transformer")}
    configs_out, results, windowed, by_pair = {}, [], {}, {}
    new = settings.hop_frames + settings.lookahead_frames
    for pair in settings.pairs:
        names = pair_configs[pair]
        configs = named_configs(names)
        fps = configs[names[0]].motion_fps
        hop_ms = 1000 * settings.hop_frames / fps
        warmup, repeats = ((settings.warmup, settings.repeats) if pair == "shipped"
                           else (settings.paper_warmup, settings.paper_repeats))
        recompute = pair == "shipped" or cuda
        # today's windowed streaming, with the bidirectional models
        models = {configs[n].backbone: build(configs[n], device) for n in names}
        windowed[pair] = _windowed(models, settings, warmup, repeats)
        print(f"{pair}: windowed hop (today's streaming, {settings.window_frames}-frame window): mamba2 "
              f"{windowed[pair]['mamba2_ms']:.1f} ms, transformer {windowed[pair]['transformer_ms']:.1f} ms", flush=True)
        del models
        # causal models with carried context
        causal_configs = {configs[n].backbone: causal(configs[n]) for n in names}
        for backbone, config in causal_configs.items():
            configs_out[f"{pair}_{backbone}_causal"] = describe(config)
        capacity = round(max(settings.contexts_seconds) * fps) + new
        streams = {backbone: _Stream(build(config, device), backbone, settings, capacity, compute_dtype)
                   for backbone, config in causal_configs.items()}
        by_pair[pair] = {}
        for seconds in sorted(settings.contexts_seconds):
            frames = round(seconds * fps)
            for stream in streams.values():
                stream.extend(frames)
            m, t = streams["mamba2"], streams["transformer"]
            candidates = {"mamba2_scan": lambda: m.hop("scan"), "transformer_kv_cache": lambda: t.hop("kv_cache")}
            # Mamba-2's hop does not depend on the context; frame-by-frame stepping of the paper-sized model is
            # slow, so it is timed at the first context only there
            if pair == "shipped" or seconds == min(settings.contexts_seconds):
                candidates["mamba2_step"] = lambda: m.hop("step")
            if recompute:
                candidates["transformer_recompute"] = lambda: t.hop("recompute")
            times = time_interleaved(candidates, warmup, repeats, device)
            ms = {name: median_ms(values) for name, values in times.items()}
            mamba_mode = min((mode for mode in ("scan", "step") if f"mamba2_{mode}" in ms),
                             key=lambda mode: ms[f"mamba2_{mode}"])
            transformer_mode = min((mode for mode in ("kv_cache", "recompute") if f"transformer_{mode}" in ms),
                                   key=lambda mode: ms[f"transformer_{mode}"])
            mamba_ms, transformer_ms = ms[f"mamba2_{mamba_mode}"], ms[f"transformer_{transformer_mode}"]
            ratio = mamba_ms / transformer_ms
            row = {
                "pair": pair,
                "context_seconds": seconds,
                "context_frames": frames,
                "new_frames": new,
                "mamba2_ms": mamba_ms,
                "mamba2_mode": mamba_mode,
                "mamba2_scan_ms": ms["mamba2_scan"],
                "mamba2_step_ms": ms.get("mamba2_step"),
                "transformer_ms": transformer_ms,
                "transformer_mode": transformer_mode,
                "transformer_kv_cache_ms": ms["transformer_kv_cache"],
                "transformer_recompute_ms": ms.get("transformer_recompute"),
                "per_hop_ratio": ratio,
                "per_hop_ratio_vs_recompute": (mamba_ms / ms["transformer_recompute"]
                                               if "transformer_recompute" in ms else None),
                "hop_ms": hop_ms,
                "mamba2_fraction_of_hop": mamba_ms / hop_ms,
                "transformer_fraction_of_hop": transformer_ms / hop_ms,
                "mamba2_state_mb": m.context.state_bytes() / 2**20,
                "transformer_kv_cache_mb": t.context.state_bytes() / 2**20,
                "mamba2_flops_per_hop": _flops(m, "scan"),
                "transformer_flops_per_hop": _flops(t, "kv_cache"),
                "repeats": repeats,
                "warmup": warmup,
            }
            results.append(row)
            by_pair[pair][seconds_key(seconds)] = ratio
            recompute_text = (f", recompute {ms['transformer_recompute']:.1f} ms" if recompute else "")
            step_text = f", step {ms['mamba2_step']:.1f}" if "mamba2_step" in ms else ""
            print(f"{pair}: context {seconds:>5g} s ({frames:>4} frames): mamba2 {mamba_ms:8.1f} ms ({mamba_mode}; scan "
                  f"{ms['mamba2_scan']:.1f}{step_text})  transformer {transformer_ms:8.1f} ms "
                  f"({transformer_mode}; kv cache {ms['transformer_kv_cache']:.1f} ms{recompute_text})  "
                  f"per-hop ratio {ratio:.2f}", flush=True)
        del streams
    primary = by_pair.get("shipped", {})
    at_60 = primary.get(seconds_key(60))
    report = {
        **report_head("per_hop", SCHEMA, machine, settings, __doc__),
        "flops_method": FLOPS_METHOD,
        "configs": configs_out,
        "results": results,
        "windowed": windowed,
        "per_hop_ratio": primary,
        "per_hop_ratio_by_pair": by_pair,
        "goal": {"per_hop_ratio_at_60s_at_most": GOAL_RATIO_AT_60S, "per_hop_ratio_at_60s": at_60,
                 "met": None if at_60 is None else at_60 <= GOAL_RATIO_AT_60S},
    }
    write_report(report, out)
    return report
