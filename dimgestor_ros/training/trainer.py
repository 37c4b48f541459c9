"""The DiM-Gestor training loop: AdamW, warmup + cosine LR, gradient clipping, EMA weights, validation,
resumable checkpoints, and data parallelism over processes (torch DDP on gloo) when a process group is up.

Reproducibility is by construction rather than by replaying state: the batch order of step k is a pure function
of (seed, k) (StepBatchSampler), the LR of step k a pure function of k (lr_at), and the diffusion noise comes from
a generator whose state is checkpointed. A run resumed from step k therefore takes exactly the steps an
uninterrupted run would have taken.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..errors import UserError
from ..model.gesture_model import DiMGestor
from .checkpoint import (
    RngState,
    latest_checkpoint,
    load_checkpoint,
    partial_dir,
    read_state,
    remove_partial,
    save_checkpoint,
    save_rng,
)
from .config import TrainConfig

LOG_FILE = "train_log.jsonl"
Callback = Callable[[dict[str, Any]], None]
Metrics = Callable[[DiMGestor, Dataset], dict[str, float]]
DatasetFactory = Callable[[Path], Dataset]


def derive_seed(seed: int, *keys: object) -> int:
    """An independent 63-bit seed per purpose (init, batch order of an epoch, a rank's noise), from one run seed."""
    digest = hashlib.sha256(repr((seed, *keys)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warmup to config.lr, then cosine to zero."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    span = max(1, config.steps - config.warmup)
    progress = min(1.0, (step - config.warmup) / span)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def ema_decay_at(step: int, config: TrainConfig) -> float:
    """EMA decay after `step` updates, ramped up so that the average is not dominated by the random init early on."""
    return min(config.ema_decay, (1 + step) / (10 + step))


class StepBatchSampler:
    """Indices of each training step's batch for one process, forever, starting at step `start_step`.

    Each epoch is a fresh permutation seeded by (seed, epoch); its trailing partial batch is dropped so every epoch
    has the same number of steps, which makes the batch of step k computable without iterating to it. The global
    batch is the same whatever the number of processes; process `rank` takes its contiguous share of it.
    """

    def __init__(self, length: int, batch_size: int, seed: int, start_step: int = 0, rank: int = 0, world: int = 1):
        self.length, self.batch_size, self.seed, self.start_step = length, batch_size, seed, start_step
        self.rank, self.world = rank, world
        self.per_rank = batch_size // world
        self.steps_per_epoch = length // batch_size
        if self.steps_per_epoch == 0 or batch_size % world:
            raise ValueError("batch_size must be a multiple of the process count and no larger than the dataset")

    def permutation(self, epoch: int) -> torch.Tensor:
        return torch.randperm(self.length, generator=torch.Generator().manual_seed(derive_seed(self.seed, "epoch", epoch)))

    def __iter__(self) -> Iterator[list[int]]:
        epoch, offset = divmod(self.start_step, self.steps_per_epoch)
        while True:
            order = self.permutation(epoch)
            for k in range(offset, self.steps_per_epoch):
                start = k * self.batch_size + self.rank * self.per_rank
                yield order[start : start + self.per_rank].tolist()
            epoch, offset = epoch + 1, 0


class _LossModule(nn.Module):
    """Wraps the model so that DDP sees the loss as forward(): DDP only syncs gradients of graphs built there."""

    def __init__(self, model: DiMGestor) -> None:
        super().__init__()
        self.model = model

    def forward(self, motion: torch.Tensor, speech: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # motion (B, M, pose_dim) unnormalised; speech (B, S, speech_dim)
        return self.model.training_loss(self.model.normalize(motion), speech, generator)


@dataclasses.dataclass
class _World:
    """This process's place in the (optional) process group; one process when none is initialised."""

    rank: int = 0
    size: int = 1

    @classmethod
    def current(cls) -> "_World":
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return cls(torch.distributed.get_rank(), torch.distributed.get_world_size())
        return cls()

    def mean(self, value: torch.Tensor) -> float:
        if self.size > 1:
            value = value.detach().clone()
            torch.distributed.all_reduce(value)
            value /= self.size
        return float(value)

    def barrier(self) -> None:
        if self.size > 1:
            torch.distributed.barrier()


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for averaged, current in zip(ema.parameters(), model.parameters()):
        averaged.lerp_(current, 1.0 - decay)
    for averaged, current in zip(ema.buffers(), model.buffers()):
        averaged.copy_(current)


@torch.no_grad()
def validation_loss(model: DiMGestor, dataset: Dataset, batch_size: int) -> float:
    """Mean denoising loss over `dataset`, with the same timesteps and noise at every call (fixed seeds per batch,
    independent of the run seed) so that validation curves of different runs are comparable."""
    model.eval()
    total, count = 0.0, 0
    for index, batch in enumerate(DataLoader(dataset, batch_size=batch_size, shuffle=False)):
        motion, speech = batch["motion"], batch["speech"]  # (B, M, 63), (B, S, 43)
        generator = torch.Generator().manual_seed(derive_seed(0, "validation", index))
        loss = model.training_loss(model.normalize(motion), speech, generator)
        total += float(loss) * motion.shape[0]
        count += motion.shape[0]
    return total / max(count, 1)


def weights_digest(module: nn.Module) -> str:
    """SHA-256 of a module's state dict, to compare weights across processes or runs without moving them."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _check_dataset(dataset: Dataset, config: TrainConfig, world: _World) -> None:
    try:
        length = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        raise UserError("the training dataset has no len(); it must be a map-style torch Dataset") from None
    if length == 0:
        raise UserError("the training dataset is empty; point --data at a folder with paired speech/motion clips")
    if not callable(getattr(dataset, "motion_stats", None)):
        raise UserError("the training dataset has no motion_stats() -> (mean, std); the model needs them to normalise")
    if config.batch_size % world.size:
        raise UserError(f"batch_size {config.batch_size} is not divisible by the {world.size} training processes; "
                        "change batch_size or the process count")
    if length < config.batch_size:
        raise UserError(f"the dataset has {length} clips, fewer than batch_size {config.batch_size}; lower batch_size "
                        "or add data")


class _TrainLog:
    """train_log.jsonl, one JSON object per step; on resume, lines after the checkpoint are dropped so the log is
    the history of exactly the steps the weights went through."""

    def __init__(self, path: Path, keep_through: int) -> None:
        self.path = path
        lines = path.read_text().splitlines() if keep_through > 0 and path.is_file() else []
        kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= keep_through]
        path.write_text("".join(line + "\n" for line in kept))
        self.file = path.open("a")

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    disable = not enabled or ci or not sys.stderr.isatty()
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, disable=disable)


def _resume_point(checkpoints: Path, resume: bool, config: TrainConfig, world: _World) -> Path | None:
    latest = latest_checkpoint(checkpoints)
    if not resume:
        if latest is not None:
            raise UserError(f"{checkpoints} already holds checkpoints (latest {latest.name}); pass --resume to "
                            "continue that run, or choose another --out folder")
        return None
    if latest is None:
        raise UserError(f"--resume: no checkpoint in {checkpoints}; train without --resume to start a new run "
                        "(checkpoints are written every checkpoint_every steps)")
    state = read_state(latest)
    if state["config"].get("model") != config.model.to_dict():
        raise UserError(f"--resume: the model config differs from the one {latest} was trained with; resume "
                        "without --config (the checkpoint's config is used) or with the same model section")
    saved_world = state.get("extra", {}).get("world_size", 1)
    if saved_world != world.size:
        raise UserError(f"--resume: {latest} was written by {saved_world} training processes, this run has "
                        f"{world.size}; resume with {saved_world} processes")
    if state["step"] >= config.steps:
        raise UserError(f"--resume: {latest} is already at step {state['step']} of steps={config.steps}; raise "
                        "--steps to train further")
    return latest


def train(
    dataset: Dataset,
    out_dir: str | Path,
    config: TrainConfig,
    resume: bool = False,
    val_dataset: Dataset | None = None,
    callback: Callback | None = None,
    *,
    metrics: Metrics | None = None,
) -> dict[str, Any]:
    """Train a DiM-Gestor on `dataset` (items {"motion": (M, 63), "speech": (S, 43), ...}, unnormalised motion).

    Writes out_dir/checkpoints/step_XXXXXX/ every config.checkpoint_every steps and at the end, out_dir/weights/
    (the EMA model, a normal weights folder) at the end, and out_dir/train_log.jsonl. If torch.distributed is
    initialised, this process is one rank of a data-parallel run. `callback(record)` is called on rank 0 after
    every step with that step's log record; `metrics(ema_model, val_dataset)` adds entries at validation steps.
    Returns the final step, loss, validation loss, paths, and digests of the final weights.
    """
    out_dir = Path(out_dir)
    world = _World.current()
    checkpoints = out_dir / "checkpoints"
    resume_from = _resume_point(checkpoints, resume, config, world)
    _check_dataset(dataset, config, world)
    world.barrier()  # every rank has looked for checkpoints before rank 0 changes anything on disk
    if world.rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_partial(checkpoints)
        config.save(out_dir / "train_config.json")
    world.barrier()

    torch.manual_seed(derive_seed(config.seed, "init"))
    model = DiMGestor(config.model)
    mean, std = dataset.motion_stats()  # type: ignore[attr-defined]  # (63,), (63,)
    model.set_normalization(torch.as_tensor(mean), torch.as_tensor(std))
    if callable(getattr(dataset, "speech_stats", None)):  # optional: without it the speech is used as it comes
        speech_mean, speech_std = dataset.speech_stats()  # type: ignore[attr-defined]  # (speech_dim,) each
        model.fuzzy.set_speech_normalization(torch.as_tensor(speech_mean), torch.as_tensor(speech_std))
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    noise = torch.Generator().manual_seed(derive_seed(config.seed, "noise", world.rank))
    start = 0
    if resume_from is not None:
        restored = load_checkpoint(resume_from, model, ema, optimizer, world.rank)
        if restored.rng is None:
            raise UserError(f"{resume_from} has no RNG state for rank {world.rank}; it is incomplete, delete it to "
                            "resume from an earlier checkpoint")
        restored.rng.restore(noise)
        start = restored.step

    net: nn.Module = _LossModule(model)
    if world.size > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(net, forward_sync_buffers=False)  # buffers (normalisation, schedule) are constant
    sampler = StepBatchSampler(len(dataset), config.batch_size, config.seed, start, world.rank, world.size)  # type: ignore[arg-type]
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=config.num_workers,
                        generator=torch.Generator().manual_seed(derive_seed(config.seed, "workers", world.rank, start)))
    batches = iter(loader)
    log = _TrainLog(out_dir / LOG_FILE, keep_through=start) if world.rank == 0 else None
    bar = _progress(config.steps, start, enabled=world.rank == 0)
    record: dict[str, Any] = {}
    last_val: float | None = None
    started = time.monotonic()
    model.train()
    try:
        for step in range(start, config.steps):
            batch = next(batches)
            lr = lr_at(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = net(batch["motion"], batch["speech"], noise)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip or math.inf)
            optimizer.step()
            ema_update(ema, model, ema_decay_at(step, config))
            done = step + 1
            record = {"step": done, "loss": world.mean(loss.detach()), "lr": lr, "grad_norm": float(grad_norm),
                      "val_loss": None}
            if world.rank == 0 and val_dataset is not None and _due(done, config.val_every, config.steps):
                last_val = record["val_loss"] = validation_loss(ema, val_dataset, config.batch_size)
                if metrics is not None:
                    record.update(metrics(ema, val_dataset))
                elapsed = time.monotonic() - started
                summary = ", ".join(f"{key} {value:.4g}" for key, value in record.items()
                                    if key.startswith("val_") and isinstance(value, float))
                # Also when the bar is hidden (CI, logs to a file): validation is the line worth having there.
                bar.write(f"step {done}/{config.steps}: loss {record['loss']:.4f}, {summary} "
                          f"({(done - start) / max(elapsed, 1e-9):.2f} steps/s)", file=sys.stderr)
            if log is not None:
                log.write(record)  # before the checkpoint, so a checkpoint's steps are always all in the log
            if _due(done, config.checkpoint_every, config.steps):
                _checkpoint(checkpoints, done, model, ema, optimizer, config, noise, world)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}", refresh=False)
            if world.rank == 0 and callback is not None:
                callback(record)
    finally:
        bar.close()
        if log is not None:
            log.close()
        del batches  # stops DataLoader workers now rather than at garbage collection

    weights = out_dir / "weights"
    if world.rank == 0:
        ema.save(weights)
    world.barrier()
    return {
        "step": config.steps,
        "loss": record.get("loss"),
        "val_loss": last_val,
        "steps_per_s": (config.steps - start) / max(time.monotonic() - started, 1e-9),
        "weights": str(weights),
        "checkpoint": str(latest_checkpoint(checkpoints)),
        "log": str(out_dir / LOG_FILE),
        "rank": world.rank,
        "model_digest": weights_digest(model),
        "ema_digest": weights_digest(ema),
    }


def _due(step: int, every: int, last: int) -> bool:
    return step == last or (every > 0 and step % every == 0)


def _checkpoint(root: Path, step: int, model: nn.Module, ema: nn.Module, optimizer: torch.optim.Optimizer,
                config: TrainConfig, noise: torch.Generator, world: _World) -> None:
    save_rng(partial_dir(root, step), world.rank, RngState.capture(noise))
    world.barrier()  # every rank's RNG state is in the folder before rank 0 publishes it
    if world.rank == 0:
        save_checkpoint(root, step, model, ema, optimizer, config.to_dict(), extra={"world_size": world.size})
    world.barrier()


# --- data parallel over local processes -------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, factory: DatasetFactory, data_dir: Path, out_dir: Path,
                config: dict[str, Any], resume: bool, val_dir: Path | None, results: Any) -> None:
    import torch.distributed as dist

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))  # processes share the cores
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        dataset = factory(data_dir)
        val = factory(val_dir) if val_dir is not None else None
        from .validation import validation_metrics

        results.put(train(dataset, out_dir, TrainConfig.from_dict(config), resume=resume, val_dataset=val,
                          metrics=validation_metrics))
    except UserError as error:
        results.put({"rank": rank, "error": str(error)})
    finally:
        dist.destroy_process_group()


def train_distributed(
    factory: DatasetFactory,
    data_dir: str | Path,
    out_dir: str | Path,
    config: TrainConfig,
    nprocs: int,
    resume: bool = False,
    val_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Run train() in `nprocs` local processes joined by DDP on gloo (CPU); returns each rank's result by rank.

    `factory(data_dir)` builds the dataset inside every process; it must be picklable (a module-level function or
    class), since the processes are spawned.
    """
    import torch.multiprocessing as mp

    if nprocs < 1:
        raise UserError(f"--nproc must be >= 1, got {nprocs}")
    results = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_ddp_worker, nprocs=nprocs, join=True,
             args=(nprocs, _free_port(), factory, Path(data_dir), Path(out_dir), config.to_dict(), resume,
                   None if val_dir is None else Path(val_dir), results))
    gathered = sorted((results.get() for _ in range(nprocs)), key=lambda r: r["rank"])
    errors = [r["error"] for r in gathered if "error" in r]
    if errors:
        raise UserError(errors[0])
    return gathered


# --- command line ------------------------------------------------------------------------------------------------


def default_dataset_factory(data_dir: Path, window_frames: int = 60, hop_frames: int = 15,
                            cache_dir: Path | None = None) -> Dataset:
    """Paired BVH + WAV clips (BEAT / ZEGGS / GENEA layout), imported only when training."""
    from ..corpus.dataset import PairedMotionDataset

    return PairedMotionDataset(data_dir, window_frames=window_frames, hop_frames=hop_frames, cache_dir=cache_dir)


def _check_data_dir(path: Path, flag: str) -> None:
    if not path.is_dir():
        raise UserError(f"{flag} folder not found: {path}; point {flag} at a folder of paired speech/motion clips")
    if not any(entry for entry in path.iterdir() if not entry.name.startswith(".")):
        raise UserError(f"{flag} folder {path} is empty; put the paired speech/motion clips there (or fix the path)")


def add_train_parser(subparsers: Any, dataset_factory: DatasetFactory | None = None) -> argparse.ArgumentParser:
    """Add `train` to the `dimgestor` subcommands; `dataset_factory(data_dir)` builds the dataset (default:
    PairedMotionDataset)."""
    parser = subparsers.add_parser(
        "train", help="train a DiM-Gestor model",
        description="Train on a folder of paired speech/motion clips; checkpoints, a log and the final EMA weights "
        "go to --out. Several processes (data parallel, gloo): --nproc N, or launch under torchrun.")
    parser.add_argument("--data", type=Path, required=True, help="training data folder")
    parser.add_argument("--out", type=Path, required=True, help="run folder: checkpoints/, weights/, train_log.jsonl")
    parser.add_argument("--config", type=Path, help="training config (YAML/JSON, TrainConfig fields; default: "
                        "the defaults, or the checkpoint's config with --resume)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    parser.add_argument("--steps", type=int, help="override the config's total steps")
    parser.add_argument("--seed", type=int, help="override the config's seed")
    parser.add_argument("--val-data", type=Path, help="validation data folder (validation loss every val_every steps)")
    parser.add_argument("--nproc", type=int, default=1, help="local training processes, data parallel (default 1)")
    parser.set_defaults(handler=lambda args: run_train(args, dataset_factory))
    return parser


def _resolve_config(args: argparse.Namespace) -> TrainConfig:
    if args.config is not None:
        config = TrainConfig.load(args.config)
    elif args.resume and (latest := latest_checkpoint(args.out / "checkpoints")) is not None:
        config = TrainConfig.from_dict(read_state(latest)["config"], source=f"config of {latest}")
    else:
        config = TrainConfig()
    overrides = {name: getattr(args, name) for name in ("steps", "seed") if getattr(args, name) is not None}
    return TrainConfig.from_dict({**config.to_dict(), **overrides}, source="training config") if overrides else config


def run_train(args: argparse.Namespace, dataset_factory: DatasetFactory | None = None) -> int:
    """`dimgestor train`; under torchrun (WORLD_SIZE > 1 in the environment) this process joins the gloo group."""
    _check_data_dir(args.data, "--data")
    if args.val_data is not None:
        _check_data_dir(args.val_data, "--val-data")
    config = _resolve_config(args)
    # Speech features are cached in the run folder: a resumed or repeated run does not recompute them.
    factory = dataset_factory or functools.partial(
        default_dataset_factory, window_frames=config.window_frames, hop_frames=config.hop_frames,
        cache_dir=args.out / "feature_cache")
    if args.nproc > 1:
        results = train_distributed(factory, args.data, args.out, config, args.nproc, args.resume, args.val_data)
        result = results[0]
    else:
        torchrun = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if torchrun:
            import torch.distributed as dist

            dist.init_process_group("gloo")
        try:
            val = factory(args.val_data) if args.val_data is not None else None
            from .validation import validation_metrics

            result = train(factory(args.data), args.out, config, resume=args.resume, val_dataset=val,
                           metrics=validation_metrics)
        finally:
            if torchrun:
                dist.destroy_process_group()
        if result["rank"] != 0:
            return 0
    print(f"trained to step {result['step']} (loss {result['loss']:.4f}); weights: {result['weights']}")
    return 0
