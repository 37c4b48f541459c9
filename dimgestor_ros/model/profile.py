"""Size and cost of a model: parameter counts and FLOPs per generated frame (for model cards and benchmarks)."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from .gesture_model import DiMGestor, parameter_count


def denoiser_flops_per_frame(model: DiMGestor, frames: int) -> float:
    """FLOPs of one denoising step over a window of ``frames``, divided by ``frames``.

    Counted by PyTorch's FlopCounterMode (matrix products and convolutions, which dominate both backbones).
    """
    d = model.config.d_model
    x = torch.zeros(1, frames, model.config.pose_dim)
    local = torch.zeros(1, frames, d)
    style = torch.zeros(1, d)
    t = torch.zeros(1, dtype=torch.long)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.denoiser(x, t, local, style)
    return counter.get_total_flops() / frames


def model_summary(model: DiMGestor, frames: int = 60) -> dict[str, float]:
    return {
        "parameters": parameter_count(model),
        "parameters_denoiser": parameter_count(model.denoiser),
        "parameters_fuzzy": parameter_count(model.fuzzy),
        "flops_per_frame_per_step": denoiser_flops_per_frame(model, frames),
    }
