"""Child process of ``common.measure_step_memory``: the working memory of one denoiser step, per case.

Reads a JSON spec on stdin ({"model": ModelConfig dict, "cases": [[frames, batch], ...], "device", "dtype",
"threads"}) and prints one JSON list on stdout, one entry per case. Run by the benchmark with
MALLOC_MMAP_THRESHOLD_=4096 and MALLOC_TRIM_THRESHOLD_=0 (set by the parent before this process starts, which is
when glibc reads them), so that on CPU the resident-memory high-water mark follows live tensors.
"""

from __future__ import annotations

import json
import resource
import sys

import torch


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def measure(spec: dict) -> list[dict]:
    from ..model.config import ModelConfig
    from .common import autocast, denoiser_inputs
    from .models import build

    device, dtype = spec["device"], spec.get("dtype", "float32")
    torch.set_num_threads(int(spec.get("threads", 1)))
    model = build(ModelConfig.from_dict(spec["model"]), device)
    denoiser = model.denoiser
    cuda = torch.device(device).type == "cuda"
    results = []
    for frames, batch in spec["cases"]:
        inputs = denoiser_inputs(model.config, frames, batch, device)
        with torch.inference_mode(), autocast(device, dtype):
            denoiser(*inputs)  # warm-up at this shape: one-time allocations (kernel caches) are not the step's
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                before = torch.cuda.memory_allocated() / 2**20
                denoiser(*inputs)
                torch.cuda.synchronize()
                peak = torch.cuda.max_memory_allocated() / 2**20
                method = "cuda_max_memory_allocated"
            else:
                exact = reset_peak_rss()
                before = _status_mb("VmRSS")
                if not exact:  # no reset: the process peak so far bounds the baseline from above
                    before = max(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
                denoiser(*inputs)
                peak = _status_mb("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                method = "rss_high_water_reset" if exact else "ru_maxrss_delta_approximate"
        results.append({"frames": frames, "batch": batch, "step_working_mb": max(0.0, peak - before),
                        "peak_memory_mb": peak, "memory_before_mb": before, "memory_method": method})
        del inputs
    return results


def main() -> int:
    spec = json.loads(sys.stdin.read())
    print(json.dumps(measure(spec)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
