"""`dimgestor bench denoiser`: Mamba-2 against transformer denoisers, side by side, per sequence length and batch.

Configurations and pairings: ``models.py`` (the shipped pair at equal width, depth and sampling steps; the shipped
Mamba-2 against a transformer widened to its parameter count; a paper-sized pair, 12 blocks x 1024). Lengths run
from a streaming window (60 frames, 2 s at 30 fps) to 60 s of motion (1800 frames) and beyond (3600).

Per (configuration, length, batch): the median time of one denoiser step (one network evaluation over the whole
sequence) and of one full sampling (``DiMGestor.sample``, the streaming default of 8 DDIM steps), also per second of
generated motion (all sequences of the batch together); the working memory of a step (measured in a separate
process per model, see ``common.MEMORY_METHOD_CPU``); parameters; FLOPs per frame per step (``common.FLOPS_METHOD``).
The models of a group are measured in the same process, interleaved round by round, so the ratios printed
(Mamba-2 / transformer: below 1, Mamba-2 is faster or smaller) compare like with like even on a busy machine;
compare ratios rather than absolute figures across runs. The crossover is the length from which Mamba-2's step is
faster than the transformer's at every longer length measured, interpolated on log-log axes between the two
lengths around it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from .common import (
    FLOPS_METHOD,
    MEMORY_METHOD_CPU,
    MEMORY_METHOD_CUDA,
    autocast,
    denoiser_flops_per_frame,
    denoiser_inputs,
    machine_info,
    measure_step_memory,
    median_ms,
    report_head,
    set_threads,
    time_interleaved,
)
from .models import PAIRINGS, PAPER_CONFIGS, SMALL_CONFIGS, build, describe, named_configs
from .report import write_report

FULL_LENGTHS = (60, 150, 300, 600, 1800, 3600)
QUICK_LENGTHS = (60, 600)
SCHEMA = 2
MEMORY_RESOLUTION_MB = 0.5  # below this a step's working memory is not resolved (pages, allocator)


@dataclass
class Settings:
    lengths: tuple[int, ...]
    batches: tuple[int, ...]  # shipped-size configurations
    paper_batches: tuple[int, ...]  # paper-sized configurations (empty: not measured)
    warmup: int
    repeats: int
    sampling_repeats: int  # full samplings timed per case (0: derived as steps x step time)
    paper_warmup: int
    paper_repeats: int
    paper_sampling_repeats: int
    sampling_steps: int
    threads: int
    device: str
    dtype: str
    quick: bool


def default_settings(quick: bool, threads: int, device: str, dtype: str, paper: bool = True,
                     lengths: list[int] | None = None, batches: list[int] | None = None) -> Settings:
    from ..streaming.generator import StreamingConfig

    cuda = torch.device(device).type == "cuda"
    batches = tuple(batches or ((1, 2) if quick else (1, 8)))
    if quick or not paper:
        paper_batches: tuple[int, ...] = ()
    else:
        # On CPU the paper-sized pair at batch 1 alone takes most of the run (about 0.5 GFLOP per frame per step).
        paper_batches = batches if cuda else (1,)
    return Settings(
        lengths=tuple(lengths or (QUICK_LENGTHS if quick else FULL_LENGTHS)),
        batches=batches,
        paper_batches=paper_batches,
        warmup=1,
        repeats=1 if quick else 5,
        sampling_repeats=1 if quick else 2,  # a sampling is 8 steps: 2 of them weigh like 16 step repeats
        paper_warmup=1,
        paper_repeats=5 if cuda else 3,
        paper_sampling_repeats=3 if cuda else 0,
        sampling_steps=StreamingConfig().steps,
        threads=threads,
        device=device,
        dtype=dtype,
        quick=quick,
    )


def _measure_group(names: tuple[str, ...], batches: tuple[int, ...], settings: Settings, warmup: int, repeats: int,
                   sampling_repeats: int, configs: dict, pairings: list) -> list[dict]:
    device, dtype = settings.device, settings.dtype
    models = {name: build(configs[name], device) for name in names}
    described = {name: {k: v for k, v in describe(configs[name]).items() if k != "model_config"} for name in names}
    rows = []
    for batch in batches:
        for frames in settings.lengths:
            inputs = {name: denoiser_inputs(configs[name], frames, batch, device) for name in names}

            def step(name):
                def call():
                    with torch.inference_mode(), autocast(device, dtype):
                        return models[name].denoiser(*inputs[name])
                return call

            def sampling(name):
                def call():
                    _, _, local, style = inputs[name]
                    with torch.inference_mode(), autocast(device, dtype):
                        return models[name].sample(local, style, steps=settings.sampling_steps)
                return call

            steps = time_interleaved({name: step(name) for name in names}, warmup, repeats, device)
            samplings = (time_interleaved({name: sampling(name) for name in names}, 0, sampling_repeats, device)
                         if sampling_repeats else None)
            seconds = frames / configs[names[0]].motion_fps
            by_name = {}
            for name in names:
                ms = median_ms(steps[name])
                sampling_ms = median_ms(samplings[name]) if samplings else ms * settings.sampling_steps
                row = {
                    "config": name,
                    **described[name],
                    "frames": frames,
                    "seconds": seconds,
                    "batch": batch,
                    "repeats": repeats,
                    "warmup": warmup,
                    "threads": settings.threads,
                    "device": device,
                    "dtype": dtype,
                    "ms_per_step": ms,
                    "ms_per_step_min": min(steps[name]) * 1000,
                    "ms_per_step_samples": [round(s * 1000, 4) for s in steps[name]],
                    "ms_per_motion_second_per_step": ms / (batch * seconds),
                    "sampling_steps": settings.sampling_steps,
                    "ms_per_sampling": sampling_ms,
                    "sampling_measured": bool(samplings),
                    "ms_per_motion_second_sampling": sampling_ms / (batch * seconds),
                }
                rows.append(row)
                by_name[name] = row
                print(f"{row['backbone']:>11} {name:<20} batch {batch:>2}  {frames:>5} frames ({seconds:6.1f} s)  "
                      f"params {row['parameters_denoiser'] / 1e6:7.2f} M  {ms:9.2f} ms/step  "
                      f"{sampling_ms:9.1f} ms/sampling", flush=True)
            for pairing in pairings:
                if pairing.mamba2 in by_name and pairing.transformer in by_name:
                    ratio = by_name[pairing.mamba2]["ms_per_step"] / by_name[pairing.transformer]["ms_per_step"]
                    print(f"{'':>11} {pairing.name}: mamba2 / transformer time ratio at {frames} frames, batch {batch}: "
                          f"{ratio:.2f}", flush=True)
            del inputs
    del models
    return rows


def crossover(lengths: list[int], ratios: list[float], fps: float) -> dict:
    """Where Mamba-2 (ratio < 1: faster) overtakes the transformer for good, over the measured lengths."""
    pairs = sorted(zip(lengths, ratios))
    lengths, ratios = [p[0] for p in pairs], [p[1] for p in pairs]
    if all(r < 1 for r in ratios):
        return {"status": "mamba2_faster_at_every_length", "frames": None, "seconds": None,
                "statement": f"Mamba-2 is faster at every measured length ({lengths[0]}-{lengths[-1]} frames)"}
    if ratios[-1] >= 1:
        found = {"status": "transformer_faster_at_longest_length", "frames": None, "seconds": None,
                 "statement": f"no crossover up to {lengths[-1]} frames ({lengths[-1] / fps:g} s): the transformer is "
                              f"still faster there (Mamba-2 takes {ratios[-1]:.2f}x its time)"}
        if len(lengths) >= 2 and ratios[-1] < ratios[-2]:
            # the ratio is falling: where the line through the two longest lengths (log-log) reaches 1
            x0, x1 = math.log(lengths[-2]), math.log(lengths[-1])
            y0, y1 = math.log(ratios[-2]), math.log(ratios[-1])
            frames = math.exp(x1 + (0 - y1) * (x1 - x0) / (y1 - y0))
            found["extrapolated_frames"] = round(frames)
            found["statement"] += (f"; extrapolating the two longest lengths on log-log axes, about {round(frames)} "
                                   f"frames ({frames / fps:.0f} s), not measured")
        return found
    last_slower = max(i for i, r in enumerate(ratios) if r >= 1)
    lo, hi = last_slower, last_slower + 1
    x0, x1 = math.log(lengths[lo]), math.log(lengths[hi])
    y0, y1 = math.log(ratios[lo]), math.log(ratios[hi])
    frames = math.exp(x0 + (0 - y0) * (x1 - x0) / (y1 - y0)) if y1 != y0 else lengths[hi]
    return {"status": "crossover", "frames": round(frames), "seconds": frames / fps,
            "between_frames": [lengths[lo], lengths[hi]],
            "statement": f"Mamba-2 becomes faster from about {round(frames)} frames ({frames / fps:.0f} s of motion; "
                         f"measured slower at {lengths[lo]}, faster at {lengths[hi]} and beyond)"}


def _ratios(rows: list[dict], pairings: list, fps: float) -> tuple[list[dict], dict]:
    index = {(r["config"], r["batch"], r["frames"]): r for r in rows}
    ratios, crossovers = [], {}
    for pairing in pairings:
        batches = sorted({r["batch"] for r in rows if r["config"] == pairing.mamba2}
                         & {r["batch"] for r in rows if r["config"] == pairing.transformer})
        for batch in batches:
            lengths, time_ratios = [], []
            for frames in sorted({r["frames"] for r in rows}):
                m, t = index.get((pairing.mamba2, batch, frames)), index.get((pairing.transformer, batch, frames))
                if m is None or t is None:
                    continue
                entry = {
                    "pairing": pairing.name, "batch": batch, "frames": frames, "seconds": frames / fps,
                    "time_ratio": m["ms_per_step"] / t["ms_per_step"],
                    "sampling_ratio": m["ms_per_sampling"] / t["ms_per_sampling"],
                    "params_ratio": m["parameters_denoiser"] / t["parameters_denoiser"],
                    "flops_ratio": m["flops_per_frame_per_step"] / t["flops_per_frame_per_step"],
                }
                if m.get("peak_step_memory_mb") is not None and t.get("peak_step_memory_mb") is not None:
                    # working memory below MEMORY_RESOLUTION_MB is at the resolution of the method: no ratio
                    entry["memory_ratio"] = (m["peak_step_memory_mb"] / t["peak_step_memory_mb"]
                                             if min(m["peak_step_memory_mb"], t["peak_step_memory_mb"])
                                             >= MEMORY_RESOLUTION_MB else None)
                    entry["model_memory_ratio"] = ((m["denoiser_weights_mb"] + m["peak_step_memory_mb"])
                                                   / (t["denoiser_weights_mb"] + t["peak_step_memory_mb"]))
                if m.get("peak_memory_mb") and t.get("peak_memory_mb"):
                    # CUDA: max_memory_allocated (weights, inputs, step); CPU: the whole process's RSS peak
                    entry["peak_memory_ratio"] = m["peak_memory_mb"] / t["peak_memory_mb"]
                ratios.append(entry)
                lengths.append(frames)
                time_ratios.append(entry["time_ratio"])
            if lengths:
                crossovers.setdefault(pairing.name, {})[str(batch)] = crossover(lengths, time_ratios, fps)
    return ratios, crossovers


def run(out: Path | None, quick: bool, threads: int = 2, device: str = "cpu", dtype: str = "float32",
        paper: bool = True, lengths: list[int] | None = None, batches: list[int] | None = None) -> dict:
    settings = default_settings(quick, threads, device, dtype, paper, lengths, batches)
    set_threads(threads)
    machine = machine_info(device, threads)
    names = list(SMALL_CONFIGS) + (list(PAPER_CONFIGS) if settings.paper_batches else [])
    configs = named_configs(names)
    pairings = [p for p in PAIRINGS if p.mamba2 in configs and p.transformer in configs]
    fps = configs[names[0]].motion_fps
    rows = _measure_group(SMALL_CONFIGS, settings.batches, settings, settings.warmup, settings.repeats,
                          settings.sampling_repeats, configs, pairings)
    if settings.paper_batches:
        rows += _measure_group(PAPER_CONFIGS, settings.paper_batches, settings, settings.paper_warmup,
                               settings.paper_repeats, settings.paper_sampling_repeats, configs, pairings)
    # Memory, one child process per model; FLOPs on the meta device.
    for name in names:
        cases = sorted({(r["frames"], r["batch"]) for r in rows if r["config"] == name})
        memory = {(m["frames"], m["batch"]): m for m in measure_step_memory(configs[name], cases, device, dtype,
                                                                             threads)}
        flops = {frames: denoiser_flops_per_frame(configs[name], frames) for frames, _ in cases}
        for row in rows:
            if row["config"] == name:
                m = memory[(row["frames"], row["batch"])]
                row.update({
                    "flops_per_frame_per_step": flops[row["frames"]],
                    "peak_step_memory_mb": m["step_working_mb"],
                    "peak_memory_mb": m["peak_memory_mb"],
                    "memory_before_mb": m["memory_before_mb"],
                    "memory_method": m["memory_method"],
                    "process_peak_rss_mb": m["peak_memory_mb"] if torch.device(device).type == "cpu" else None,
                })
    ratios, crossovers = _ratios(rows, pairings, fps)
    for entry in ratios:
        print(f"{entry['pairing']:>21} batch {entry['batch']:>2} {entry['frames']:>5} frames: mamba2 / transformer "
              f"time {entry['time_ratio']:.2f}  sampling {entry['sampling_ratio']:.2f}  memory "
              f"{entry.get('memory_ratio') or float('nan'):.2f}  params {entry['params_ratio']:.2f}  "
              f"FLOPs {entry['flops_ratio']:.2f}", flush=True)
    for pairing, per_batch in crossovers.items():
        for batch, found in per_batch.items():
            print(f"crossover, {pairing}, batch {batch}: {found['statement']}", flush=True)
    report = {
        **report_head("denoiser", SCHEMA, machine, settings),
        "unit_notes": (
            "ms_per_step: median time of one denoiser forward over the whole sequence, all `batch` sequences at "
            "once; ms_per_sampling: one full DiMGestor.sample with `sampling_steps` steps (measured unless "
            "sampling_measured is false: then sampling_steps x ms_per_step); *_per_motion_second: divided by the "
            "seconds of motion generated (batch x frames / fps); peak_step_memory_mb: working memory of one step "
            "above the weights and inputs; flops_per_frame_per_step: one step at batch 1, divided by frames; "
            "ratios are mamba2 / transformer (below 1: Mamba-2 faster or smaller)"),
        "memory_method": MEMORY_METHOD_CUDA if torch.device(device).type == "cuda" else MEMORY_METHOD_CPU,
        "flops_method": FLOPS_METHOD,
        "configs": {name: describe(config) for name, config in configs.items()},
        "pairings": [dataclasses.asdict(p) for p in pairings],
        "results": rows,
        "ratios": ratios,
        "crossover": crossovers,
    }
    write_report(report, out)
    return report
