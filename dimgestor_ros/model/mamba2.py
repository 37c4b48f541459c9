"""A Mamba-2 (SSD) layer in plain PyTorch that runs on CPU, streams, and shares weights with mamba_ssm.

The robot runs on CPU and feeds speech a few frames at a time, so the layer must carry its state across calls
and give the same numbers as one pass over the whole sequence. Training may happen on a GPU with the fused
kernels of ``mamba_ssm``; the parameter names and layouts follow ``mamba_ssm.modules.mamba2.Mamba2`` exactly so
a ``state_dict`` moves between the two.

Notation: B batch, L length, H heads, P head dim, G groups (B/C shared by H/G heads each), N state size,
Q chunk length, c number of chunks, K conv kernel width.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Mamba2",
    "Mamba2Config",
    "Mamba2State",
    "RMSNormGated",
    "fused_kernels_available",
    "ssd_chunk_scan",
]


@dataclass
class Mamba2Config:
    """Sizes and init ranges of one layer; defaults follow mamba_ssm except the smaller heads and chunks, which
    suit short CPU streams."""

    d_model: int
    d_state: int = 64
    d_conv: int = 4
    expand: int = 2
    headdim: int = 32
    ngroups: int = 1
    chunk_size: int = 32
    A_init_range: tuple[float, float] = (1.0, 16.0)
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    bias: bool = False
    conv_bias: bool = True
    norm_eps: float = 1e-5
    # None: fused CUDA kernels when the input is on CUDA and mamba_ssm imports; False: always plain torch;
    # True: insist on the kernels (raises where they cannot run), so a test knows which path it measured.
    use_fused: bool | None = None

    def __post_init__(self) -> None:
        for name in ("d_model", "d_state", "d_conv", "headdim", "ngroups", "chunk_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"Mamba2Config.{name} must be a positive int, got {value!r}")
        if not isinstance(self.expand, (int, float)) or isinstance(self.expand, bool) or self.expand <= 0:
            raise ValueError(f"Mamba2Config.expand must be a positive number, got {self.expand!r}")
        inner = self.expand * self.d_model
        if abs(inner - round(inner)) > 1e-9:
            raise ValueError(
                f"Mamba2Config.expand * d_model must be an integer, got expand={self.expand!r} * d_model={self.d_model}"
            )
        if self.d_inner % self.headdim != 0:
            raise ValueError(
                f"Mamba2Config.headdim={self.headdim} must divide d_inner = expand * d_model = {self.d_inner}"
            )
        if self.nheads % self.ngroups != 0:
            raise ValueError(
                f"Mamba2Config.ngroups={self.ngroups} must divide nheads = d_inner / headdim = {self.nheads}"
            )
        if len(self.A_init_range) != 2 or not 0 < self.A_init_range[0] <= self.A_init_range[1]:
            raise ValueError(f"Mamba2Config.A_init_range must be (lo, hi) with 0 < lo <= hi, got {self.A_init_range!r}")
        self.A_init_range = (float(self.A_init_range[0]), float(self.A_init_range[1]))
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(
                f"Mamba2Config.dt_min / dt_max must satisfy 0 < dt_min <= dt_max, got {self.dt_min!r}, {self.dt_max!r}"
            )
        if self.dt_init_floor < 0:
            raise ValueError(f"Mamba2Config.dt_init_floor must be >= 0, got {self.dt_init_floor!r}")
        if not self.norm_eps > 0:
            raise ValueError(f"Mamba2Config.norm_eps must be > 0, got {self.norm_eps!r}")
        if self.use_fused not in (None, True, False):
            raise ValueError(f"Mamba2Config.use_fused must be None, True or False, got {self.use_fused!r}")

    @property
    def d_inner(self) -> int:
        return int(round(self.expand * self.d_model))

    @property
    def nheads(self) -> int:
        return self.d_inner // self.headdim

    @property
    def conv_dim(self) -> int:
        return self.d_inner + 2 * self.ngroups * self.d_state


@dataclass
class Mamba2State:
    """What a stream must remember between calls: the conv's input tail and the SSM hidden state.

    conv_state: (B, conv_dim, d_conv - 1), the last d_conv - 1 pre-conv inputs, oldest first (zeros before the
    stream starts). ssm_state: (B, nheads, headdim, d_state), laid out as mamba_ssm's inference cache.
    """

    conv_state: torch.Tensor
    ssm_state: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.ssm_state.shape[0]

    def to_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Flat, contiguous tensors, as safetensors needs; a prefix lets several layers share one file."""
        return {
            f"{prefix}conv_state": self.conv_state.detach().contiguous(),
            f"{prefix}ssm_state": self.ssm_state.detach().contiguous(),
        }

    @classmethod
    def from_dict(cls, tensors: dict[str, torch.Tensor], prefix: str = "") -> Mamba2State:
        try:
            return cls(conv_state=tensors[f"{prefix}conv_state"], ssm_state=tensors[f"{prefix}ssm_state"])
        except KeyError as err:
            raise KeyError(f"Mamba2State.from_dict: missing key {err.args[0]!r}") from None

    def detach(self) -> Mamba2State:
        """Cuts the graph so truncated backprop through a long stream does not keep every chunk alive."""
        return Mamba2State(self.conv_state.detach(), self.ssm_state.detach())

    def clone(self) -> Mamba2State:
        return Mamba2State(self.conv_state.clone(), self.ssm_state.clone())

    def to(self, *args: Any, **kwargs: Any) -> Mamba2State:
        return Mamba2State(self.conv_state.to(*args, **kwargs), self.ssm_state.to(*args, **kwargs))


class RMSNormGated(nn.Module):
    """Gated group RMSNorm as mamba_ssm's ``layernorm_gated.RMSNorm`` with norm_before_gate=False:
    y = rmsnorm_per_group(x * silu(z)) * weight. Only ``weight`` is a parameter, as there."""

    def __init__(
        self,
        hidden_size: int,
        eps: float = 1e-5,
        group_size: int | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.eps = eps
        self.group_size = hidden_size if group_size is None else group_size
        if hidden_size % self.group_size != 0:
            raise ValueError(f"group_size={self.group_size} must divide hidden_size={hidden_size}")
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        compute = torch.promote_types(dtype, torch.float32)
        x = x.to(compute) * F.silu(z.to(compute))
        shape = x.shape
        xg = x.reshape(*shape[:-1], -1, self.group_size)  # (..., G, D / G)
        xg = xg * torch.rsqrt(xg.square().mean(dim=-1, keepdim=True) + self.eps)
        return (xg.reshape(shape) * self.weight.to(compute)).to(dtype)


# --------------------------------------------------------------------------------------------------------------
# Pure-torch SSD


def depthwise_causal_conv(full: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """F.conv1d(full, weight, bias, groups=channels) as K shifted multiply-adds: (B, C, K - 1 + L) -> (B, C, L).

    Why: PyTorch's CPU grouped convolution is slow for one channel per group and a 4-tap kernel (measured 3.7x
    slower on a streaming window); the same sums written out cost a few elementwise passes.
    """
    taps = weight.shape[-1]
    length = full.shape[-1] - taps + 1
    out = full[..., :length] * weight[:, 0, 0, None]
    for k in range(1, taps):
        out = out + full[..., k : k + length] * weight[:, 0, k, None]
    return out if bias is None else out + bias[:, None]


def _segsum(a: torch.Tensor) -> torch.Tensor:
    """(..., Q) -> (..., Q, Q) with [i, j] = a[j+1] + ... + a[i] for i >= j, -inf above the diagonal.

    Summing the masked terms directly, instead of differencing a cumsum, keeps fp32 exact enough when the
    cumulative decay inside a chunk is large."""
    q = a.shape[-1]
    a = a.unsqueeze(-1).expand(*a.shape, q)  # (..., Q, Q), [i, j] = a[i]
    strict = torch.ones(q, q, dtype=torch.bool, device=a.device).tril(-1)
    s = torch.cumsum(a.masked_fill(~strict, 0.0), dim=-2)
    return s.masked_fill(torch.ones(q, q, dtype=torch.bool, device=a.device).triu(1), -math.inf)


# Decays below exp(-60) ~ 1e-26 are set to exactly zero. Left alone they underflow into fp32 denormals, which
# x86 handles in microcode: with long chunks and fast-decaying heads that made the CPU scan 3x slower, for a
# difference far below fp32 resolution.
_LOG_DECAY_FLOOR = -60.0


def _decay(log_decay: torch.Tensor) -> torch.Tensor:
    return torch.exp(log_decay.masked_fill(log_decay < _LOG_DECAY_FLOOR, -math.inf))


def ssd_chunk_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked SSD scan (without the D skip): the recurrence
        h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T,   y_t = h_t C_t
    computed as a masked quadratic form inside each chunk plus a linear pass of states between chunks, so the
    cost is matmuls instead of L sequential steps.

    x: (B, L, H, P); dt: (B, L, H), already softplus'ed; A: (H,) negative; B, C: (B, L, G, N) with head h
    reading group h // (H / G) as mamba_ssm does; initial_state: (B, H, P, N) or None for zeros.
    Returns y (B, L, H, P) and the state after the last step (B, H, P, N), in x's dtype.
    """
    bsz, length, nheads, headdim = x.shape
    ngroups, dstate = B.shape[-2], B.shape[-1]
    rep = nheads // ngroups
    q = chunk_size
    if initial_state is None:
        initial_state = x.new_zeros(bsz, nheads, headdim, dstate)
    if length == 0:
        return x.new_zeros(bsz, 0, nheads, headdim), initial_state.to(x.dtype)

    # Pad to whole chunks. Padded steps have dt = 0, so they neither decay nor feed the state: the final state
    # is the one after the last real step.
    pad = (-length) % q
    if pad:
        x = F.pad(x, (0, 0, 0, 0, 0, pad))
        dt = F.pad(dt, (0, 0, 0, pad))
        B = F.pad(B, (0, 0, 0, 0, 0, pad))
        C = F.pad(C, (0, 0, 0, 0, 0, pad))
    nchunks = (length + pad) // q

    # Chunked, heads split into (G, H/G) so B and C broadcast over the heads sharing them.
    xc = x.reshape(bsz, nchunks, q, ngroups, rep, headdim).permute(0, 1, 3, 4, 2, 5)  # (B, c, G, R, Q, P)
    dtc = dt.reshape(bsz, nchunks, q, ngroups, rep).permute(0, 1, 3, 4, 2)  # (B, c, G, R, Q)
    Bc = B.reshape(bsz, nchunks, q, ngroups, dstate).transpose(2, 3).unsqueeze(3)  # (B, c, G, 1, Q, N)
    Cc = C.reshape(bsz, nchunks, q, ngroups, dstate).transpose(2, 3).unsqueeze(3)  # (B, c, G, 1, Q, N)
    a = dtc * A.reshape(ngroups, rep, 1)  # (B, c, G, R, Q) log-decay per step
    a_cum = torch.cumsum(a, dim=-1)  # (B, c, G, R, Q)

    # 1. Within each chunk: y_i = sum_{j<=i} (C_i . B_j) exp(a_{j+1..i}) dt_j x_j.
    decay = _decay(_segsum(a))  # (B, c, G, R, Q, Q)
    cb = Cc @ Bc.transpose(-1, -2)  # (B, c, G, 1, Q, Q)
    y = (cb * decay * dtc.unsqueeze(-2)) @ xc  # (B, c, G, R, Q, P)

    # 2. Each chunk's own contribution to the state at its end (started from zero).
    to_end = _decay(a_cum[..., -1:] - a_cum) * dtc  # (B, c, G, R, Q)
    chunk_states = xc.transpose(-1, -2) @ (Bc * to_end.unsqueeze(-1))  # (B, c, G, R, P, N)

    # 3. Pass states between chunks; the loop runs over chunks only, not steps.
    chunk_decay = _decay(a_cum[..., -1])  # (B, c, G, R)
    state = initial_state.to(x.dtype).reshape(bsz, ngroups, rep, headdim, dstate)  # (B, G, R, P, N)
    starts = []
    for k in range(nchunks):
        starts.append(state)
        state = state * chunk_decay[:, k, ..., None, None] + chunk_states[:, k]
    start_states = torch.stack(starts, dim=1)  # (B, c, G, R, P, N) state entering each chunk

    # 4. What the entering state adds to each output: C_i h_start decayed to step i.
    y = y + (Cc @ start_states.transpose(-1, -2)) * _decay(a_cum).unsqueeze(-1)  # (B, c, G, R, Q, P)

    y = y.permute(0, 1, 4, 2, 3, 5).reshape(bsz, nchunks * q, nheads, headdim)[:, :length]  # (B, L, H, P)
    return y, state.reshape(bsz, nheads, headdim, dstate)


# --------------------------------------------------------------------------------------------------------------
# Fused CUDA kernels (mamba_ssm / causal_conv1d), imported lazily and only for CUDA tensors


@functools.lru_cache(maxsize=1)
def _fused_ops() -> SimpleNamespace | None:
    """Imported once, on first use with a CUDA tensor: the CPU path must never pay for (or need) triton."""
    try:
        from mamba_ssm.ops.triton.selective_state_update import selective_state_update
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except Exception:  # ImportError, or a triton/CUDA mismatch failing at import
        return None
    try:
        from causal_conv1d import causal_conv1d_fn
    except Exception:
        causal_conv1d_fn = None
    return SimpleNamespace(
        chunk_scan=mamba_chunk_scan_combined, state_update=selective_state_update, conv_fn=causal_conv1d_fn
    )


def fused_kernels_available(device: torch.device | str | None) -> bool:
    """True when inputs on ``device`` can use mamba_ssm's kernels (CUDA device and mamba_ssm importable)."""
    if device is None or torch.device(device).type != "cuda" or not torch.cuda.is_available():
        return False
    return _fused_ops() is not None


# --------------------------------------------------------------------------------------------------------------
# The layer


class Mamba2(nn.Module):
    """Mamba-2 mixer: in_proj -> causal depthwise conv + SiLU -> SSD scan (+ D skip) -> gated RMSNorm -> out_proj.

    Parameter names and shapes match ``mamba_ssm.modules.mamba2.Mamba2`` (rmsnorm=True, norm_before_gate=False,
    D per head, no d_ssm split), so ``load_state_dict`` works both ways."""

    def __init__(
        self,
        config: Mamba2Config,
        *,
        use_fused: bool | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.use_fused = config.use_fused if use_fused is None else use_fused
        cfg = config
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.d_model, self.d_state, self.d_conv = cfg.d_model, cfg.d_state, cfg.d_conv
        self.headdim, self.ngroups, self.chunk_size = cfg.headdim, cfg.ngroups, cfg.chunk_size
        self.d_inner, self.nheads, self.conv_dim = cfg.d_inner, cfg.nheads, cfg.conv_dim

        # in_proj output order: [z (d_inner), x (d_inner), B (G*N), C (G*N), dt (H)]
        self.in_proj = nn.Linear(cfg.d_model, 2 * self.d_inner + 2 * cfg.ngroups * cfg.d_state + self.nheads,
                                 bias=cfg.bias, **factory)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, kernel_size=cfg.d_conv, groups=self.conv_dim,
                                padding=cfg.d_conv - 1, bias=cfg.conv_bias, **factory)
        self.act = nn.SiLU()

        # dt starts log-uniform in [dt_min, dt_max]; stored through the inverse softplus so softplus(dt_bias)
        # lands there when the projected dt is zero.
        log_lo, log_hi = math.log(cfg.dt_min), math.log(cfg.dt_max)
        dt = torch.exp(torch.rand(self.nheads, **factory) * (log_hi - log_lo) + log_lo).clamp(min=cfg.dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.dt_bias._no_weight_decay = True  # type: ignore[attr-defined]

        A = torch.empty(self.nheads, dtype=torch.float32, device=device).uniform_(*cfg.A_init_range)
        self.A_log = nn.Parameter(torch.log(A).to(dtype=dtype))
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D = nn.Parameter(torch.ones(self.nheads, device=device))
        self.D._no_weight_decay = True  # type: ignore[attr-defined]

        self.norm = RMSNormGated(self.d_inner, eps=cfg.norm_eps, group_size=self.d_inner // cfg.ngroups, **factory)
        self.out_proj = nn.Linear(self.d_inner, cfg.d_model, bias=cfg.bias, **factory)

    # ---- state -----------------------------------------------------------------------------------------------

    def init_state(
        self, batch_size: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Mamba2State:
        """Zero state (a stream's start). Defaults to the parameters' device and float32, since the SSM state
        accumulates over the whole stream and should not be rounded to bf16 every step."""
        device = self.out_proj.weight.device if device is None else device
        dtype = torch.float32 if dtype is None else dtype
        return Mamba2State(
            conv_state=torch.zeros(batch_size, self.conv_dim, self.d_conv - 1, device=device, dtype=dtype),
            ssm_state=torch.zeros(batch_size, self.nheads, self.headdim, self.d_state, device=device, dtype=dtype),
        )

    def _check_state(self, state: Mamba2State, batch: int) -> None:
        want_conv = (batch, self.conv_dim, self.d_conv - 1)
        want_ssm = (batch, self.nheads, self.headdim, self.d_state)
        if tuple(state.conv_state.shape) != want_conv or tuple(state.ssm_state.shape) != want_ssm:
            raise ValueError(
                f"Mamba2 state shapes conv {tuple(state.conv_state.shape)}, ssm {tuple(state.ssm_state.shape)} "
                f"do not match this layer and batch: expected conv {want_conv}, ssm {want_ssm}"
            )

    def _fused_for(self, x: torch.Tensor) -> bool:
        if self.use_fused is False:
            return False
        ok = x.is_cuda and fused_kernels_available(x.device)
        if self.use_fused is True and not ok:
            raise RuntimeError("Mamba2(use_fused=True) needs a CUDA input and an importable mamba_ssm")
        return ok

    # ---- pieces shared by both paths -------------------------------------------------------------------------

    def _split(self, zxbcdt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        gn = self.ngroups * self.d_state
        z, xbc, dt = torch.split(zxbcdt, [self.d_inner, self.d_inner + 2 * gn, self.nheads], dim=-1)
        return z, xbc, dt

    def _finish(self, y: torch.Tensor, z: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
        y = self.norm(y, z)
        return self.out_proj(y.to(self.out_proj.weight.dtype)).to(out_dtype)

    # ---- sequence --------------------------------------------------------------------------------------------

    def forward(
        self, x: torch.Tensor, state: Mamba2State | None = None, return_state: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, Mamba2State]:
        """x: (B, L, d_model) -> y (B, L, d_model) [, state after the last frame].

        ``state`` continues a stream: the conv sees the previous call's last d_conv - 1 inputs and the scan starts
        from the previous hidden state, so splitting a sequence across calls gives the same outputs."""
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"Mamba2.forward expects (B, L, {self.d_model}), got {tuple(x.shape)}")
        bsz, length, _ = x.shape
        if state is None:
            state = self.init_state(bsz, device=x.device)
        else:
            self._check_state(state, bsz)
        if length == 0:
            y = x.new_zeros(bsz, 0, self.d_model)
            return (y, state) if return_state else y

        zxbcdt = self.in_proj(x.to(self.in_proj.weight.dtype))  # (B, L, 2*d_inner + 2*G*N + H)
        if self._fused_for(x):
            y, z, new_state = self._forward_fused(zxbcdt, state)
        else:
            y, z, new_state = self._forward_pure(zxbcdt, state)
        out = self._finish(y, z, x.dtype)
        return (out, new_state) if return_state else out

    def _next_conv_state(self, xbc_t: torch.Tensor, state: Mamba2State) -> torch.Tensor:
        """The last K - 1 conv inputs after this call, from (B, conv_dim, L); still partly the carried ones when
        L < K - 1."""
        keep = self.d_conv - 1
        if keep == 0:
            return state.conv_state
        recent = torch.cat([state.conv_state.to(xbc_t.dtype), xbc_t[..., -keep:]], dim=-1)  # (B, conv_dim, <= 2K-2)
        return recent[..., -keep:].to(state.conv_state.dtype)

    def _forward_pure(
        self, zxbcdt: torch.Tensor, state: Mamba2State
    ) -> tuple[torch.Tensor, torch.Tensor, Mamba2State]:
        compute = torch.promote_types(zxbcdt.dtype, torch.float32)
        bsz, length, _ = zxbcdt.shape
        z, xbc, dt = self._split(zxbcdt.to(compute))
        xbc_t = xbc.transpose(1, 2)  # (B, conv_dim, L)
        conv_state = self._next_conv_state(xbc_t, state)
        full = torch.cat([state.conv_state.to(compute), xbc_t], dim=-1)  # (B, conv_dim, K - 1 + L)
        bias = None if self.conv1d.bias is None else self.conv1d.bias.to(compute)
        xbc = self.act(depthwise_causal_conv(full, self.conv1d.weight.to(compute), bias))  # (B, conv_dim, L)
        xbc = xbc.transpose(1, 2)  # (B, L, conv_dim)
        gn = self.ngroups * self.d_state
        xs, B, C = torch.split(xbc, [self.d_inner, gn, gn], dim=-1)
        xs = xs.reshape(bsz, length, self.nheads, self.headdim)  # (B, L, H, P)
        B = B.reshape(bsz, length, self.ngroups, self.d_state)  # (B, L, G, N)
        C = C.reshape(bsz, length, self.ngroups, self.d_state)  # (B, L, G, N)
        dt = F.softplus(dt + self.dt_bias.to(compute))  # (B, L, H)
        A = -torch.exp(self.A_log.to(compute))  # (H,)
        y, ssm_state = ssd_chunk_scan(xs, dt, A, B, C, self.chunk_size, state.ssm_state.to(compute))
        y = y + xs * self.D.to(compute)[:, None]  # (B, L, H, P)
        new_state = Mamba2State(conv_state, ssm_state.to(state.ssm_state.dtype))
        return y.reshape(bsz, length, self.d_inner), z, new_state

    def _forward_fused(
        self, zxbcdt: torch.Tensor, state: Mamba2State
    ) -> tuple[torch.Tensor, torch.Tensor, Mamba2State]:
        """Same math on mamba_ssm's triton scan (and causal_conv1d when present). The kernels take the model
        dtype and accumulate in fp32, as in mamba_ssm's own non-fused-conv path."""
        ops = _fused_ops()
        assert ops is not None
        bsz, length, _ = zxbcdt.shape
        z, xbc, dt = self._split(zxbcdt)
        xbc_t = xbc.transpose(1, 2)  # (B, conv_dim, L)
        conv_state = self._next_conv_state(xbc_t, state)
        if ops.conv_fn is not None and 2 <= self.d_conv <= 4 and self.conv_dim % 8 == 0:
            # causal_conv1d takes initial_states only in channel-last layout, and then wants x's batch and
            # time strides to be multiples of 8: a contiguous (B, L, conv_dim) copy, viewed transposed, has both.
            xbc_t = xbc.contiguous().transpose(1, 2)  # (B, conv_dim, L), channel-last in memory
            init = state.conv_state.to(xbc.dtype).transpose(1, 2).contiguous().transpose(1, 2)  # (B, conv_dim, K-1)
            xbc = ops.conv_fn(xbc_t, self.conv1d.weight.squeeze(1), self.conv1d.bias, initial_states=init,
                              activation="silu")
        else:
            full = torch.cat([state.conv_state.to(xbc.dtype), xbc_t], dim=-1)  # (B, conv_dim, K - 1 + L)
            xbc = self.act(F.conv1d(full, self.conv1d.weight, self.conv1d.bias, groups=self.conv_dim))
        xbc = xbc.transpose(1, 2)  # (B, L, conv_dim)
        gn = self.ngroups * self.d_state
        xs, B, C = torch.split(xbc, [self.d_inner, gn, gn], dim=-1)
        y, ssm_state = ops.chunk_scan(
            xs.reshape(bsz, length, self.nheads, self.headdim),  # (B, L, H, P)
            dt,  # (B, L, H), before softplus: the kernel adds dt_bias and applies it
            -torch.exp(self.A_log.float()),
            B.reshape(bsz, length, self.ngroups, self.d_state),  # (B, L, G, N)
            C.reshape(bsz, length, self.ngroups, self.d_state),
            chunk_size=self.chunk_size,
            D=self.D,
            dt_bias=self.dt_bias,
            initial_states=state.ssm_state,
            dt_softplus=True,
            return_final_states=True,
        )
        new_state = Mamba2State(conv_state, ssm_state.to(state.ssm_state.dtype))
        return y.reshape(bsz, length, self.d_inner), z, new_state

    # ---- one frame -------------------------------------------------------------------------------------------

    def step(self, x: torch.Tensor, state: Mamba2State | None = None) -> tuple[torch.Tensor, Mamba2State]:
        """One frame of the recurrence, x: (B, d_model) -> (y (B, d_model), new state); no chunk padding or
        quadratic work, for frame-by-frame streaming. Does not modify ``state`` in place."""
        if x.dim() != 2 or x.shape[-1] != self.d_model:
            raise ValueError(f"Mamba2.step expects (B, {self.d_model}), got {tuple(x.shape)}")
        bsz = x.shape[0]
        if state is None:
            state = self.init_state(bsz, device=x.device)
        else:
            self._check_state(state, bsz)
        fused = self._fused_for(x)
        zxbcdt = self.in_proj(x.to(self.in_proj.weight.dtype))  # (B, 2*d_inner + 2*G*N + H)
        compute = zxbcdt.dtype if fused else torch.promote_types(zxbcdt.dtype, torch.float32)
        z, xbc, dt = self._split(zxbcdt.to(compute))

        # Conv on the K-wide window [carried K-1 inputs, this input]. Kept in torch on both paths: it is one
        # multiply-add, and causal_conv1d_update wants a K-wide state in older releases.
        window = torch.cat([state.conv_state.to(compute), xbc.unsqueeze(-1)], dim=-1)  # (B, conv_dim, K)
        xbc = (window * self.conv1d.weight.squeeze(1).to(compute)).sum(-1)  # (B, conv_dim)
        if self.conv1d.bias is not None:
            xbc = xbc + self.conv1d.bias.to(compute)
        xbc = self.act(xbc)
        conv_state = window[..., 1:].to(state.conv_state.dtype)

        gn = self.ngroups * self.d_state
        xs, B, C = torch.split(xbc, [self.d_inner, gn, gn], dim=-1)
        xs = xs.reshape(bsz, self.nheads, self.headdim)  # (B, H, P)
        B = B.reshape(bsz, self.ngroups, self.d_state)  # (B, G, N)
        C = C.reshape(bsz, self.ngroups, self.d_state)  # (B, G, N)
        if fused:
            ops = _fused_ops()
            assert ops is not None
            h, p, n = self.nheads, self.headdim, self.d_state
            ssm_state = state.ssm_state.clone()  # the kernel updates in place
            y = ops.state_update(
                ssm_state,
                xs,
                dt.unsqueeze(-1).expand(bsz, h, p),  # (B, H, P)
                (-torch.exp(self.A_log.float()))[:, None, None].expand(h, p, n),  # (H, P, N)
                B,
                C,
                D=self.D[:, None].expand(h, p),
                dt_bias=self.dt_bias[:, None].expand(h, p),
                dt_softplus=True,
            )  # (B, H, P)
        else:
            rep = self.nheads // self.ngroups
            dt = F.softplus(dt + self.dt_bias.to(compute))  # (B, H)
            decay = torch.exp(dt * -torch.exp(self.A_log.to(compute)))  # (B, H)
            Bh = B.repeat_interleave(rep, dim=1)  # (B, H, N)
            Ch = C.repeat_interleave(rep, dim=1)  # (B, H, N)
            h_prev = state.ssm_state.to(compute)  # (B, H, P, N)
            h_new = h_prev * decay[..., None, None] + (dt[..., None] * xs).unsqueeze(-1) * Bh.unsqueeze(-2)
            y = (h_new @ Ch.unsqueeze(-1)).squeeze(-1) + xs * self.D.to(compute)[:, None]  # (B, H, P)
            ssm_state = h_new
        new_state = Mamba2State(conv_state, ssm_state.to(state.ssm_state.dtype))
        return self._finish(y.reshape(bsz, self.d_inner), z, x.dtype), new_state

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"d_model={c.d_model}, d_state={c.d_state}, d_conv={c.d_conv}, expand={c.expand}, headdim={c.headdim}, "
            f"ngroups={c.ngroups}, chunk_size={c.chunk_size}, use_fused={self.use_fused}"
        )
