"""Configuration of a DiM-Gestor model: one dataclass per component, saved beside the weights as JSON."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError, quoted

BACKBONES = ("mamba2", "transformer")
INT64 = 2**63  # whole-number fields must fit numpy's and torch's 64-bit integers


def check_field_types(config: Any, section: str = "") -> None:
    """Raise ValueError unless every int/float/str/bool field of the dataclass ``config`` holds that type.

    Configs come from YAML and JSON, where ``steps: 1.5``, ``grad_clip: .nan``, ``lr: 5e-4`` (text to YAML 1.1) or
    ``backbone: [mamba2]`` parse fine and would fail much later, mid-training or inside the model. Floats must be
    finite (ints are accepted and stored as floats); ints must fit 64 bits; bool is not accepted as a number.
    Range checks stay with each dataclass. ``section`` prefixes the field names in messages (e.g. "diffusion.").
    """
    for spec in dataclasses.fields(config):
        value = getattr(config, spec.name)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if spec.type == "bool":
            ok, kind = isinstance(value, bool), "true or false"
        elif spec.type == "int":
            ok, kind = number and isinstance(value, int) and -INT64 <= value < INT64, "a whole number"
        elif spec.type == "float":
            ok, kind = number and _finite(value), "a finite number (YAML reads 5e-4 as text: write 5.0e-4)"
            if ok:
                setattr(config, spec.name, float(value))
        elif spec.type == "str":
            ok, kind = isinstance(value, str), "text"
        else:
            continue  # nested sections check themselves
        if not ok:
            raise ValueError(f"{section}{spec.name} must be {kind}, got {quoted(value)}")


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float's range
        return False


@dataclass
class MambaSettings:
    """Mamba-2 layer sizes shared by the fuzzy extractor and the denoiser (see model/mamba2.py)."""

    d_state: int = 32
    d_conv: int = 4
    expand: int = 2
    headdim: int = 32
    chunk_size: int = 32

    def __post_init__(self) -> None:
        check_field_types(self, "mamba.")
        for spec in dataclasses.fields(self):
            if getattr(self, spec.name) <= 0:
                raise ValueError(f"mamba.{spec.name} must be > 0, got {getattr(self, spec.name)}")


@dataclass
class DiffusionConfig:
    num_train_steps: int = 1000
    schedule: str = "linear"  # "linear" or "cosine"
    beta_start: float = 1e-4  # linear schedule, in (0, 1): 1 - beta is each step's kept signal variance
    beta_end: float = 0.02
    prediction: str = "x0"  # "x0" or "eps"
    cond_drop_prob: float = 0.1  # condition dropout at training, for classifier-free guidance
    # Training windows that get a clean known prefix (per-token timestep 0), the way streaming windows continue
    # already published frames; a model trained with it stitches windows by conditioning on that context rather
    # than by replacement inpainting (see GaussianDiffusion.sample).
    context_prob: float = 0.0
    velocity_weight: float = 0.0  # weight of the frame-to-frame velocity loss on the predicted clean motion

    def __post_init__(self) -> None:
        check_field_types(self, "diffusion.")
        if self.num_train_steps <= 0:
            raise ValueError(f"diffusion.num_train_steps must be > 0, got {self.num_train_steps}")
        for name in ("beta_start", "beta_end"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"diffusion.{name} must be in (0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.cond_drop_prob <= 1.0:
            raise ValueError(f"diffusion.cond_drop_prob must be in [0, 1], got {self.cond_drop_prob}")
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
        check_field_types(self)
        if isinstance(self.mamba, dict):
            self.mamba = MambaSettings(**self.mamba)
        if isinstance(self.diffusion, dict):
            self.diffusion = DiffusionConfig(**self.diffusion)
        for name, cls in (("mamba", MambaSettings), ("diffusion", DiffusionConfig)):
            if not isinstance(getattr(self, name), cls):
                raise ValueError(f"{name} must be a mapping of {cls.__name__} fields, got "
                                 f"{quoted(getattr(self, name))}")
        positive = ("pose_dim", "speech_dim", "speech_fps", "motion_fps", "d_model", "n_blocks", "n_heads",
                    "encoder_kernel", "mlp_ratio", "style_time_constant_s")
        for name in positive:  # before the checks below: n_heads 0 would divide by zero
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
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
        """Build from a (possibly partial) dict; unknown keys, also in ``mamba`` and ``diffusion``, are a UserError
        listing them (rather than a TypeError from the constructor, which would quote them raw)."""
        if not isinstance(data, dict):
            raise UserError(f"model config must be a mapping of ModelConfig fields, got {quoted(data)}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known, key=str)  # key=str: YAML keys may be numbers, dates, ...
        if unknown:
            raise UserError(f"model config has unknown keys {unknown}; known keys are {sorted(known)}")
        for section, section_cls in (("mamba", MambaSettings), ("diffusion", DiffusionConfig)):
            if isinstance(data.get(section), dict):
                known = {f.name for f in dataclasses.fields(section_cls)}
                unknown = sorted(set(data[section]) - known, key=str)
                if unknown:
                    raise UserError(f"model.{section} has unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"model config not found: {path} (a weights folder holds config.json)") from None
        except OSError as error:  # a folder, no permission
            raise UserError(f"model config {path} cannot be read ({error.strerror}); give a config.json file") from None
        # ValueError: JSONDecodeError, not UTF-8, an integer of more than 4300 digits; RecursionError: arrays
        # nested thousands deep
        except (ValueError, RecursionError) as error:
            reason = " ".join(str(error).split())
            raise UserError(f"model config {path} is not valid JSON: {reason}") from None
        if not isinstance(data, dict):
            raise UserError(f"model config {path} must be a JSON object of ModelConfig fields")
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError, UserError) as error:
            raise UserError(f"model config {path} is invalid: {error}") from None
