"""Resumable training checkpoints as safetensors + JSON: nothing is ever unpickled.

A checkpoint is a folder ``step_XXXXXX/`` holding

* ``model.safetensors`` / ``ema.safetensors``: the raw and EMA model state dicts;
* ``optimizer.safetensors``: every tensor of the optimizer state, keyed ``state/<param index>/<name>``;
* ``rng_rank<R>.safetensors``: the RNG states of training process R (its diffusion-noise generator and the
  global torch generator), since each DDP process draws its own noise;
* ``state.json`` (written last): step, training config, optimizer structure (param groups and non-tensor
  state), the Python/numpy RNG states per rank, and the format version.

The folder is written under a temporary name and renamed into place, so a run killed while saving leaves the
previous checkpoint as the latest one instead of a half-written one.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UserError

FORMAT = "dimgestor-train-checkpoint"
VERSION = 1
STATE_FILE = "state.json"
_STEP_DIR = re.compile(r"^step_(\d{6,})$")


def checkpoint_dir(root: Path, step: int) -> Path:
    return Path(root) / f"step_{step:06d}"


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under `root` (those with state.json), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and (p / STATE_FILE).is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


@dataclass
class RngState:
    """Everything random a training process draws from, so a resumed run draws the same numbers."""

    noise: torch.Tensor  # torch.Generator.get_state() of the diffusion noise / timestep generator
    torch_global: torch.Tensor
    numpy_global: dict[str, Any]
    python: list[Any]

    @classmethod
    def capture(cls, noise_generator: torch.Generator) -> "RngState":
        name, keys, pos, has_gauss, cached = np.random.get_state()
        numpy_state = {"name": name, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
                       "cached_gaussian": float(cached)}
        return cls(noise_generator.get_state(), torch.get_rng_state(), numpy_state, _to_json(random.getstate()))

    def restore(self, noise_generator: torch.Generator) -> None:
        noise_generator.set_state(self.noise)
        torch.set_rng_state(self.torch_global)
        n = self.numpy_global
        np.random.set_state((n["name"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"],
                             n["cached_gaussian"]))
        version, internal, gauss = self.python
        random.setstate((version, tuple(internal), gauss))


@dataclass
class Checkpoint:
    """What load_checkpoint hands back beside the tensors it copies into the model, EMA model and optimizer."""

    path: Path
    step: int
    config: dict[str, Any]
    rng: RngState | None
    extra: dict[str, Any] = field(default_factory=dict)


def save_rng(directory: Path, rank: int, rng: RngState) -> None:
    """Write one process's RNG state into a checkpoint being assembled (every DDP rank calls this)."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file({"noise": rng.noise.contiguous(), "torch_global": rng.torch_global.contiguous()},
              str(directory / f"rng_rank{rank}.safetensors"))
    (directory / f"rng_rank{rank}.json").write_text(json.dumps({"numpy": rng.numpy_global, "python": rng.python}))


def partial_dir(root: Path, step: int) -> Path:
    """Where a checkpoint is assembled before the rename that publishes it."""
    return Path(root) / f".step_{step:06d}.partial"


def remove_partial(root: str | Path) -> None:
    """Drop checkpoints a killed run left half-written, so their files never mix into a new one."""
    root = Path(root)
    if root.is_dir():
        for path in root.glob(".step_*.partial"):
            shutil.rmtree(path, ignore_errors=True)


def save_checkpoint(
    root: str | Path,
    step: int,
    model: nn.Module,
    ema: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Publish ``root/step_XXXXXX/``; every training process has already written its RNG state there with
    save_rng(partial_dir(root, step), rank, ...), so this runs on rank 0 only."""
    from safetensors.torch import save_file

    root = Path(root)
    tmp = partial_dir(root, step)
    tmp.mkdir(parents=True, exist_ok=True)
    save_file(_tensors(model), str(tmp / "model.safetensors"))
    save_file(_tensors(ema), str(tmp / "ema.safetensors"))
    optimizer_tensors, optimizer_structure = _split_optimizer_state(optimizer.state_dict())
    save_file(optimizer_tensors, str(tmp / "optimizer.safetensors"))
    state = {"format": FORMAT, "version": VERSION, "step": step, "config": config,
             "optimizer": optimizer_structure, "extra": extra or {}}
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
    final = checkpoint_dir(root, step)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def read_state(directory: str | Path) -> dict[str, Any]:
    """state.json of a checkpoint, validated, without touching any tensor."""
    path = Path(directory) / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} is missing; {directory} is not a complete training checkpoint") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON ({error}); delete {directory} to resume from an earlier one") from None
    if state.get("format") != FORMAT or state.get("version") != VERSION:
        raise UserError(f"{directory} is not a version-{VERSION} {FORMAT}; it cannot be resumed by this version")
    return state


def load_checkpoint(
    directory: str | Path,
    model: nn.Module,
    ema: nn.Module,
    optimizer: torch.optim.Optimizer,
    rank: int = 0,
) -> Checkpoint:
    """Copy a checkpoint's tensors into `model`, `ema` and `optimizer` (already built with the same shapes)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    state = read_state(directory)

    def read(name: str) -> dict[str, torch.Tensor]:
        try:
            return load_file(str(directory / name))
        except (SafetensorError, OSError) as error:
            raise UserError(f"{directory / name} is unreadable ({error}); delete {directory} to resume from an "
                            "earlier checkpoint") from None

    for module, name in ((model, "model.safetensors"), (ema, "ema.safetensors")):
        tensors = read(name)
        try:
            module.load_state_dict(tensors)
        except RuntimeError as error:
            raise UserError(f"{directory / name} does not fit the model of this config ({error}); resume with the "
                            "model config the run started with") from None
    optimizer.load_state_dict(_join_optimizer_state(read("optimizer.safetensors"), state["optimizer"]))
    rng = None
    if (directory / f"rng_rank{rank}.safetensors").is_file():
        tensors = read(f"rng_rank{rank}.safetensors")
        other = json.loads((directory / f"rng_rank{rank}.json").read_text())
        rng = RngState(tensors["noise"], tensors["torch_global"], other["numpy"], other["python"])
    return Checkpoint(directory, int(state["step"]), state["config"], rng, state.get("extra", {}))


def _tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().cpu().contiguous() for name, tensor in module.state_dict().items()}


def _split_optimizer_state(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors of an optimizer state dict for safetensors, and everything else (JSON-able) for state.json."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in state_dict["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state/{index}/{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": _to_json(state_dict["param_groups"]), "scalars": scalars}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], structure: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, index, name = key.split("/", 2)
        state.setdefault(int(index), {})[name] = value
    for index, entries in structure["scalars"].items():
        state.setdefault(int(index), {}).update(entries)
    groups = []
    for group in structure["param_groups"]:
        group = dict(group)
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])  # JSON has no tuples; Adam's code expects the pair as saved
        groups.append(group)
    return {"state": state, "param_groups": groups}


def _to_json(value: Any) -> Any:
    """Tuples become lists, recursively (the inverse for the few places that need tuples is done by hand)."""
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    return value
