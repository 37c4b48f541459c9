"""Gaussian diffusion (DDPM training, DDIM sampling) over motion windows, with known-frame inpainting.

Two ways to stitch streaming windows, both pinning the frames a window shares with already published motion:
replacement inpainting (those frames noised to the current step, for any model) and clean context (those frames
given clean at per-token timestep 0, for a model trained with ``context_prob`` > 0, which learns to continue
them; it joins windows more smoothly in few steps because the network, not the sampler, reconciles the seam).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..model.config import DiffusionConfig

SAMPLERS = ("ddim", "ddpm", "dpmpp2m")

# (x_t (B, L, D), t (B,)) -> the network's prediction (x0 or eps, per DiffusionConfig.prediction)
Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_betas(config: DiffusionConfig) -> torch.Tensor:
    steps = config.num_train_steps
    if config.schedule == "linear":
        return torch.linspace(config.beta_start, config.beta_end, steps, dtype=torch.float64)
    # cosine (Nichol & Dhariwal 2021)
    s = 0.008
    t = torch.linspace(0, steps, steps + 1, dtype=torch.float64) / steps
    alphas_cumprod = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    betas = 1 - alphas_cumprod[1:] / alphas_cumprod[:-1]
    return betas.clamp(max=0.999)


class GaussianDiffusion(nn.Module):
    def __init__(self, config: DiffusionConfig) -> None:
        super().__init__()
        self.config = config
        alphas_cumprod = torch.cumprod(1.0 - make_betas(config), dim=0)
        # Not saved with the weights: the schedule is fully defined by the config.
        self.register_buffer("alphas_cumprod", alphas_cumprod.float(), persistent=False)

    @property
    def num_train_steps(self) -> int:
        return self.config.num_train_steps

    def _abar(self, t: torch.Tensor) -> torch.Tensor:
        """alpha-bar broadcastable over (B, L, D): t per sequence (B,) -> (B, 1, 1), per token (B, L) -> (B, L, 1)."""
        if t.dim() == 2:
            return self.alphas_cumprod[t][..., None]
        return self.alphas_cumprod[t].view(-1, 1, 1)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        abar = self._abar(t)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def split_prediction(
        self, prediction: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's output as (x0, eps), whichever of the two it predicts."""
        abar = self._abar(t)
        if self.config.prediction == "x0":
            x0 = prediction
            eps = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()
        else:
            eps = prediction
            x0 = (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()
        return x0, eps

    def training_loss(self, denoise: Denoise, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Denoising loss on x0 (B, L, D), plus the velocity loss and clean-context windows the config asks for.

        Context: with probability ``context_prob`` a window's first k frames (k uniform in 1 .. L-1) are given clean
        at timestep 0 and left out of the loss, as in a streaming window that continues published motion. The
        velocity term compares frame differences of the predicted and true clean motion over every pair whose
        later frame is free, so the join between context and new frames is trained too.
        """
        b, length, _ = x0.shape
        t = torch.randint(0, self.num_train_steps, (b,), device=x0.device, generator=generator)
        noise = torch.randn(x0.shape, device=x0.device, generator=generator)
        x_t = self.q_sample(x0, t, noise)
        free = torch.ones(b, length, 1, device=x0.device)  # (B, L, 1) 1 where the frame is generated
        t_model = t
        if self.config.context_prob > 0 and length > 1:
            with_context = torch.rand(b, device=x0.device, generator=generator) < self.config.context_prob
            k = torch.randint(1, length, (b,), device=x0.device, generator=generator) * with_context  # (B,)
            known = torch.arange(length, device=x0.device)[None] < k[:, None]  # (B, L)
            x_t = torch.where(known[..., None], x0, x_t)
            t_model = torch.where(known, torch.zeros_like(t)[:, None], t[:, None])  # (B, L) per-token timesteps
            free = (~known).float()[..., None]
        prediction = denoise(x_t, t_model)
        target = x0 if self.config.prediction == "x0" else noise
        count = (free.sum() * x0.shape[2]).clamp_min(1.0)
        loss = (((prediction - target) ** 2) * free).sum() / count
        if self.config.velocity_weight > 0 and length > 1:
            x0_hat, _ = self.split_prediction(prediction, x_t, t_model)
            x0_hat = torch.where(free.bool(), x0_hat, x0)  # context frames are known exactly
            velocity_error = (x0_hat.diff(dim=1) - x0.diff(dim=1)) ** 2  # (B, L-1, D)
            pair_free = free[:, 1:]
            pairs = (pair_free.sum() * x0.shape[2]).clamp_min(1.0)
            loss = loss + self.config.velocity_weight * (velocity_error * pair_free).sum() / pairs
        return loss

    @torch.no_grad()
    def sample(
        self,
        denoise: Denoise,
        shape: tuple[int, int, int],
        steps: int,
        sampler: str = "ddim",
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        known: torch.Tensor | None = None,
        known_mask: torch.Tensor | None = None,
        device: torch.device | None = None,
        clip_x0: float | None = None,
        context: bool = False,
        initial_noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sample with ``steps`` network evaluations on evenly spaced timesteps.

        Samplers: "ddim" (Song et al. 2021; eta 0 deterministic, eta 1 DDPM-like), "ddpm" (ancestral sampling
        with the posterior variance, Ho et al. 2020; all training steps when steps = num_train_steps) and
        "dpmpp2m" (DPM-Solver++(2M), Lu et al. 2022: second-order multistep, good motion in few steps).
        known (B, L, D) and known_mask (B, L, 1) pin frames that must match already generated motion: noised to
        each step (replacement inpainting), or with ``context=True`` given clean at per-token timestep 0 (for a
        model trained with ``context_prob`` > 0).
        clip_x0 bounds the predicted clean sample (in normalised units), which keeps eps-prediction stable.
        initial_noise (B, L, D) replaces the first draw, so a caller can give the same frame the same noise in
        overlapping windows (with eta 0 the sample is then a deterministic function of it).
        """
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        steps = min(steps, self.num_train_steps)
        timesteps = torch.linspace(self.num_train_steps - 1, 0, steps, device=device).round().long().tolist()
        if initial_noise is not None:
            if tuple(initial_noise.shape) != tuple(shape):
                raise ValueError(f"initial_noise has shape {tuple(initial_noise.shape)}, expected {tuple(shape)}")
            x = initial_noise.to(device)
        else:
            x = torch.randn(shape, device=device, generator=generator)
        previous_x0 = None
        previous_h = None
        for i, t_value in enumerate(timesteps):
            t = torch.full((shape[0],), t_value, device=device, dtype=torch.long)
            t_model = t
            if known is not None and context:
                x = torch.where(known_mask, known, x)
                t_model = torch.where(known_mask[..., 0], 0, t[:, None])  # (B, L) clean context at step 0
            elif known is not None:
                noised_known = self.q_sample(known, t, torch.randn(shape, device=device, generator=generator))
                x = torch.where(known_mask, noised_known, x)
            x0, eps = self.split_prediction(denoise(x, t_model), x, t)
            if clip_x0 is not None:
                x0 = x0.clamp(-clip_x0, clip_x0)
                abar_t = self.alphas_cumprod[t_value]
                eps = (x - abar_t.sqrt() * x0) / (1 - abar_t).sqrt()
            if i == steps - 1:
                x = x0
                break
            abar = self.alphas_cumprod[t_value]
            abar_next = self.alphas_cumprod[timesteps[i + 1]]
            if sampler == "dpmpp2m":
                # lambda = log(alpha / sigma); the update is exact for the linear part of the ODE.
                alpha_next, sigma, sigma_next = abar_next.sqrt(), (1 - abar).sqrt(), (1 - abar_next).sqrt()
                h = 0.5 * (torch.log(abar_next / (1 - abar_next)) - torch.log(abar / (1 - abar)))
                data = x0
                # second order from the second step on, except the final step to t = 0, whose large log-SNR jump
                # makes the extrapolation overshoot (the "lower order final" rule of DPM-Solver implementations)
                if previous_x0 is not None and i < steps - 2:
                    r = previous_h / h
                    data = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * previous_x0
                x = (sigma_next / sigma) * x - alpha_next * torch.expm1(-h) * data
                previous_x0, previous_h = x0, h
                continue
            if sampler == "ddpm":
                # posterior q(x_next | x_t, x0) of the respaced chain
                beta = 1 - abar / abar_next
                mean = (abar_next.sqrt() * beta * x0 + (abar / abar_next).sqrt() * (1 - abar_next) * x) / (1 - abar)
                variance = beta * (1 - abar_next) / (1 - abar)
                x = mean + variance.sqrt() * torch.randn(shape, device=device, generator=generator)
                continue
            sigma = eta * ((1 - abar_next) / (1 - abar) * (1 - abar / abar_next)).clamp_min(0).sqrt()
            direction = (1 - abar_next - sigma**2).clamp_min(0).sqrt() * eps
            noise = torch.randn(shape, device=device, generator=generator) if eta > 0 else 0.0
            x = abar_next.sqrt() * x0 + direction + sigma * noise
        if known is not None:
            x = torch.where(known_mask, known, x)
        return x
