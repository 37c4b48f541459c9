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
from ..model.config import ModelConfig, check_field_types


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
        check_field_types(self)
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        if not isinstance(self.model, ModelConfig):  # e.g. 'model:' with nothing after it (None) or a list
            raise ValueError(f"model must be a mapping of model settings (d_model: 128, ...), got "
                             f"{type(self.model).__name__}")
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
        unknown = sorted(set(data) - known, key=str)  # key=str: YAML keys may be numbers, dates, ...
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
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UserError(f"training config not found: {path}; pass an existing YAML/JSON file") from None
        except UnicodeDecodeError:
            raise UserError(f"training config {path} is not a UTF-8 text file; pass a YAML/JSON file") from None
        except OSError as error:  # a folder, no permission
            raise UserError(f"training config {path} cannot be read ({error.strerror}); pass a YAML/JSON "
                            "file") from None
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        # ValueError: JSONDecodeError, or an integer of more than 4300 digits (int() refuses it); RecursionError:
        # brackets nested about a thousand deep
        except (yaml.YAMLError, ValueError, RecursionError) as error:
            reason = " ".join(str(error).split())  # YAML errors span lines; the message is one line
            raise UserError(f"training config {path} cannot be parsed: {reason}") from None
        return cls.from_dict({} if data is None else data, source=f"training config {path}")
