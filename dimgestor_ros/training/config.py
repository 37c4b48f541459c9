"""Training hyperparameters: one dataclass, loadable from YAML or JSON, with the model's config nested inside.

Unknown keys are an error rather than ignored: a misspelt ``warmpu`` would otherwise train silently with the
default and the run would only look wrong hours later.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..model.config import ModelConfig


@dataclass
class TrainConfig:
    steps: int = 100_000  # optimizer steps in all; the LR schedule spans exactly these
    batch_size: int = 32  # global batch: split evenly across DDP processes, so a config means the same run anywhere
    lr: float = 2e-4  # peak learning rate, reached at the end of warmup
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    warmup: int = 1000  # linear warmup steps, then cosine decay to zero at `steps`
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    ema_decay: float = 0.999  # EMA of the weights; the shipped weights are the EMA ones
    val_every: int = 1000  # validation loss every N steps (0: only at the end), when a validation set is given
    checkpoint_every: int = 5000  # resumable checkpoint every N steps (0: only at the end)
    seed: int = 0
    num_workers: int = 0  # DataLoader worker processes per training process
    # Training windows, in motion frames: the streaming window length by default, so the model learns exactly the
    # windows it will be sampled in (a model trained on longer windows than it streams with loses quality).
    window_frames: int = 60
    hop_frames: int = 15
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = _model_config(self.model)
        positive = ("steps", "batch_size", "window_frames", "hop_frames")
        non_negative = ("warmup", "grad_clip", "weight_decay", "val_every", "checkpoint_every", "num_workers")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "training config") -> "TrainConfig":
        """Build from a (possibly partial) dict; unknown keys or bad values are a UserError naming them."""
        if not isinstance(data, dict):
            raise UserError(f"{source} must be a mapping of TrainConfig fields, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"{source} has unknown keys {unknown}; remove or rename them (known keys: {sorted(known)})")
        try:
            return cls(**data)
        except UserError as error:
            raise UserError(f"{source}: {error}") from None
        except (TypeError, ValueError) as error:
            raise UserError(f"{source} is invalid: {error}; fix the value in the file") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        """Read a .yaml/.yml or .json file (YAML is a superset of JSON, so other suffixes are read as YAML)."""
        import yaml

        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise UserError(f"training config not found: {path}; pass an existing YAML/JSON file") from None
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as error:
            raise UserError(f"training config {path} cannot be parsed: {error}") from None
        return cls.from_dict({} if data is None else data, source=f"training config {path}")


def _model_config(data: dict[str, Any]) -> ModelConfig:
    """ModelConfig from a nested dict, with unknown keys in `model.mamba` / `model.diffusion` reported too."""
    for section, cls in (("mamba", "MambaSettings"), ("diffusion", "DiffusionConfig")):
        sub = data.get(section)
        if isinstance(sub, dict):
            from ..model import config as model_config

            known = {f.name for f in dataclasses.fields(getattr(model_config, cls))}
            unknown = sorted(set(sub) - known)
            if unknown:
                raise UserError(f"model.{section} has unknown keys {unknown}; known keys are {sorted(known)}")
    return ModelConfig.from_dict(data)
