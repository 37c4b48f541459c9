"""DiM-Gestor: fuzzy feature extractor + AdaLN denoiser + diffusion, with safetensors weights.

Weights live in a folder: ``model.safetensors`` (tensors, including the pose normalisation statistics),
``config.json`` (ModelConfig) and a model card ``README.md``. Nothing is ever unpickled.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..diffusion.gaussian import GaussianDiffusion
from ..errors import UserError
from .config import ModelConfig
from .denoiser import GestureDenoiser
from .fuzzy import FuzzyFeatureExtractor

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class DiMGestor(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.fuzzy = FuzzyFeatureExtractor(config)
        self.denoiser = GestureDenoiser(config)
        self.diffusion = GaussianDiffusion(config.diffusion)
        # Poses are generated normalised per degree of freedom; these map them back to radians / metres.
        self.register_buffer("pose_mean", torch.zeros(config.pose_dim))
        self.register_buffer("pose_std", torch.ones(config.pose_dim))

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.pose_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.pose_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-4))

    def normalize(self, poses: torch.Tensor) -> torch.Tensor:
        return (poses - self.pose_mean) / self.pose_std

    def denormalize(self, poses: torch.Tensor) -> torch.Tensor:
        return poses * self.pose_std + self.pose_mean

    def training_loss(
        self, motion: torch.Tensor, speech: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """motion (B, M, pose_dim) normalised; speech (B, S, speech_dim) covering it (M = motion frames of S)."""
        local, style = self.fuzzy(speech)
        motion = motion[:, : local.shape[1]]
        drop = torch.rand(motion.shape[0], device=motion.device, generator=generator) < self.config.diffusion.cond_drop_prob

        def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.denoiser(x_t, t, local, style, drop)

        return self.diffusion.training_loss(denoise, motion, generator)

    @torch.no_grad()
    def sample(
        self,
        local: torch.Tensor,
        style: torch.Tensor,
        steps: int = 10,
        sampler: str = "ddim",
        eta: float = 0.0,
        guidance: float = 1.0,
        generator: torch.Generator | None = None,
        known: torch.Tensor | None = None,
        known_mask: torch.Tensor | None = None,
        context: bool | None = None,
        initial_noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Normalised motion (B, L, pose_dim) for local features (B, L, D) and style (B, D).

        Known frames are stitched as clean context when the model was trained for it (``context_prob`` > 0) and by
        replacement inpainting otherwise; ``context`` overrides that choice.
        """
        if context is None:
            context = self.config.diffusion.context_prob > 0
        b, length, _ = local.shape

        if guidance != 1.0:
            # Conditioned and unconditioned passes as one batch of 2B: one network call per step instead of two.
            local2, style2 = torch.cat([local, local]), torch.cat([style, style])
            dropped = torch.arange(2 * b, device=local.device) >= b  # (2B,) the second half unconditioned

        def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if guidance == 1.0:
                return self.denoiser(x_t, t, local, style)
            both = self.denoiser(torch.cat([x_t, x_t]), torch.cat([t, t]), local2, style2, dropped)
            conditioned, unconditioned = both[:b], both[b:]
            return unconditioned + guidance * (conditioned - unconditioned)

        return self.diffusion.sample(
            denoise,
            (b, length, self.config.pose_dim),
            steps=steps,
            sampler=sampler,
            eta=eta,
            generator=generator,
            known=known,
            known_mask=known_mask,
            device=local.device,
            context=context,
            initial_noise=initial_noise,
        )

    def save(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.save(directory / CONFIG_FILE)
        tensors = {name: tensor.detach().contiguous() for name, tensor in self.state_dict().items()}
        save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"format": "dimgestor", "version": "1"})

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> "DiMGestor":
        """Load a weights folder; a missing, truncated or mismatched file is a UserError naming the fix."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        directory = Path(directory)
        if not directory.is_dir():
            raise UserError(f"weights folder not found: {directory} (see weights/README.md for the layout)")
        weights = directory / WEIGHTS_FILE
        if not weights.is_file():
            raise UserError(f"{weights} is missing; a weights folder holds {WEIGHTS_FILE} and {CONFIG_FILE}")
        model = cls(ModelConfig.load(directory / CONFIG_FILE))
        try:
            tensors = load_file(str(weights), device=str(device))
        except (SafetensorError, OSError) as error:
            raise UserError(f"{weights} is not a readable safetensors file ({error}); re-export or re-download it") from None
        expected = model.state_dict()
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        wrong = sorted(k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape)
        if missing or unexpected or wrong:
            details = "; ".join(
                f"{label}: {names[:3]}{' ...' if len(names) > 3 else ''}"
                for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
                if names
            )
            raise UserError(f"{weights} does not match {directory / CONFIG_FILE} ({details})")
        model.load_state_dict(tensors)
        return model.to(device).eval()


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
