"""Samplers (DDIM, DDPM, DPM-Solver++(2M)) against the exact denoiser of a Gaussian, and per-token timesteps."""

from __future__ import annotations

import pytest
import torch

from dimgestor_ros.diffusion.gaussian import SAMPLERS, GaussianDiffusion
from dimgestor_ros.model.config import DiffusionConfig, MambaSettings, ModelConfig
from dimgestor_ros.model.gesture_model import DiMGestor

MU, S = 0.7, 0.4  # data: every value ~ N(MU, S^2)


def _exact_denoiser(diffusion: GaussianDiffusion, prediction: str):
    """E[x0 | x_t] for Gaussian data, returned as the network would (x0 or eps)."""

    def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar = diffusion.alphas_cumprod[t].view(-1, 1, 1)
        a, var = abar.sqrt(), 1 - abar
        x0 = MU + a * S**2 / (a**2 * S**2 + var) * (x_t - a * MU)
        return x0 if prediction == "x0" else (x_t - a * x0) / var.sqrt()

    return denoise


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("prediction", ["x0", "eps"])
@pytest.mark.parametrize("sampler, steps", [("ddim", 200), ("ddpm", 1000), ("dpmpp2m", 50)])
def test_sampler_draws_the_data_distribution_with_an_exact_denoiser(sampler, steps, prediction, schedule):
    diffusion = GaussianDiffusion(DiffusionConfig(schedule=schedule, prediction=prediction))
    samples = diffusion.sample(_exact_denoiser(diffusion, prediction), (4, 2000, 1), steps=steps, sampler=sampler,
                               eta=0.0, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(samples).all()
    assert abs(samples.mean().item() - MU) < 0.03
    assert abs(samples.std().item() - S) / S < 0.05, samples.std().item()


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_second_order_sampler_is_closer_than_ddim_at_equal_steps(schedule):
    diffusion = GaussianDiffusion(DiffusionConfig(schedule=schedule))
    errors = {}
    for sampler in ("ddim", "dpmpp2m"):
        samples = diffusion.sample(_exact_denoiser(diffusion, "x0"), (4, 2000, 1), steps=30, sampler=sampler,
                                   generator=torch.Generator().manual_seed(0))
        errors[sampler] = abs(samples.std().item() - S)
    assert errors["dpmpp2m"] < errors["ddim"], errors


def test_a_wrong_denoiser_is_caught_by_the_distribution_check():
    """The check above can fail: a denoiser for the wrong spread gives the wrong spread."""
    diffusion = GaussianDiffusion(DiffusionConfig())
    exact = _exact_denoiser(diffusion, "x0")
    samples = diffusion.sample(lambda x, t: MU + 0.5 * (exact(x, t) - MU), (4, 2000, 1), steps=20, sampler="dpmpp2m",
                               generator=torch.Generator().manual_seed(0))
    assert abs(samples.std().item() - S) / S > 0.2


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_is_reproducible_and_keeps_known_frames(sampler):
    diffusion = GaussianDiffusion(DiffusionConfig())
    denoise = _exact_denoiser(diffusion, "x0")
    known = torch.randn(2, 10, 3)
    mask = torch.zeros(2, 10, 1, dtype=torch.bool)
    mask[:, :4] = True
    runs = [diffusion.sample(denoise, (2, 10, 3), steps=6, sampler=sampler, eta=0.5, known=known, known_mask=mask,
                             generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    assert torch.equal(runs[0][:, :4], known[:, :4])


def test_unknown_sampler_is_refused():
    with pytest.raises(ValueError, match="sampler must be one of"):
        GaussianDiffusion(DiffusionConfig()).sample(lambda x, t: x, (1, 2, 1), steps=2, sampler="euler")


@pytest.mark.parametrize("backbone", ["mamba2", "transformer"])
def test_per_token_timesteps_equal_to_a_shared_timestep_give_the_same_output(backbone):
    torch.manual_seed(0)
    config = ModelConfig(d_model=32, n_blocks=2, backbone=backbone,
                         mamba=MambaSettings(d_state=16, headdim=16, chunk_size=16))
    model = DiMGestor(config).eval()
    for parameter in model.parameters():  # leave adaLN-Zero so the condition matters
        parameter.data += 0.05 * torch.randn_like(parameter)
    x = torch.randn(2, 12, config.pose_dim)
    local, style = torch.randn(2, 12, 32), torch.randn(2, 32)
    t = torch.tensor([100, 700])
    with torch.no_grad():
        shared = model.denoiser(x, t, local, style)
        per_token = model.denoiser(x, t[:, None].expand(2, 12), local, style)
        varied = model.denoiser(x, torch.randint(0, 1000, (2, 12)), local, style)
    torch.testing.assert_close(per_token, shared, atol=1e-5, rtol=1e-5)
    assert (varied - shared).abs().max() > 1e-3
