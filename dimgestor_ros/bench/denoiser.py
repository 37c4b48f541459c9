"""`dimgestor bench denoiser`: both backbones side by side, per window length, in one run.

Each (backbone, length) is measured in a fresh child process, so the peak resident memory it reports belongs to
that configuration alone. Times are medians over repeats after warm-up: these machines are shared and noisy, so
compare the ratios printed from one run rather than absolute figures across runs.
"""

from __future__ import annotations

import multiprocessing
import platform
import resource
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .report import rss_mb, write_report


@dataclass
class DenoiserCase:
    backbone: str
    frames: int
    d_model: int = 128
    n_blocks: int = 4
    batch: int = 1
    repeats: int = 10
    warmup: int = 3
    threads: int = 2



def _measure(case: DenoiserCase, queue) -> None:
    from ..model.config import ModelConfig
    from ..model.gesture_model import DiMGestor
    from ..model.profile import model_summary

    torch.set_num_threads(case.threads)
    torch.manual_seed(0)
    model = DiMGestor(ModelConfig(backbone=case.backbone, d_model=case.d_model, n_blocks=case.n_blocks)).eval()
    d = case.d_model
    x = torch.randn(case.batch, case.frames, model.config.pose_dim)
    local = torch.randn(case.batch, case.frames, d)
    style = torch.randn(case.batch, d)
    t = torch.full((case.batch,), 500, dtype=torch.long)
    baseline = rss_mb()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times = []
    with torch.inference_mode():
        for i in range(case.warmup + case.repeats):
            started = time.perf_counter()
            model.denoiser(x, t, local, style)
            if i >= case.warmup:
                times.append(time.perf_counter() - started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = model_summary(model, frames=case.frames)  # after timing: its own forward must not set the peak
    queue.put(
        {
            **asdict(case),
            **summary,
            "ms_per_step": statistics.median(times) * 1000,
            "ms_per_step_min": min(times) * 1000,
            # working memory of the step: the process peak above what the model and inputs already held
            "peak_step_memory_mb": max(0.0, peak - max(baseline, peak_before)),
            "process_peak_rss_mb": peak,
        }
    )


def measure(case: DenoiserCase) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_measure, args=(case, queue))
    process.start()
    result = queue.get(timeout=1800)
    process.join()
    return result


def run(out: Path | None, quick: bool, threads: int = 2) -> dict:
    lengths = (60, 600) if quick else (60, 150, 300, 600, 1800, 3600)
    rows = []
    for frames in lengths:
        pair = {}
        for backbone in ("mamba2", "transformer"):
            row = measure(DenoiserCase(backbone, frames, threads=threads, repeats=5 if quick else 10))
            rows.append(row)
            pair[backbone] = row
            print(
                f"{backbone:>11}  {frames:>5} frames ({frames / 30:5.1f} s)  params {row['parameters'] / 1e6:5.2f} M  "
                f"{row['ms_per_step']:8.2f} ms/step  peak +{row['peak_step_memory_mb']:7.1f} MB  "
                f"{row['flops_per_frame_per_step'] / 1e6:6.2f} MFLOP/frame",
                flush=True,
            )
        ratio = pair["mamba2"]["ms_per_step"] / pair["transformer"]["ms_per_step"]
        print(f"{'':>11}  mamba2 / transformer time ratio at {frames} frames: {ratio:.2f}", flush=True)
    report = {
        "benchmark": "denoiser",
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": threads,
                    "torch": torch.__version__},
        "unit_notes": "ms_per_step: median time of one denoiser forward (batch 1) over the whole window",
        "results": rows,
    }
    write_report(report, out)
    return report
