"""Tests for the pure-PyTorch Mamba-2 layer: chunked scan vs an independent per-step recurrence, streaming
equivalence, state persistence, config validation, gradients, and (on a GPU machine) fused vs pure."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F

from dimgestor_ros.model.mamba2 import (
    Mamba2,
    Mamba2Config,
    Mamba2State,
    fused_kernels_available,
    ssd_chunk_scan,
)

TOL = 1e-5


def make_layer(seed: int = 0, **overrides) -> Mamba2:
    """Small layer with a wider dt range than the default, so decays inside a chunk are far from 1."""
    torch.manual_seed(seed)
    kw = dict(d_model=32, d_state=16, headdim=16, chunk_size=8, dt_min=0.01, dt_max=0.5, use_fused=False)
    kw.update(overrides)
    layer = Mamba2(Mamba2Config(**kw))
    with torch.no_grad():  # non-trivial conv bias, skip and norm weights, so every parameter shows up in y
        layer.conv1d.bias.normal_(0.0, 0.2)
        layer.D.uniform_(0.5, 1.5)
        layer.norm.weight.uniform_(0.5, 1.5)
    return layer


def reference_forward(
    layer: Mamba2, x: torch.Tensor, state: Mamba2State | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The layer written as the plain recurrence, one time step at a time, in float64 from the parameters."""
    cfg = layer.config
    p = {k: v.detach().double() for k, v in layer.state_dict().items()}
    x = x.detach().double()
    bsz, length, _ = x.shape
    H, P, N, G, K = cfg.nheads, cfg.headdim, cfg.d_state, cfg.ngroups, cfg.d_conv
    di = cfg.d_inner
    hist = torch.zeros(bsz, cfg.conv_dim, K - 1, dtype=torch.float64)
    h = torch.zeros(bsz, H, P, N, dtype=torch.float64)
    if state is not None:
        hist, h = state.conv_state.double().clone(), state.ssm_state.double().clone()
    A = -torch.exp(p["A_log"])
    head_group = torch.arange(H) // (H // G)  # which B/C group each head reads
    ys = []
    for t in range(length):
        proj = x[:, t] @ p["in_proj.weight"].T
        z, xbc, dt = proj[:, :di], proj[:, di : di + cfg.conv_dim], proj[:, di + cfg.conv_dim :]
        window = torch.cat([hist, xbc[:, :, None]], dim=2)
        hist = window[:, :, 1:]
        u = F.silu((window * p["conv1d.weight"][:, 0, :]).sum(2) + p["conv1d.bias"])
        xs = u[:, :di].reshape(bsz, H, P)
        Bt = u[:, di : di + G * N].reshape(bsz, G, N)[:, head_group]  # (b, H, N)
        Ct = u[:, di + G * N :].reshape(bsz, G, N)[:, head_group]
        delta = F.softplus(dt + p["dt_bias"])  # (b, H)
        h = torch.exp(delta * A)[:, :, None, None] * h + delta[:, :, None, None] * xs[:, :, :, None] * Bt[:, :, None, :]
        y = torch.einsum("bhpn,bhn->bhp", h, Ct) + p["D"][:, None] * xs
        g = (y.reshape(bsz, di) * F.silu(z)).reshape(bsz, G, di // G)
        g = g / torch.sqrt(g.pow(2).mean(-1, keepdim=True) + cfg.norm_eps)
        ys.append((g.reshape(bsz, di) * p["norm.weight"]) @ p["out_proj.weight"].T)
    out = torch.stack(ys, dim=1) if ys else x.new_zeros(bsz, 0, cfg.d_model)
    return out, hist, h


def run_steps(layer: Mamba2, x: torch.Tensor, state: Mamba2State | None = None) -> tuple[torch.Tensor, Mamba2State]:
    ys = []
    for t in range(x.shape[1]):
        y, state = layer.step(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, dim=1), state


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


@pytest.mark.parametrize("chunk_size", [8, 32, 64])
@pytest.mark.parametrize("length", [1, 7, 33, 100])
def test_chunked_scan_and_step_match_per_step_recurrence(length: int, chunk_size: int) -> None:
    layer = make_layer(chunk_size=chunk_size)
    x = torch.randn(2, length, 32)
    y, state = layer(x, return_state=True)
    y_ref, conv_ref, ssm_ref = reference_forward(layer, x)
    assert y.shape == (2, length, 32)
    assert max_err(y, y_ref) <= TOL
    assert max_err(state.conv_state, conv_ref) <= TOL
    assert max_err(state.ssm_state, ssm_ref) <= TOL

    with torch.no_grad():
        y_step, state_step = run_steps(layer, x)
    assert max_err(y_step, y_ref) <= TOL
    assert max_err(state_step.ssm_state, ssm_ref) <= TOL
    assert max_err(state_step.conv_state, conv_ref) <= TOL


def test_chunk_scan_function_matches_recurrence_with_initial_state_and_groups() -> None:
    torch.manual_seed(1)
    b, L, H, P, G, N = 2, 45, 4, 8, 2, 16
    x = torch.randn(b, L, H, P, dtype=torch.float64)
    dt = F.softplus(torch.randn(b, L, H, dtype=torch.float64))
    A = -torch.rand(H, dtype=torch.float64) * 4 - 0.5
    B, C = torch.randn(2, b, L, G, N, dtype=torch.float64)
    h = torch.randn(b, H, P, N, dtype=torch.float64)
    y, final = ssd_chunk_scan(x, dt, A, B, C, chunk_size=16, initial_state=h)
    group = torch.arange(H) // (H // G)
    for t in range(L):
        h = torch.exp(dt[:, t] * A)[..., None, None] * h + torch.einsum(
            "bh,bhp,bhn->bhpn", dt[:, t], x[:, t], B[:, t, group]
        )
        assert max_err(y[:, t], torch.einsum("bhpn,bhn->bhp", h, C[:, t, group])) <= 1e-10
    assert max_err(final, h) <= 1e-10


def test_streaming_in_uneven_pieces_matches_one_pass() -> None:
    layer = make_layer(chunk_size=8)
    x = torch.randn(2, 66, 32)
    y_full, state_full = layer(x, return_state=True)
    pieces, state, start = [], None, 0
    for n in [5, 1, 17, 40, 3]:
        y, state = layer(x[:, start : start + n], state, return_state=True)
        pieces.append(y)
        start += n
    assert max_err(torch.cat(pieces, dim=1), y_full) <= TOL
    assert max_err(state.ssm_state, state_full.ssm_state) <= TOL
    assert max_err(state.conv_state, state_full.conv_state) <= TOL


def test_streaming_mixing_forward_and_step_matches_one_pass() -> None:
    layer = make_layer(chunk_size=8)
    x = torch.randn(1, 30, 32)
    y_full = layer(x)
    y1, state = layer(x[:, :2], return_state=True)  # shorter than d_conv - 1: conv tail keeps old zeros
    y2, state = run_steps(layer, x[:, 2:12], state)
    y3, state = layer(x[:, 12:], state, return_state=True)
    assert max_err(torch.cat([y1, y2, y3], dim=1), y_full) <= TOL


def test_empty_sequence_returns_empty_output_and_same_state() -> None:
    layer = make_layer()
    _, state = layer(torch.randn(2, 5, 32), return_state=True)
    y, new_state = layer(torch.randn(2, 0, 32), state, return_state=True)
    assert y.shape == (2, 0, 32)
    assert torch.equal(new_state.conv_state, state.conv_state)
    assert torch.equal(new_state.ssm_state, state.ssm_state)
    assert layer(torch.randn(3, 0, 32)).shape == (3, 0, 32)


def test_state_round_trips_through_dict_and_safetensors(tmp_path) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch")
    layer = make_layer()
    x = torch.randn(2, 40, 32)
    y_full = layer(x)
    _, state = layer(x[:, :23], return_state=True)

    restored = Mamba2State.from_dict(state.to_dict())
    assert max_err(layer(x[:, 23:], restored), y_full[:, 23:]) <= TOL

    path = tmp_path / "state.safetensors"
    safetensors_torch.save_file({**state.clone().to_dict("layer0."), **state.to_dict("layer1.")}, str(path))
    loaded = Mamba2State.from_dict(safetensors_torch.load_file(str(path)), prefix="layer1.")
    assert torch.equal(loaded.ssm_state, state.ssm_state) and torch.equal(loaded.conv_state, state.conv_state)
    assert max_err(layer(x[:, 23:], loaded), y_full[:, 23:]) <= TOL


def test_state_detach_and_clone_do_not_alias() -> None:
    layer = make_layer()
    _, state = layer(torch.randn(1, 9, 32), return_state=True)
    assert state.ssm_state.requires_grad and not state.detach().ssm_state.requires_grad
    copy = state.detach().clone()
    copy.ssm_state.zero_()
    assert state.ssm_state.abs().sum() > 0
    assert layer.init_state(4).ssm_state.shape == (4, 4, 16, 16)


@pytest.mark.parametrize(
    "ngroups,headdim,d_conv", [(2, 16, 4), (4, 8, 4), (1, 64, 4), (2, 32, 4), (1, 16, 1), (1, 16, 2)]
)
def test_group_head_and_conv_variants_match_reference(ngroups: int, headdim: int, d_conv: int) -> None:
    layer = make_layer(ngroups=ngroups, headdim=headdim, d_conv=d_conv, chunk_size=16)
    x = torch.randn(2, 37, 32)
    y, state = layer(x, return_state=True)
    y_ref, _, ssm_ref = reference_forward(layer, x)
    assert max_err(y, y_ref) <= TOL
    assert max_err(state.ssm_state, ssm_ref) <= TOL
    with torch.no_grad():
        y_step, _ = run_steps(layer, x[:, :10])
    assert max_err(y_step, y_ref[:, :10]) <= TOL


def test_gradients_are_finite_and_reach_every_parameter() -> None:
    layer = make_layer(chunk_size=8)
    x = torch.randn(2, 27, 32, requires_grad=True)
    state = layer.init_state(2)
    state.ssm_state.normal_().requires_grad_(True)
    y, new_state = layer(x, state, return_state=True)
    (y.square().mean() + new_state.ssm_state.square().mean()).backward()
    for name, param in layer.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    assert torch.isfinite(x.grad).all() and torch.isfinite(state.ssm_state.grad).all()


def test_chunked_path_passes_gradcheck_in_float64() -> None:
    layer = make_layer(d_model=8, d_state=4, headdim=4, chunk_size=3).double()
    x = torch.randn(1, 7, 8, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, layer.nheads, 4, 4, dtype=torch.float64, requires_grad=True)

    def fn(x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state = layer.init_state(1, dtype=torch.float64)
        y, s = layer(x, Mamba2State(state.conv_state, h0), return_state=True)
        return y, s.ssm_state

    assert torch.autograd.gradcheck(fn, (x, h0), fast_mode=True)


def test_low_precision_input_keeps_dtype_and_stays_close() -> None:
    layer = make_layer()
    x = torch.randn(1, 20, 32)
    y32 = layer(x)
    y16 = layer.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert y16.dtype == torch.bfloat16
    assert max_err(y16, y32) < 0.1


def test_state_dict_layout_matches_mamba_ssm() -> None:
    cfg = Mamba2Config(d_model=32, d_state=16, headdim=16, ngroups=2)
    shapes = {k: tuple(v.shape) for k, v in Mamba2(cfg).state_dict().items()}
    h, conv_dim = cfg.nheads, cfg.d_inner + 2 * 2 * 16
    assert shapes == {
        "in_proj.weight": (2 * cfg.d_inner + 2 * 2 * 16 + h, 32),
        "conv1d.weight": (conv_dim, 1, 4),
        "conv1d.bias": (conv_dim,),
        "dt_bias": (h,),
        "A_log": (h,),
        "D": (h,),
        "norm.weight": (cfg.d_inner,),
        "out_proj.weight": (32, cfg.d_inner),
    }


def test_parameter_init_follows_configured_ranges() -> None:
    torch.manual_seed(0)
    cfg = Mamba2Config(d_model=256, headdim=8, dt_min=0.001, dt_max=0.1, A_init_range=(1.0, 16.0))
    layer = Mamba2(cfg)
    dt = F.softplus(layer.dt_bias.detach())
    assert dt.min() >= 0.001 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
    A = torch.exp(layer.A_log.detach())
    assert A.min() >= 1.0 and A.max() <= 16.0
    assert torch.equal(layer.D.detach(), torch.ones(cfg.nheads))


@pytest.mark.parametrize(
    "overrides,field",
    [
        (dict(d_model=0), "d_model"),
        (dict(d_state=-1), "d_state"),
        (dict(headdim=24), "headdim"),  # d_inner = 64
        (dict(ngroups=3), "ngroups"),  # nheads = 4
        (dict(chunk_size=0), "chunk_size"),
        (dict(d_conv=0), "d_conv"),
        (dict(expand=0), "expand"),
        (dict(A_init_range=(0.0, 1.0)), "A_init_range"),
        (dict(dt_min=0.2, dt_max=0.1), "dt_min"),
        (dict(norm_eps=0.0), "norm_eps"),
        (dict(use_fused="yes"), "use_fused"),
    ],
)
def test_bad_config_raises_value_error_naming_the_field(overrides: dict, field: str) -> None:
    kw = dict(d_model=32, d_state=16, headdim=16)
    kw.update(overrides)
    with pytest.raises(ValueError, match=field):
        Mamba2Config(**kw)


def test_mismatched_state_raises_value_error() -> None:
    layer = make_layer()
    with pytest.raises(ValueError, match="state"):
        layer(torch.randn(3, 4, 32), layer.init_state(2))


def test_cpu_never_uses_fused_kernels() -> None:
    assert not fused_kernels_available("cpu")
    with pytest.raises(RuntimeError, match="use_fused"):
        make_layer(use_fused=True)(torch.randn(1, 3, 32))


def _gpu_ready() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("mamba_ssm") is not None


@pytest.mark.skipif(not _gpu_ready(), reason="needs CUDA and mamba-ssm (GPU machine)")
def test_fused_kernels_match_pure_path_on_gpu() -> None:
    assert fused_kernels_available("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    fused = make_layer(chunk_size=16, use_fused=True).cuda()
    pure = make_layer(chunk_size=16, use_fused=False).cuda()
    pure.load_state_dict(fused.state_dict())
    x = torch.randn(2, 75, 32, device="cuda")
    start = pure.init_state(2)
    start.ssm_state.normal_()
    start.conv_state.normal_()
    y_f, s_f = fused(x, start, return_state=True)
    y_p, s_p = pure(x, start, return_state=True)
    assert max_err(y_f, y_p) <= 1e-3
    assert max_err(s_f.ssm_state, s_p.ssm_state) <= 1e-3
    assert max_err(s_f.conv_state, s_p.conv_state) <= 1e-6
    with torch.no_grad():
        ys_f, st_f = run_steps(fused, x[:, :5], s_f)
        ys_p, st_p = run_steps(pure, x[:, :5], s_p)
    assert max_err(ys_f, ys_p) <= 1e-3
    assert max_err(st_f.ssm_state, st_p.ssm_state) <= 1e-3


@pytest.mark.parametrize("taps", [1, 2, 4])
@pytest.mark.parametrize("with_bias", [True, False])
def test_depthwise_causal_conv_equals_grouped_conv1d(taps, with_bias):
    from dimgestor_ros.model.mamba2 import depthwise_causal_conv

    torch.manual_seed(taps)
    full = torch.randn(2, 24, taps - 1 + 37)  # (B, C, K - 1 + L)
    weight = torch.randn(24, 1, taps)
    bias = torch.randn(24) if with_bias else None
    expected = F.conv1d(full, weight, bias, groups=24)  # (B, C, L)
    torch.testing.assert_close(depthwise_causal_conv(full, weight, bias), expected, rtol=1e-5, atol=1e-5)
