"""Causal streaming forms of the gesture denoiser, for the per-hop benchmark (no change to the model or its numbers).

The shipped denoiser re-samples a whole window every hop: it is bidirectional, so nothing it computed for the last
window can be reused. A denoiser that sees an unbounded past instead has to be causal, and then each backbone has its
own way to carry the past:

- Mamba-2 (built with ``bidirectional=False``: one forward Mamba-2 layer per block): each block's ``Mamba2State``
  (conv tail and SSM state, a few KB whatever the context) after the committed frames; new frames continue from it
  with the chunked scan (``Mamba2.forward(x, state)``) or frame by frame (``Mamba2.step``).
- Transformer: causal self-attention, with the keys and values of the committed frames kept per block (a KV cache,
  growing with the context), or all of it recomputed every step.

Both run the same weights as ``GestureDenoiser`` (its gesture encoder conv, AdaLN blocks and final layer), with two
streaming changes: the gesture encoder's conv is applied causally (frame i sees frames i - k + 1 ... i instead of a
centred window; the k - 1 last committed frames are carried), and attention is masked causally. "Committing" frames
runs them clean (timestep 0, as the clean-context training of ``context_prob`` gives them) through the network and
keeps what they leave behind (state or keys/values); denoising new frames leaves the context unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..model.adaln import modulate
from ..model.denoiser import GestureDenoiser, timestep_embedding
from ..model.mamba2 import Mamba2State


def _gate(gate: torch.Tensor) -> torch.Tensor:
    return gate[:, None] if gate.dim() == 2 else gate


@dataclass
class CausalContext:
    """What a causal denoiser carries from the frames committed so far."""

    frames: int  # frames committed
    pose_tail: torch.Tensor  # (B, k - 1, pose_dim) the last committed clean frames: the causal conv's left input
    mamba: list[Mamba2State] | None = None  # per block (Mamba-2)
    keys: list[torch.Tensor] | None = None  # per block (B, H, capacity, head_dim); slots [0, frames) are the context
    values: list[torch.Tensor] | None = None

    def state_bytes(self) -> int:
        """Memory the context occupies: Mamba-2 states, or the used part of the KV cache, plus the conv tail."""
        total = self.pose_tail.numel() * self.pose_tail.element_size()
        for state in self.mamba or []:
            total += sum(t.numel() * t.element_size() for t in (state.conv_state, state.ssm_state))
        for cache in (self.keys or []) + (self.values or []):
            total += cache[:, :, : self.frames].numel() * cache.element_size()
        return total


class CausalDenoiser:
    """Runs ``denoiser`` causally over new frames that continue a ``CausalContext``.

    Mamba-2 denoisers must be built with ``bidirectional=False``. ``capacity``: the most frames (context + new) a
    transformer's KV cache holds.
    """

    def __init__(self, denoiser: GestureDenoiser, backbone: str, capacity: int = 4096) -> None:
        self.denoiser = denoiser
        self.backbone = backbone
        self.capacity = capacity
        self.kernel = denoiser.gesture_encoder.kernel_size[0]
        if backbone == "mamba2":
            for block in denoiser.blocks:
                if getattr(block.mixer, "backward_mixer", None) is not None:
                    raise ValueError("a causal Mamba-2 denoiser needs a model built with bidirectional=False")
        elif backbone != "transformer":
            raise ValueError(f"unknown backbone {backbone!r}")
        self._masks: dict[tuple[int, int, str], torch.Tensor] = {}

    def empty(self, batch: int, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> CausalContext:
        """The context of a stream's start (dtype: of the KV cache, the dtype attention computes in)."""
        pose_dim = self.denoiser.gesture_encoder.in_channels
        tail = torch.zeros(batch, self.kernel - 1, pose_dim, device=device)
        if self.backbone == "mamba2":
            states = [block.mixer.forward_mixer.init_state(batch, device=device) for block in self.denoiser.blocks]
            return CausalContext(0, tail, mamba=states)
        d = self.denoiser.d_model
        keys, values = [], []
        for block in self.denoiser.blocks:
            heads = block.mixer.n_heads
            keys.append(torch.zeros(batch, heads, self.capacity, d // heads, device=device, dtype=dtype))
            values.append(torch.zeros(batch, heads, self.capacity, d // heads, device=device, dtype=dtype))
        return CausalContext(0, tail, keys=keys, values=values)

    # ---- shared pieces ---------------------------------------------------------------------------------------

    def _embed(self, x: torch.Tensor, t: torch.Tensor, local: torch.Tensor, style: torch.Tensor,
               context: CausalContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        den = self.denoiser
        padded = torch.cat([context.pose_tail.to(x.dtype), x], dim=1)  # (B, k - 1 + n, pose_dim)
        conv = den.gesture_encoder
        h = F.conv1d(padded.transpose(1, 2), conv.weight, conv.bias).transpose(1, 2)  # (B, n, D), causal
        h = h + den.local_proj(local)
        cond = den.time_mlp(timestep_embedding(t, den.d_model))  # (B, D) or (B, n, D)
        style_cond = den.style_mlp(style)
        cond = cond + (style_cond[:, None] if cond.dim() == 3 else style_cond)
        return h, cond, padded

    def _committed(self, context: CausalContext, padded: torch.Tensor, n: int, mamba: list | None) -> CausalContext:
        tail = padded[:, padded.shape[1] - (self.kernel - 1):] if self.kernel > 1 else context.pose_tail
        return CausalContext(context.frames + n, tail, mamba=mamba, keys=context.keys, values=context.values)

    def _mask(self, n: int, past: int, device: torch.device) -> torch.Tensor:
        key = (n, past, str(device))
        if key not in self._masks:
            mask = torch.ones(n, past + n, dtype=torch.bool, device=device)
            mask[:, past:] = torch.ones(n, n, dtype=torch.bool, device=device).tril()
            self._masks = {key: mask}  # one shape at a time is all a stream uses
        return self._masks[key]

    def _attend(self, layer: int, mixer, u: torch.Tensor, context: CausalContext) -> torch.Tensor:
        b, n, d = u.shape
        heads = mixer.n_heads
        q, k, v = mixer.qkv(u).view(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)  # 3 x (B, H, n, D/H)
        past = context.frames
        if past + n > self.capacity:
            raise ValueError(f"KV cache capacity {self.capacity} frames exceeded ({past} + {n})")
        keys, values = context.keys[layer], context.values[layer]
        keys[:, :, past : past + n] = k
        values[:, :, past : past + n] = v
        if past == 0:
            y = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, keys[:, :, : past + n].to(q.dtype), values[:, :, : past + n].to(q.dtype),
                                               attn_mask=self._mask(n, past, u.device))
        return mixer.out(y.transpose(1, 2).reshape(b, n, d))

    # ---- the passes ------------------------------------------------------------------------------------------

    def __call__(self, x: torch.Tensor, t: torch.Tensor, local: torch.Tensor, style: torch.Tensor,
                 context: CausalContext, commit: bool = False) -> tuple[torch.Tensor, CausalContext]:
        """x (B, n, pose_dim) frames after the context, t (B,) or per token (B, n), local (B, n, D), style (B, D)
        -> (prediction (B, n, pose_dim), the context after them if ``commit`` else ``context`` unchanged)."""
        den = self.denoiser
        h, cond, padded = self._embed(x, t, local, style, context)
        states = []
        for i, block in enumerate(den.blocks):
            shift1, scale1, gate1, shift2, scale2, gate2 = block.modulation(cond).chunk(6, dim=-1)
            u = modulate(block.norm1(h), shift1, scale1)
            if self.backbone == "mamba2":
                y, state = block.mixer.forward_mixer(u, context.mamba[i], return_state=True)
                states.append(state)
            else:
                y = self._attend(i, block.mixer, u, context)
            h = h + _gate(gate1) * y
            h = h + _gate(gate2) * block.mlp(modulate(block.norm2(h), shift2, scale2))
        out = den.final(h, cond)
        if not commit:
            return out, context
        return out, self._committed(context, padded, x.shape[1], states if self.backbone == "mamba2" else None)

    def step_frames(self, x: torch.Tensor, t: torch.Tensor, local: torch.Tensor, style: torch.Tensor,
                    context: CausalContext, commit: bool = False) -> tuple[torch.Tensor, CausalContext]:
        """Mamba-2 only: the same as calling the denoiser, frame by frame through the recurrence (``Mamba2.step``)
        instead of the chunked scan; t per sequence (B,)."""
        if self.backbone != "mamba2":
            raise ValueError("step_frames is the Mamba-2 recurrence")
        den = self.denoiser
        h, cond, padded = self._embed(x, t, local, style, context)
        modulations = [block.modulation(cond).chunk(6, dim=-1) for block in den.blocks]
        states = list(context.mamba)
        frames = []
        for j in range(h.shape[1]):
            hj = h[:, j : j + 1]  # (B, 1, D)
            for i, block in enumerate(den.blocks):
                shift1, scale1, gate1, shift2, scale2, gate2 = modulations[i]
                u = modulate(block.norm1(hj), shift1, scale1)[:, 0]
                y, states[i] = block.mixer.forward_mixer.step(u, states[i])
                hj = hj + _gate(gate1) * y[:, None]
                hj = hj + _gate(gate2) * block.mlp(modulate(block.norm2(hj), shift2, scale2))
            frames.append(hj)
        out = den.final(torch.cat(frames, dim=1), cond)
        if not commit:
            return out, context
        return out, self._committed(context, padded, x.shape[1], states)

    def commit(self, x0: torch.Tensor, local: torch.Tensor, style: torch.Tensor, context: CausalContext,
               chunk: int = 512) -> CausalContext:
        """Append clean frames (timestep 0) to the context, ``chunk`` frames per call."""
        zero = torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device)
        for start in range(0, x0.shape[1], chunk):
            _, context = self(x0[:, start : start + chunk], zero, local[:, start : start + chunk], style, context,
                              commit=True)
        return context
