"""AdaLN blocks: DiT-style shift/scale/gate modulation around a sequence mixer (Mamba-2 or attention).

The modulation is zero-initialised, so every block starts as the identity and training grows the condition's
influence gradually (the DiT "adaLN-Zero" recipe that Persona-Gestor and DiM-Gestor build on).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .mamba2 import Mamba2, Mamba2Config


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (B, L, D); shift/scale (B, D) for one condition per sequence or (B, L, D) for one per token."""
    if shift.dim() == 2:
        shift, scale = shift[:, None], scale[:, None]
    return x * (1 + scale) + shift


def _gate(gate: torch.Tensor) -> torch.Tensor:
    return gate[:, None] if gate.dim() == 2 else gate


class BidirectionalMamba2(nn.Module):
    """A Mamba-2 layer per direction, summed: a whole window to denoise is known, so each frame sees both sides."""

    def __init__(self, config: Mamba2Config, bidirectional: bool) -> None:
        super().__init__()
        self.forward_mixer = Mamba2(config)
        self.backward_mixer = Mamba2(config) if bidirectional else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.forward_mixer(x)
        if self.backward_mixer is not None:
            y = y + self.backward_mixer(x.flip(1)).flip(1)
        return y


class SelfAttention(nn.Module):
    """Full self-attention over the window (the Persona-Gestor-style transformer backbone)."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape
        # (B, L, 3D) -> 3 x (B, H, L, D/H)
        q, k, v = self.qkv(x).view(b, length, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, H, L, D/H)
        return self.out(y.transpose(1, 2).reshape(b, length, d))


def make_mixer(config: ModelConfig, bidirectional: bool) -> nn.Module:
    if config.backbone == "transformer":
        return SelfAttention(config.d_model, config.n_heads)
    m = config.mamba
    mamba = Mamba2Config(
        d_model=config.d_model,
        d_state=m.d_state,
        d_conv=m.d_conv,
        expand=m.expand,
        headdim=m.headdim,
        chunk_size=m.chunk_size,
    )
    return BidirectionalMamba2(mamba, bidirectional)


class AdaLNBlock(nn.Module):
    """Pre-norm mixer and MLP branches, each shifted, scaled and gated by the condition."""

    def __init__(self, config: ModelConfig, cond_dim: int) -> None:
        super().__init__()
        d = config.d_model
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.mixer = make_mixer(config, config.bidirectional)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        hidden = int(d * config.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, d))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 6 * d))
        nn.init.zeros_(self.modulation[-1].weight)
        nn.init.zeros_(self.modulation[-1].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (B, L, D); cond (B, C) or (B, L, C)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(cond).chunk(6, dim=-1)
        x = x + _gate(gate1) * self.mixer(modulate(self.norm1(x), shift1, scale1))
        x = x + _gate(gate2) * self.mlp(modulate(self.norm2(x), shift2, scale2))
        return x


class AdaLNFinalLayer(nn.Module):
    """Modulated norm and a zero-initialised projection to pose space."""

    def __init__(self, d_model: int, cond_dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * d_model))
        self.linear = nn.Linear(d_model, out_dim)
        for layer in (self.modulation[-1], self.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(cond).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))
