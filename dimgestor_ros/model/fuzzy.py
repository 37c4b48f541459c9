"""The fuzzy feature extractor: implicit, continuous speech features instead of discrete style labels.

A global extractor (Mamba-2 over the speech features, exponentially averaged over about ten seconds) gives a
style vector that drifts with the speaker; a local extractor (causal Mamba-2) gives per-frame features pooled to
the motion frame rate. Both are causal and carry their state, so a stream fed chunk by chunk gets exactly the
features one pass over the whole clip would give.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .config import ModelConfig
from .mamba2 import Mamba2, Mamba2Config, Mamba2State


@dataclass
class FuzzyState:
    local: Mamba2State
    global_: Mamba2State
    style_sum: torch.Tensor  # (B, D) exponentially weighted sum of global features
    style_weight: torch.Tensor  # (B, 1) the matching sum of weights
    pending: torch.Tensor  # (B, n, D) local features of speech frames not yet pooled into a motion frame
    speech_frames: int = 0  # speech frames consumed so far
    motion_frames: int = 0  # motion frames emitted so far


class FuzzyFeatureExtractor(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d = config.d_model
        m = config.mamba
        mamba = Mamba2Config(
            d_model=d, d_state=m.d_state, d_conv=m.d_conv, expand=m.expand, headdim=m.headdim, chunk_size=m.chunk_size
        )
        self.speech_fps = config.speech_fps
        self.motion_fps = config.motion_fps
        self.style_decay = math.exp(-1.0 / (config.style_time_constant_s * config.speech_fps))
        # Per-feature standardisation with statistics of the training data (set by the trainer), not a LayerNorm:
        # a LayerNorm over each frame's features subtracts their mean, and a louder voice shifts every log-mel band
        # by the same amount, so a LayerNorm would erase exactly the loudness that makes gestures bigger.
        self.register_buffer("speech_mean", torch.zeros(config.speech_dim))
        self.register_buffer("speech_std", torch.ones(config.speech_dim))
        self.input_proj = nn.Linear(config.speech_dim, d)
        self.local_mixer = Mamba2(mamba)
        self.local_norm = nn.LayerNorm(d)
        self.global_mixer = Mamba2(mamba)
        self.style_proj = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d))

    def set_speech_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.speech_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.speech_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-4))

    def init_state(self, batch_size: int, device: torch.device | None = None) -> FuzzyState:
        d = self.input_proj.out_features
        return FuzzyState(
            local=self.local_mixer.init_state(batch_size, device=device),
            global_=self.global_mixer.init_state(batch_size, device=device),
            style_sum=torch.zeros(batch_size, d, device=device),
            style_weight=torch.zeros(batch_size, 1, device=device),
            pending=torch.zeros(batch_size, 0, d, device=device),
        )

    def recover_non_finite(
        self, local: torch.Tensor, style: torch.Tensor, state: FuzzyState
    ) -> tuple[torch.Tensor, torch.Tensor, FuzzyState, bool]:
        """The outputs and state of :meth:`forward_stream` with any NaN or infinity cleared.

        A recurrent state that once holds a NaN (a fault inside the network, a corrupted weight read) keeps it
        for the rest of the stream, so a streaming node would hold its pose forever. Here the Mamba-2 states and
        the style average restart from zero, as at a stream's start, with the frame counters kept so the stream
        stays in step with its audio; non-finite features become zeros. Returns (local, style, state, cleared).
        """
        tensors = (local, style, state.style_sum, state.style_weight, state.pending,
                   state.local.conv_state, state.local.ssm_state, state.global_.conv_state, state.global_.ssm_state)
        if all(bool(torch.isfinite(t).all()) for t in tensors):
            return local, style, state, False
        fresh = self.init_state(local.shape[0], local.device)
        fresh.pending = torch.nan_to_num(state.pending, nan=0.0, posinf=0.0, neginf=0.0)
        fresh.speech_frames, fresh.motion_frames = state.speech_frames, state.motion_frames
        clean = torch.nan_to_num(local, nan=0.0, posinf=0.0, neginf=0.0)
        return clean, torch.nan_to_num(style, nan=0.0, posinf=0.0, neginf=0.0), fresh, True

    def motion_frames_for(self, speech_frames: int) -> int:
        """Motion frames fully covered by the first ``speech_frames`` speech frames."""
        # frame m needs speech frames up to floor((m + 1) r) - 1, r = speech_fps / motion_fps
        return ((speech_frames + 1) * self.motion_fps + self.speech_fps - 1) // self.speech_fps - 1

    def forward(self, speech: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """speech (B, S, speech_dim) -> local (B, M, D) at the motion rate and style (B, D) at the clip's end."""
        local, style, _ = self.forward_stream(speech, self.init_state(speech.shape[0], speech.device))
        return local, style

    def forward_stream(
        self, speech: torch.Tensor, state: FuzzyState
    ) -> tuple[torch.Tensor, torch.Tensor, FuzzyState]:
        """Consume speech frames (B, n, speech_dim); return the newly completed motion frames (B, m, D), the
        style after this chunk (B, D) and the state to continue with."""
        x = self.input_proj((speech - self.speech_mean) / self.speech_std)  # (B, n, D)
        local, local_state = self.local_mixer(x, state.local, return_state=True)
        local = self.local_norm(local + x)
        glob, global_state = self.global_mixer(x, state.global_, return_state=True)

        n = x.shape[1]
        # Exponentially weighted mean: frame k of this chunk gets weight decay^(n-1-k), the past decay^n.
        powers = self.style_decay ** torch.arange(n - 1, -1, -1, device=x.device, dtype=x.dtype)  # (n,)
        carried = self.style_decay**n
        style_sum = carried * state.style_sum + torch.einsum("bnd,n->bd", glob, powers)
        style_weight = carried * state.style_weight + powers.sum()
        style = self.style_proj(style_sum / style_weight.clamp_min(1e-6))

        motion, pending, motion_frames = self._pool_to_motion_rate(local, state)
        new_state = FuzzyState(
            local=local_state,
            global_=global_state,
            style_sum=style_sum,
            style_weight=style_weight,
            pending=pending,
            speech_frames=state.speech_frames + n,
            motion_frames=motion_frames,
        )
        return motion, style, new_state

    def _pool_to_motion_rate(self, local: torch.Tensor, state: FuzzyState) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Average the speech frames [floor(m r), floor((m + 1) r)) into motion frame m, r = speech/motion fps."""
        frames = torch.cat([state.pending, local], dim=1)  # (B, p + n, D)
        first_speech = state.speech_frames - state.pending.shape[1]
        total_speech = state.speech_frames + local.shape[1]
        end_motion = self.motion_frames_for(total_speech)
        count = end_motion - state.motion_frames
        end_speech = end_motion * self.speech_fps // self.motion_fps  # first speech frame of frame end_motion
        used = end_speech - first_speech
        if count <= 0:
            return frames[:, :0], frames, state.motion_frames
        j = torch.arange(first_speech, end_speech, device=local.device)
        # motion index of speech frame j: the largest m with floor(m r) <= j
        owner = ((j + 1) * self.motion_fps + self.speech_fps - 1) // self.speech_fps - 1 - state.motion_frames
        b, _, d = frames.shape
        sums = torch.zeros(b, count, d, device=local.device, dtype=local.dtype)
        sums = sums.index_add(1, owner, frames[:, :used])
        counts = torch.bincount(owner, minlength=count).to(local.dtype)  # (count,)
        return sums / counts[None, :, None], frames[:, used:], end_motion
