"""Measurement tools the model benchmarks share: the machine block, interleaved timing, FLOPs and peak memory.

Timing: every candidate is warmed up, then timed in rounds, one run of each candidate per round, the order
alternating between rounds (A B, B A, ...), so a change in machine load hits both alike; the figure is the median.
CUDA work is synchronised before and after each timed call.

Peak memory: see ``measure_step_memory``. FLOPs: see ``count_flops``.
"""

from __future__ import annotations

import dataclasses

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import torch

MEMORY_METHOD_CPU = (
    "CPU: resident memory (RSS) high-water mark of a separate process per model, reset before each measured step "
    "(Linux /proc/self/clear_refs, VmHWM) minus the RSS just before it, after one warm-up step of the same shape; "
    "the process runs with MALLOC_MMAP_THRESHOLD_=4096 and MALLOC_TRIM_THRESHOLD_=0 so freed tensors go back to "
    "the system at once and the high-water mark follows the live tensors (tracemalloc does not see torch's "
    "allocations). peak_memory_mb is that process's whole RSS peak (weights, inputs, the torch runtime)."
)
MEMORY_METHOD_CUDA = (
    "CUDA: torch.cuda.max_memory_allocated during the step (stats reset before it) minus the memory allocated "
    "before it (weights and inputs), after one warm-up step of the same shape; peak_memory_mb is "
    "max_memory_allocated itself (weights, inputs and the step's working memory)."
)
FLOPS_METHOD = (
    "torch.utils.flop_counter.FlopCounterMode on the meta device (no compute) over the pure-PyTorch path: matrix "
    "products, convolutions and attention (PyTorch's own formula for scaled_dot_product_attention, also mapped for "
    "its CPU kernel, which FlopCounterMode misses; masked or causal attention is counted dense). The Mamba-2 scan's "
    "matrix products are counted because the CPU path writes them as torch matmuls; elementwise work (decays, "
    "softplus, norms, activations, the depthwise conv written as multiply-adds) is not counted, and a fused kernel "
    "(mamba-ssm's Triton scan) is invisible to the counter, which is why FLOPs are always counted on this path."
)
TIMING_METHOD = (
    "wall-clock (time.perf_counter; CUDA synchronised around each call) of torch.inference_mode calls after "
    "warm-up; candidates interleaved in rounds with alternating order; medians reported"
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _memory_total_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info(device: str, threads: int) -> dict:
    """Where a benchmark ran: CPU, cores, memory, threads, library versions, the GPU if any, the time and the load."""
    info = {
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": _memory_total_gb(),
        "threads": threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_start": load_average(),
    }
    if torch.device(device).type == "cuda":
        from ..model.mamba2 import fused_kernels_available

        info.update({
            "gpu": torch.cuda.get_device_name(torch.device(device)),
            "gpu_memory_gb": torch.cuda.get_device_properties(torch.device(device)).total_memory / 2**30,
            "cuda": torch.version.cuda,
            "mamba_ssm_kernels": fused_kernels_available(device),
        })
        for module in ("mamba_ssm", "causal_conv1d", "triton"):
            try:
                info[module] = __import__(module).__version__
            except Exception:  # not installed, or failing to import
                info[module] = None
    return info


def finish_machine_info(machine: dict) -> dict:
    machine["load_average_end"] = load_average()
    return machine


def command_line() -> str:
    """The command that ran this benchmark, as a user would type it."""
    argv = sys.argv[1:]
    program = Path(sys.argv[0]).name
    if program in ("__main__.py", "-m") or program.endswith(".py"):
        return " ".join(["python -m dimgestor_ros.bench", *argv])
    return " ".join(["dimgestor", *argv])


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads)


def synchronize(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(torch.device(device))


def autocast(device: str | torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """float32: nothing; bfloat16/float16: torch.autocast (the model's timestep embedding is float32, so casting the
    weights alone would not run)."""
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=getattr(torch, dtype))


def time_interleaved(
    candidates: dict[str, Callable[[], object]], warmup: int, repeats: int, device: str | torch.device = "cpu"
) -> dict[str, list[float]]:
    """Seconds per call of each candidate, ``repeats`` each, interleaved in rounds of alternating order."""
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else names[::-1]:
            synchronize(device)
            started = time.perf_counter()
            candidates[name]()
            synchronize(device)
            times[name].append(time.perf_counter() - started)
    return times


def median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1000


# ---------------------------------------------------------------------------------------------------------------
# FLOPs


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


@contextlib.contextmanager
def pure_mamba(*modules: torch.nn.Module) -> Iterator[None]:
    """Run every Mamba-2 layer in ``modules`` on its pure-PyTorch path (whose matmuls a FLOP counter sees)."""
    from ..model.mamba2 import Mamba2

    layers = [m for module in modules for m in module.modules() if isinstance(m, Mamba2)]
    saved = [layer.use_fused for layer in layers]
    for layer in layers:
        layer.use_fused = False
    try:
        yield
    finally:
        for layer, value in zip(layers, saved):
            layer.use_fused = value


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of ``fn()`` as FlopCounterMode counts them, attention on CPU included (see FLOPS_METHOD); run it inside
    ``pure_mamba`` where fused kernels could run."""
    from torch.utils.flop_counter import FlopCounterMode

    mapping = {}
    cpu_sdpa = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_sdpa is not None:
        mapping[cpu_sdpa] = _cpu_sdpa_flops
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return int(counter.get_total_flops())


def denoiser_inputs(config, frames: int, batch: int, device: str | torch.device = "cpu", t_value: int = 500):
    """Random (x_t, t, local, style) of a denoising step over ``frames`` frames for ``batch`` sequences."""
    x = torch.randn(batch, frames, config.pose_dim, device=device)
    local = torch.randn(batch, frames, config.d_model, device=device)
    style = torch.randn(batch, config.d_model, device=device)
    t = torch.full((batch,), t_value, dtype=torch.long, device=device)
    return x, t, local, style


def denoiser_flops_per_frame(config, frames: int) -> float:
    """FLOPs of one denoising step over a window of ``frames`` (batch 1), per frame; counted on the meta device."""
    from ..model.denoiser import GestureDenoiser

    with torch.device("meta"):
        denoiser = GestureDenoiser(config).eval()
        inputs = denoiser_inputs(config, frames, 1, device="meta")
    return count_flops(lambda: denoiser(*inputs)) / frames


# ---------------------------------------------------------------------------------------------------------------
# Peak memory of a denoiser step, measured in a separate process


def measure_step_memory(config, cases: list[tuple[int, int]], device: str, dtype: str, threads: int) -> list[dict]:
    """Working memory of one denoiser step per (frames, batch) case, measured by ``bench.memory`` in a child
    process holding only this model (see MEMORY_METHOD_CPU / MEMORY_METHOD_CUDA)."""
    spec = {"model": config.to_dict(), "cases": [list(case) for case in cases], "device": device, "dtype": dtype,
            "threads": threads}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "MALLOC_MMAP_THRESHOLD_": "4096", "MALLOC_TRIM_THRESHOLD_": "0"}
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    result = subprocess.run([sys.executable, "-m", "dimgestor_ros.bench.memory"], input=json.dumps(spec),
                            capture_output=True, text=True, env=env, timeout=7200)
    if result.returncode != 0:
        raise RuntimeError(f"memory probe failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def cpu_threads(threads: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def report_head(benchmark: str, schema: int, machine: dict, settings: object, module_doc: str | None = None) -> dict:
    """The keys every benchmark report starts with, so the report generator finds them under the same names:
    what ran, its JSON schema, the command line, the machine, the settings (a dataclass), and, given the
    benchmark module's docstring, its method (the docstring's body) and how time was measured."""
    head = {"benchmark": benchmark, "schema": schema, "command": command_line(),
            "machine": finish_machine_info(machine), "settings": dataclasses.asdict(settings)}
    if module_doc is not None:
        head["method"] = module_doc.split("\n\n", 1)[1].replace("\n", " ").strip()
    head["timing_method"] = TIMING_METHOD
    return head
