"""The model configurations the benchmarks compare, by name, and how they are paired.

All benchmark models are randomly initialised (seeded): timing and memory do not depend on trained values, and a
paper-sized or parameter-matched model has no weights anyway. The shipped configurations are read from the
``config.json`` of the shipped weight folders, so the benchmark follows them if they change.

Pairings (Mamba-2 against transformer):
- ``shipped``: the two shipped configurations, equal width, depth and sampling steps. The Mamba-2 denoiser is
  bidirectional (a forward and a backward Mamba-2 layer per block), so it has more parameters at equal width.
- ``shipped_equal_params``: the shipped Mamba-2 against a transformer widened (same depth) to the Mamba-2
  denoiser's parameter count, so neither side wins by being smaller.
- ``paper``: 12 AdaLN blocks x 1024 wide (the DiM-Gestor paper's scale), equal width, depth and steps.
Streaming with carried state (``bench per-hop``) uses causal variants: a forward-only Mamba-2 (its parameter
count is then close to the transformer's at equal width) against a causally masked transformer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from ..model.config import MambaSettings, ModelConfig

SHIPPED_FOLDERS = {"mamba2": "dimgestor_default", "transformer": "dimgestor_transformer"}
# The paper's scale: 12 blocks x 1024 wide. Mamba-2 head dim 64 and state 64 as in mamba_ssm's defaults for this
# width; chunks of 64 frames (the pure-PyTorch scan's quadratic part grows with the chunk, the Triton kernels take any
# power of two). The transformer gets 16 heads of 64.
PAPER = {"d_model": 1024, "n_blocks": 12, "n_heads": 16}
PAPER_MAMBA = MambaSettings(d_state=64, d_conv=4, expand=2, headdim=64, chunk_size=64)


@dataclass(frozen=True)
class Pairing:
    name: str
    mamba2: str  # config name
    transformer: str  # config name
    why: str


PAIRINGS = (
    Pairing("shipped", "shipped_mamba2", "shipped_transformer",
            "the shipped configurations: equal width, depth and sampling steps (Mamba-2 has more parameters: two "
            "Mamba-2 layers per block, one per direction)"),
    Pairing("shipped_equal_params", "shipped_mamba2", "matched_transformer",
            "the shipped Mamba-2 against a transformer of the same depth widened to the Mamba-2 denoiser's "
            "parameter count"),
    Pairing("paper", "paper_mamba2", "paper_transformer",
            "paper-sized, 12 blocks x 1024 wide: equal width, depth and sampling steps"),
)
SMALL_CONFIGS = ("shipped_mamba2", "shipped_transformer", "matched_transformer")
PAPER_CONFIGS = ("paper_mamba2", "paper_transformer")


def weights_root() -> Path:
    from ..paths import default_weights_dir

    return default_weights_dir().parent


def shipped_config(backbone: str) -> ModelConfig:
    """The configuration of the shipped weights of ``backbone`` (defaults if the folder is missing)."""
    path = weights_root() / SHIPPED_FOLDERS[backbone] / "config.json"
    config = ModelConfig.load(path) if path.is_file() else ModelConfig(backbone=backbone)
    return dataclasses.replace(config, backbone=backbone)


def denoiser_parameters(config: ModelConfig) -> int:
    """Parameters of the denoiser of ``config``, counted on the meta device (no memory, no init cost)."""
    from ..model.denoiser import GestureDenoiser

    with torch.device("meta"):
        return sum(p.numel() for p in GestureDenoiser(config).parameters())


def matched_transformer(target: int, base: ModelConfig) -> ModelConfig:
    """A transformer of base's depth and heads whose width gives the denoiser parameter count closest to target."""
    step = 2 * base.n_heads  # even head dims
    best, best_gap = base, None
    for width in range(step, 8 * base.d_model + 1, step):
        config = dataclasses.replace(base, backbone="transformer", d_model=width)
        gap = abs(denoiser_parameters(config) - target)
        if best_gap is None or gap < best_gap:
            best, best_gap = config, gap
    return best


def paper_config(backbone: str) -> ModelConfig:
    base = shipped_config(backbone)
    return dataclasses.replace(base, backbone=backbone, mamba=PAPER_MAMBA, **PAPER)


def named_configs(names: tuple[str, ...] | list[str]) -> dict[str, ModelConfig]:
    configs: dict[str, ModelConfig] = {}
    for name in names:
        if name == "shipped_mamba2":
            configs[name] = shipped_config("mamba2")
        elif name == "shipped_transformer":
            configs[name] = shipped_config("transformer")
        elif name == "matched_transformer":
            mamba = shipped_config("mamba2")
            configs[name] = matched_transformer(denoiser_parameters(mamba), shipped_config("transformer"))
        elif name == "paper_mamba2":
            configs[name] = paper_config("mamba2")
        elif name == "paper_transformer":
            configs[name] = paper_config("transformer")
        else:
            raise ValueError(f"unknown benchmark configuration {name!r}")
    return configs


def causal(config: ModelConfig) -> ModelConfig:
    """The streaming (causal) variant: a forward-only Mamba-2; the transformer is masked causally when run."""
    return dataclasses.replace(config, bidirectional=False)


def build(config: ModelConfig, device: str | torch.device = "cpu", seed: int = 0):
    """A randomly initialised DiMGestor in eval mode on ``device``."""
    from ..model.gesture_model import DiMGestor

    torch.manual_seed(seed)
    return DiMGestor(config).to(device).eval()


def describe(config: ModelConfig) -> dict:
    """The figures of a configuration a report shows (and what rebuilds it)."""
    from ..model.fuzzy import FuzzyFeatureExtractor

    with torch.device("meta"):
        fuzzy = sum(p.numel() for p in FuzzyFeatureExtractor(config).parameters())
    denoiser = denoiser_parameters(config)
    return {
        "backbone": config.backbone,
        "d_model": config.d_model,
        "n_blocks": config.n_blocks,
        "n_heads": config.n_heads,
        "bidirectional": config.bidirectional,
        "mamba": dataclasses.asdict(config.mamba),
        "parameters": denoiser + fuzzy,
        "parameters_denoiser": denoiser,
        "parameters_fuzzy": fuzzy,
        "denoiser_weights_mb": denoiser * 4 / 2**20,  # float32
        "model_config": config.to_dict(),
    }
