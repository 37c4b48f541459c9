"""The gesture denoiser: conv gesture encoder -> AdaLN blocks (Mamba-2 or transformer) -> pose decoder.

The condition of every block is the diffusion-step embedding plus the global fuzzy style; the local fuzzy
features are added to the gesture tokens at the input and, with ``local_adaln``, also join the AdaLN condition
per token, so that every block's shift, scale and gate follow the speech frame by frame (a stroke's timing is a
per-frame property of the speech, which one condition per window cannot carry). Null embeddings replace the
speech condition for classifier-free guidance.
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
        self.local_cond = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d)) if config.local_adaln else None
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
        cond = self.condition(t, local, style)
        for block in self.blocks:
            h = block(h, cond)
        return self.final(h, cond)

    def condition(self, t: torch.Tensor, local: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """The AdaLN condition: (B, D) per sequence, or (B, L, D) per token when timesteps are per token or the
        local features join it (``local_adaln``); t (B,) or (B, L), local (B, L, D), style (B, D)."""
        cond = self.time_mlp(timestep_embedding(t, self.d_model))  # (B, D) or (B, L, D)
        style_cond = self.style_mlp(style)  # (B, D)
        cond = cond + (style_cond[:, None] if cond.dim() == 3 else style_cond)
        if self.local_cond is not None:
            per_token = self.local_cond(local)  # (B, L, D)
            cond = (cond if cond.dim() == 3 else cond[:, None]) + per_token
        return cond
