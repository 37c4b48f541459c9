"""Configuration of a DiM-Gestor model: one dataclass per component, saved beside the weights as JSON."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError

BACKBONES = ("mamba2", "transformer")


@dataclass
class MambaSettings:
    """Mamba-2 layer sizes shared by the fuzzy extractor and the denoiser (see model/mamba2.py)."""

    d_state: int = 32
    d_conv: int = 4
    expand: int = 2
    headdim: int = 32
    chunk_size: int = 32


@dataclass
class DiffusionConfig:
    num_train_steps: int = 1000
    schedule: str = "linear"  # "linear" or "cosine"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction: str = "x0"  # "x0" or "eps"
    cond_drop_prob: float = 0.1  # condition dropout at training, for classifier-free guidance
    # Training windows that get a clean known prefix (per-token timestep 0), the way streaming windows continue
    # already published frames; a model trained with it stitches windows by conditioning on that context rather
    # than by replacement inpainting (see GaussianDiffusion.sample).
    context_prob: float = 0.0
    velocity_weight: float = 0.0  # weight of the frame-to-frame velocity loss on the predicted clean motion

    def __post_init__(self) -> None:
        if not 0.0 <= self.context_prob <= 1.0:
            raise ValueError(f"diffusion.context_prob must be in [0, 1], got {self.context_prob}")
        if self.velocity_weight < 0:
            raise ValueError(f"diffusion.velocity_weight must be >= 0, got {self.velocity_weight}")
        if self.schedule not in ("linear", "cosine"):
            raise ValueError(f"diffusion.schedule must be 'linear' or 'cosine', got {self.schedule!r}")
        if self.prediction not in ("x0", "eps"):
            raise ValueError(f"diffusion.prediction must be 'x0' or 'eps', got {self.prediction!r}")


@dataclass
class ModelConfig:
    pose_dim: int = 63
    speech_dim: int = 43
    speech_fps: int = 50
    motion_fps: int = 30
    d_model: int = 128
    n_blocks: int = 4
    backbone: str = "mamba2"
    bidirectional: bool = True  # denoiser mixes each window both ways; the fuzzy extractor stays causal
    n_heads: int = 4  # transformer backbone only
    mlp_ratio: float = 2.0
    encoder_kernel: int = 3
    style_time_constant_s: float = 10.0  # how far back the global style looks, in seconds of speech
    speech_encoder: str = "acoustic"
    mamba: MambaSettings = field(default_factory=MambaSettings)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)

    def __post_init__(self) -> None:
        if isinstance(self.mamba, dict):
            self.mamba = MambaSettings(**self.mamba)
        if isinstance(self.diffusion, dict):
            self.diffusion = DiffusionConfig(**self.diffusion)
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.speech_fps < self.motion_fps:
            raise ValueError("speech_fps must be >= motion_fps (speech frames are pooled per motion frame)")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"model config has unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"model config not found: {path} (a weights folder holds config.json)") from None
        except json.JSONDecodeError as error:
            raise UserError(f"model config {path} is not valid JSON: {error}") from None
        if not isinstance(data, dict):
            raise UserError(f"model config {path} must be a JSON object of ModelConfig fields")
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError, UserError) as error:
            raise UserError(f"model config {path} is invalid: {error}") from None
