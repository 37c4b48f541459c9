"""Training: config files, LR schedule, batch order, safetensors checkpoints, the loop's outputs, bitwise resume,
data parallelism over two gloo processes, and the errors a user can fix."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from dimgestor_ros.errors import UserError
from dimgestor_ros.model.config import MambaSettings, ModelConfig
from dimgestor_ros.model.gesture_model import DiMGestor
from dimgestor_ros.training.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from dimgestor_ros.training.config import TrainConfig
from dimgestor_ros.training.trainer import (
    StepBatchSampler,
    add_train_parser,
    lr_at,
    run_train,
    train,
    train_distributed,
)

MOTION_FRAMES = 30
SPEECH_FRAMES = MOTION_FRAMES * 50 // 30


class ToyGestures(Dataset):
    """Clips following the training data contract, whose motion is a fixed smooth function of the speech (so there
    is something to learn) with an offset and scale per degree of freedom (so normalisation matters)."""

    def __init__(self, clips: int = 16, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.speech = torch.randn(clips, SPEECH_FRAMES, 43, generator=g).cumsum(dim=1) / 5  # (N, S, 43)
        weight = torch.randn(43, 63, generator=g) / math.sqrt(43)
        index = torch.arange(MOTION_FRAMES) * SPEECH_FRAMES // MOTION_FRAMES
        scale, offset = torch.rand(63, generator=g) + 0.2, torch.randn(63, generator=g)
        self.motion = torch.tanh(self.speech[:, index] @ weight) * scale + offset  # (N, M, 63)

    def __len__(self) -> int:
        return len(self.motion)

    def __getitem__(self, i: int) -> dict:
        return {"motion": self.motion[i], "speech": self.speech[i], "name": f"clip{i}", "start": 0}

    def motion_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.motion.mean(dim=(0, 1)), self.motion.std(dim=(0, 1))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models train fastest on one thread; on a shared machine two threads each can be 20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def toy_factory(data_dir: Path) -> ToyGestures:
    """Module-level, so spawned DDP processes can unpickle it; the folder only has to exist and be non-empty."""
    return ToyGestures()


def tiny_model() -> ModelConfig:
    return ModelConfig(d_model=32, n_blocks=1, mamba=MambaSettings(d_state=16, headdim=16, chunk_size=16))


def tiny_config(**overrides) -> TrainConfig:
    kw = dict(steps=12, batch_size=4, lr=3e-3, warmup=3, ema_decay=0.9, val_every=6, checkpoint_every=6,
              model=tiny_model())
    kw.update(overrides)
    return TrainConfig(**kw)


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "clip0.bvh").write_text("placeholder")
    return folder


# --- config -------------------------------------------------------------------------------------------------------


def test_config_loads_yaml_with_a_nested_model_section_and_defaults_for_the_rest(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("steps: 50\nlr: 0.001\nmodel:\n  d_model: 32\n  mamba:\n    d_state: 16\n")
    config = TrainConfig.load(path)
    assert (config.steps, config.lr, config.batch_size) == (50, 0.001, TrainConfig().batch_size)
    assert config.model.d_model == 32 and config.model.mamba.d_state == 16 and config.model.mamba.headdim == 32
    json_path = tmp_path / "train.json"
    config.save(json_path)
    assert TrainConfig.load(json_path) == config


@pytest.mark.reliability(
    "bad input",
    "training config YAML with a typo'd key (top level, model, mamba)",
    "UserError naming the key",
)
@pytest.mark.parametrize("text, named", [
    ("steps: 5\nwarmpu: 10\n", "warmpu"),
    ("model:\n  d_modle: 32\n", "d_modle"),
    ("model:\n  mamba:\n    dstate: 16\n", "dstate"),
])
def test_config_with_an_unknown_key_is_a_user_error_naming_it(tmp_path, text, named):
    path = tmp_path / "train.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=named):
        TrainConfig.load(path)


@pytest.mark.reliability("bad input", "training config YAML with an invalid value", "UserError naming the field")
def test_config_with_an_invalid_value_is_a_user_error(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("batch_size: 0\n")
    with pytest.raises(UserError, match="batch_size"):
        TrainConfig.load(path)


# --- schedule and batch order ---------------------------------------------------------------------------------------


def test_lr_warms_up_linearly_to_the_peak_then_decays_by_cosine_to_zero():
    config = TrainConfig(steps=110, warmup=10, lr=1.0)
    lrs = [lr_at(step, config) for step in range(config.steps + 1)]
    assert lrs[:10] == pytest.approx([(k + 1) / 10 for k in range(10)])
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.5)  # half way through the cosine
    assert lrs[110] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_batch_order_started_at_step_k_continues_the_order_of_an_uninterrupted_run():
    def batches(start: int, count: int) -> list[list[int]]:
        iterator = iter(StepBatchSampler(length=10, batch_size=4, seed=3, start_step=start))
        return [next(iterator) for _ in range(count)]

    full = batches(0, 9)  # 2 steps per epoch: crosses four epoch boundaries
    assert batches(5, 4) == full[5:]
    assert full[:2] != full[2:4]  # each epoch is a new permutation
    for epoch in range(4):
        assert len(set(full[2 * epoch] + full[2 * epoch + 1])) == 8  # no clip twice within an epoch


def test_processes_split_each_global_batch_between_them():
    single = iter(StepBatchSampler(length=12, batch_size=4, seed=0))
    ranks = [iter(StepBatchSampler(length=12, batch_size=4, seed=0, rank=r, world=2)) for r in range(2)]
    for _ in range(5):
        assert next(ranks[0]) + next(ranks[1]) == next(single)


# --- checkpoints --------------------------------------------------------------------------------------------------


def test_checkpoints_hold_only_safetensors_and_json_and_restore_model_ema_and_optimizer_exactly(tmp_path):
    out = tmp_path / "run"
    train(ToyGestures(), out, tiny_config(steps=6, val_every=0, checkpoint_every=3))
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step_000003", "step_000006"]
    latest = latest_checkpoint(out / "checkpoints")
    assert {p.suffix for p in latest.iterdir()} == {".safetensors", ".json"}

    def fresh():
        torch.manual_seed(123)
        model = DiMGestor(tiny_model())
        return model, DiMGestor(tiny_model()), torch.optim.AdamW(model.parameters())

    model, ema, optimizer = fresh()
    restored = load_checkpoint(latest, model, ema, optimizer)
    assert restored.step == 6 and restored.config["steps"] == 6 and restored.rng is not None
    final = DiMGestor.load(out / "weights")
    for name, tensor in final.state_dict().items():
        assert torch.equal(ema.state_dict()[name], tensor), name
    # a second load into other objects gives the same optimizer state, tensor for tensor
    model2, ema2, optimizer2 = fresh()
    load_checkpoint(latest, model2, ema2, optimizer2)
    a, b = optimizer.state_dict(), optimizer2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for index, entries in a["state"].items():
        for key, value in entries.items():
            assert torch.equal(value, b["state"][index][key])
    assert len(a["state"]) == sum(1 for p in model.parameters() if p.requires_grad)
    assert a["param_groups"][0]["betas"] == (0.9, 0.999) and a["state"][0]["exp_avg_sq"].abs().sum() > 0


# --- the loop -----------------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_training_lowers_the_loss_and_writes_log_checkpoints_and_normalised_ema_weights(tmp_path):
    out = tmp_path / "run"
    dataset = ToyGestures()
    records = []
    result = train(dataset, out, tiny_config(steps=60, val_every=20, checkpoint_every=30), val_dataset=ToyGestures(seed=1),
                   callback=records.append, metrics=lambda model, val: {"clips": float(len(val))})
    log = read_log(out)
    assert [r["step"] for r in log] == list(range(1, 61)) and log == records
    validated = [r for r in log if r["val_loss"] is not None]
    assert [r["step"] for r in validated] == [20, 40, 60] and all(r["clips"] == 16 for r in validated)
    first, last = sum(r["loss"] for r in log[:5]) / 5, sum(r["loss"] for r in log[-5:]) / 5
    assert last < first / 2, (first, last)
    assert validated[-1]["val_loss"] < validated[0]["val_loss"]
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step_000030", "step_000060"]
    weights = DiMGestor.load(out / "weights")
    mean, std = dataset.motion_stats()
    torch.testing.assert_close(weights.pose_mean, mean)
    torch.testing.assert_close(weights.pose_std, std)
    assert result["step"] == 60 and result["val_loss"] == validated[-1]["val_loss"]


class Interrupted(Exception):
    pass


@pytest.mark.timeout(60)
def test_resumed_run_reproduces_the_uninterrupted_run_bitwise(tmp_path):
    config = tiny_config(steps=12, checkpoint_every=6, val_every=4)
    straight = train(ToyGestures(), tmp_path / "straight", config, val_dataset=ToyGestures(seed=1))

    def crash_at_step_8(record: dict) -> None:
        if record["step"] == 8:
            raise Interrupted  # after the step-6 checkpoint: steps 7-8 are lost and must be redone identically

    with pytest.raises(Interrupted):
        train(ToyGestures(), tmp_path / "resumed", config, val_dataset=ToyGestures(seed=1), callback=crash_at_step_8)
    assert [r["step"] for r in read_log(tmp_path / "resumed")] == list(range(1, 9))
    resumed = train(ToyGestures(), tmp_path / "resumed", config, resume=True, val_dataset=ToyGestures(seed=1))

    assert read_log(tmp_path / "resumed") == read_log(tmp_path / "straight")  # loss, lr, grad norm, val loss
    assert resumed["model_digest"] == straight["model_digest"]
    assert resumed["ema_digest"] == straight["ema_digest"]
    a, b = DiMGestor.load(tmp_path / "straight" / "weights"), DiMGestor.load(tmp_path / "resumed" / "weights")
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), name


def test_another_seed_gives_another_run(tmp_path):
    a = train(ToyGestures(), tmp_path / "a", tiny_config(steps=3, seed=0, val_every=0, checkpoint_every=0))
    b = train(ToyGestures(), tmp_path / "b", tiny_config(steps=3, seed=1, val_every=0, checkpoint_every=0))
    assert a["model_digest"] != b["model_digest"]
    assert read_log(tmp_path / "a")[0]["loss"] != read_log(tmp_path / "b")[0]["loss"]


@pytest.mark.timeout(120)
def test_two_gloo_processes_train_to_identical_weights_and_lower_the_loss(tmp_path):
    out = tmp_path / "ddp"
    config = tiny_config(steps=30, val_every=0, checkpoint_every=15)
    results = train_distributed(toy_factory, data_dir(tmp_path), out, config, nprocs=2)
    assert [r["rank"] for r in results] == [0, 1]
    assert results[0]["model_digest"] == results[1]["model_digest"]
    assert results[0]["ema_digest"] == results[1]["ema_digest"]
    log = read_log(out)
    assert len(log) == 30
    first, last = sum(r["loss"] for r in log[:5]) / 5, sum(r["loss"] for r in log[-5:]) / 5
    assert last < first * 0.75, (first, last)
    # both ranks' noise generators are in the checkpoint, so a two-process run can resume
    assert {p.name for p in (out / "checkpoints" / "step_000030").glob("rng_rank*.safetensors")} == {
        "rng_rank0.safetensors", "rng_rank1.safetensors"}


# --- errors and the command line ----------------------------------------------------------------------------------


@pytest.mark.reliability("bad input", "--resume with no checkpoint", "UserError saying to start without --resume")
def test_resume_without_a_checkpoint_is_a_user_error_saying_to_start_without_resume(tmp_path):
    with pytest.raises(UserError, match="no checkpoint.*without --resume"):
        train(ToyGestures(), tmp_path / "run", tiny_config(), resume=True)


@pytest.mark.reliability(
    "bad input",
    "new training run into a folder holding checkpoints",
    "UserError saying to pass --resume or choose another folder",
)
def test_a_new_run_refuses_to_mix_into_a_folder_with_checkpoints(tmp_path):
    train(ToyGestures(), tmp_path / "run", tiny_config(steps=2, val_every=0))
    with pytest.raises(UserError, match="--resume"):
        train(ToyGestures(), tmp_path / "run", tiny_config(steps=2, val_every=0))


@pytest.mark.reliability("bad input", "resuming with another model config", "UserError")
def test_resuming_with_another_model_config_is_a_user_error(tmp_path):
    train(ToyGestures(), tmp_path / "run", tiny_config(steps=2, val_every=0))
    other = tiny_config(steps=4, model=ModelConfig(d_model=16, n_blocks=1, n_heads=4,
                                                   mamba=MambaSettings(d_state=16, headdim=16, chunk_size=16)))
    with pytest.raises(UserError, match="model config differs"):
        train(ToyGestures(), tmp_path / "run", other, resume=True)


@pytest.mark.reliability("bad input", "dataset smaller than one batch", "UserError")
def test_a_dataset_smaller_than_the_batch_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="fewer than batch_size"):
        train(ToyGestures(clips=3), tmp_path / "run", tiny_config())


def parse(argv: list[str], factory=toy_factory) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dimgestor")
    add_train_parser(parser.add_subparsers(dest="command", required=True), factory)
    return parser.parse_args(["train", *argv])


@pytest.mark.reliability(
    "bad input",
    "dimgestor train with a missing or empty data folder",
    "exit 2, one line naming the folder",
)
def test_cli_refuses_a_missing_or_empty_data_folder(tmp_path):
    out = str(tmp_path / "run")
    with pytest.raises(UserError, match="--data folder not found"):
        run_train(parse(["--data", str(tmp_path / "nowhere"), "--out", out]), toy_factory)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="is empty"):
        run_train(parse(["--data", str(tmp_path / "empty"), "--out", out]), toy_factory)


def test_cli_trains_with_a_config_file_and_resumes_with_more_steps_from_the_checkpoint_config(tmp_path, capsys):
    config = tmp_path / "train.json"
    tiny_config(steps=4, val_every=0, checkpoint_every=2).save(config)
    data, out = str(data_dir(tmp_path)), str(tmp_path / "run")
    args = parse(["--data", data, "--out", out, "--config", str(config), "--seed", "5"])
    assert args.handler(args) == 0
    assert "trained to step 4" in capsys.readouterr().out
    args = parse(["--data", data, "--out", out, "--resume", "--steps", "6"])
    assert args.handler(args) == 0
    assert [r["step"] for r in read_log(Path(out))] == list(range(1, 7))
    assert json.loads((Path(out) / "train_config.json").read_text())["seed"] == 5  # kept from the checkpoint


def test_cli_resume_with_no_checkpoint_and_a_config_with_unknown_keys_are_user_errors(tmp_path):
    data, out = str(data_dir(tmp_path)), str(tmp_path / "run")
    with pytest.raises(UserError, match="no checkpoint"):
        run_train(parse(["--data", data, "--out", out, "--resume", "--steps", "2"]), toy_factory)
    bad = tmp_path / "bad.yaml"
    bad.write_text("step: 10\n")
    with pytest.raises(UserError, match=r"unknown keys \['step'\]"):
        run_train(parse(["--data", data, "--out", out, "--config", str(bad)]), toy_factory)



def test_validation_metrics_score_sampled_windows_against_the_reference():
    from dimgestor_ros.evaluation import metrics
    from dimgestor_ros.motion.kinematics import forward_kinematics
    from dimgestor_ros.motion.skeleton import HUMANOID
    from dimgestor_ros.training.validation import validation_metrics

    data = ToyGestures(clips=6)
    torch.manual_seed(0)
    model = DiMGestor(tiny_model())
    mean, std = data.motion_stats()
    model.set_normalization(mean, std)
    first = validation_metrics(model, data, windows=4)
    assert set(first) == {"val_fgd_pose", "val_fgd_kinetic", "val_jerk", "val_jerk_reference"}
    assert all(np.isfinite(value) for value in first.values())
    reference = np.stack([data[i]["motion"].numpy() for i in np.linspace(0, 5, 4).round().astype(int)])
    expected = np.mean([metrics.mean_jerk(forward_kinematics(HUMANOID, clip.astype(np.float64)), 30.0)
                        for clip in reference])
    assert first["val_jerk_reference"] == pytest.approx(expected)
    # An untrained x0 model predicts the mean pose: far from the data's pose distribution.
    assert first["val_fgd_pose"] > 1.0
    assert validation_metrics(model, data, windows=4) == first  # fixed noise: repeatable
