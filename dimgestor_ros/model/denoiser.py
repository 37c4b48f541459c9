"""The gesture denoiser: conv gesture encoder -> AdaLN blocks (Mamba-2 or transformer) -> pose decoder.

The condition of every block is the diffusion-step embedding plus the global fuzzy style; the local fuzzy
features are fused per token. Null embeddings replace the speech condition for classifier-free guidance.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .adaln import AdaLNBlock, AdaLNFinalLayer
from .config import ModelConfig


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (...,) -> (..., dim); t may be per sequence (B,) or per token (B, L)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[..., None] * freqs
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class GestureDenoiser(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d = config.d_model
        self.d_model = d
        self.gesture_encoder = nn.Conv1d(config.pose_dim, d, config.encoder_kernel, padding=config.encoder_kernel // 2)
        self.local_proj = nn.Linear(d, d)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.style_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.null_local = nn.Parameter(torch.zeros(d))
        self.null_style = nn.Parameter(torch.zeros(d))
        self.blocks = nn.ModuleList(AdaLNBlock(config, cond_dim=d) for _ in range(config.n_blocks))
        self.final = AdaLNFinalLayer(d, d, config.pose_dim)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        local: torch.Tensor,
        style: torch.Tensor,
        drop_condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x_t (B, L, pose_dim), t (B,) or per-token (B, L), local (B, L, D), style (B, D); drop_condition (B,)
        bool -> (B, L, pose_dim). Per-token timesteps give a per-token AdaLN condition (rolling schedules)."""
        if drop_condition is not None:
            keep = ~drop_condition
            local = torch.where(keep[:, None, None], local, self.null_local.expand_as(local))
            style = torch.where(keep[:, None], style, self.null_style.expand_as(style))
        h = self.gesture_encoder(x_t.transpose(1, 2)).transpose(1, 2)  # (B, pose_dim, L) conv -> (B, L, D)
        h = h + self.local_proj(local)
        cond = self.time_mlp(timestep_embedding(t, self.d_model))  # (B, D) or (B, L, D)
        style_cond = self.style_mlp(style)  # (B, D)
        cond = cond + (style_cond[:, None] if cond.dim() == 3 else style_cond)
        for block in self.blocks:
            h = block(h, cond)
        return self.final(h, cond)
