"""Tests for saving and loading DiM-Gestor weights folders: exact round trip, clear UserErrors naming the file for
every broken folder, pickles never unpickled, config validation, and the shipped default weights."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

from dimgestor_ros.errors import UserError
from dimgestor_ros.features.factory import make_speech_encoder
from dimgestor_ros.model.config import DiffusionConfig, MambaSettings, ModelConfig
from dimgestor_ros.model.gesture_model import CONFIG_FILE, WEIGHTS_FILE, DiMGestor
from dimgestor_ros.motion.skeleton import HUMANOID
from dimgestor_ros.paths import default_weights_dir


def tiny_config(**overrides) -> ModelConfig:
    kw = dict(d_model=32, n_blocks=1, mamba=MambaSettings(d_state=16, headdim=16, chunk_size=16), pose_dim=63)
    kw.update(overrides)
    return ModelConfig(**kw)


def perturbed_model(seed: int = 0, **overrides) -> DiMGestor:
    torch.manual_seed(seed)
    model = DiMGestor(tiny_config(**overrides))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    model.set_normalization(torch.linspace(-1, 1, 63), torch.linspace(0.1, 0.9, 63))
    return model.eval()


def samples(model: DiMGestor) -> torch.Tensor:
    speech = torch.randn(1, 50, 43, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        local, style = model.fuzzy(speech)
    return model.denormalize(model.sample(local, style, steps=3, generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("backbone", ["mamba2", "transformer"])
def test_save_load_round_trip_is_exact(tmp_path, backbone):
    model = perturbed_model(backbone=backbone, diffusion=DiffusionConfig(prediction="eps", schedule="cosine"))
    model.save(tmp_path / "w")
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE])
    loaded = DiMGestor.load(tmp_path / "w")
    assert loaded.config == model.config
    assert not loaded.training
    original, restored = model.state_dict(), loaded.state_dict()
    assert sorted(original) == sorted(restored)
    assert "pose_mean" in restored and "pose_std" in restored
    for name, tensor in original.items():
        assert torch.equal(restored[name], tensor), name
    torch.testing.assert_close(samples(loaded), samples(model), rtol=0, atol=0)


def test_config_json_round_trip(tmp_path):
    config = tiny_config(backbone="transformer", n_heads=2, diffusion=DiffusionConfig(cond_drop_prob=0.25))
    config.save(tmp_path / "config.json")
    assert ModelConfig.load(tmp_path / "config.json") == config


@pytest.mark.reliability("bad input", "missing weights folder", "UserError 'not found' naming the folder")
def test_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found") as error:
        DiMGestor.load(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(error.value)


@pytest.mark.reliability("bad input", "weights folder without model.safetensors", "UserError naming the missing file")
def test_folder_without_safetensors_is_a_user_error_naming_it(tmp_path):
    tiny_config().save(tmp_path / CONFIG_FILE)
    with pytest.raises(UserError) as error:
        DiMGestor.load(tmp_path)
    assert str(tmp_path / WEIGHTS_FILE) in str(error.value)


@pytest.mark.reliability("bad input", "weights folder without config.json", "UserError naming the missing file")
def test_folder_without_config_is_a_user_error_naming_it(tmp_path):
    perturbed_model().save(tmp_path)
    (tmp_path / CONFIG_FILE).unlink()
    with pytest.raises(UserError) as error:
        DiMGestor.load(tmp_path)
    assert str(tmp_path / CONFIG_FILE) in str(error.value)


@pytest.mark.reliability(
    "bad input",
    "truncated weights (half, all but the tail, header bytes)",
    "UserError naming the file",
)
@pytest.mark.parametrize("keep", [0.5, 0.99, 7 / 1e9])  # half, all but the tail, and a few header bytes
def test_truncated_safetensors_is_a_user_error_naming_it(tmp_path, keep):
    perturbed_model().save(tmp_path)
    weights = tmp_path / WEIGHTS_FILE
    data = weights.read_bytes()
    weights.write_bytes(data[: max(1, int(len(data) * keep))])
    with pytest.raises(UserError) as error:
        DiMGestor.load(tmp_path)
    assert str(weights) in str(error.value)


@pytest.mark.reliability("bad input", "empty weights file", "UserError naming the file")
def test_empty_safetensors_is_a_user_error_naming_it(tmp_path):
    perturbed_model().save(tmp_path)
    (tmp_path / WEIGHTS_FILE).write_bytes(b"")
    with pytest.raises(UserError) as error:
        DiMGestor.load(tmp_path)
    assert str(tmp_path / WEIGHTS_FILE) in str(error.value)


@pytest.mark.reliability("bad input", "config.json that does not match the tensors", "UserError naming both files")
@pytest.mark.parametrize(
    "field,value", [("d_model", 64), ("pose_dim", 60), ("n_blocks", 2), ("backbone", "transformer")]
)
def test_config_that_does_not_match_the_tensors_is_a_user_error_naming_both(tmp_path, field, value):
    perturbed_model().save(tmp_path)
    data = json.loads((tmp_path / CONFIG_FILE).read_text())
    data[field] = value
    (tmp_path / CONFIG_FILE).write_text(json.dumps(data))
    with pytest.raises(UserError) as error:
        DiMGestor.load(tmp_path)
    assert str(tmp_path / WEIGHTS_FILE) in str(error.value)
    assert str(tmp_path / CONFIG_FILE) in str(error.value)


@pytest.mark.reliability(
    "bad input",
    ".pt (torch.save) file where safetensors is expected",
    "UserError naming the file; never unpickled",
)
def test_torch_save_file_posing_as_safetensors_is_a_user_error(tmp_path):
    model = perturbed_model()
    model.save(tmp_path)
    torch.save(model.state_dict(), tmp_path / WEIGHTS_FILE)
    with pytest.raises(UserError) as error:
        DiMGestor.load(tmp_path)
    assert str(tmp_path / WEIGHTS_FILE) in str(error.value)


class _CreatesMarker:
    """Unpickling this runs os.mkdir(marker): the classic pickle code-execution payload, made harmless."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.reliability(
    "bad input",
    "pickle payload that runs code, as model.safetensors",
    "refused with a UserError; the payload never runs",
)
def test_pickle_payload_is_never_unpickled(tmp_path):
    # The payload really runs code when unpickled (proved on a separate marker) ...
    probe = tmp_path / "probe_marker"
    pickle.loads(pickle.dumps(_CreatesMarker(str(probe))))
    assert probe.is_dir()
    # ... but loading it as weights only reports the file.
    marker = tmp_path / "pwned_marker"
    perturbed_model().save(tmp_path / "w")
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        (tmp_path / "w" / WEIGHTS_FILE).write_bytes(pickle.dumps(_CreatesMarker(str(marker)), protocol=protocol))
        with pytest.raises(UserError) as error:
            DiMGestor.load(tmp_path / "w")
        assert str(tmp_path / "w" / WEIGHTS_FILE) in str(error.value)
        assert not marker.exists()
    # Nor as a torch.save zip whose data.pkl holds the payload.
    torch.save({"x": _CreatesMarker(str(marker))}, tmp_path / "w" / WEIGHTS_FILE)
    with pytest.raises(UserError):
        DiMGestor.load(tmp_path / "w")
    assert not marker.exists()


def test_unknown_config_keys_are_a_user_error():
    data = tiny_config().to_dict()
    data["d_modle"] = 64
    with pytest.raises(UserError, match="d_modle"):
        ModelConfig.from_dict(data)


@pytest.mark.reliability("bad input", "typo'd key in a weights config.json", "UserError naming the file and the key")
@pytest.mark.parametrize("section", [None, "mamba", "diffusion"])
def test_unknown_key_in_a_weights_folder_config_names_the_file_and_key(tmp_path, section):
    perturbed_model().save(tmp_path)
    data = json.loads((tmp_path / CONFIG_FILE).read_text())
    (data if section is None else data[section])["d_stat"] = 8  # a typo, at the top or in a nested section
    (tmp_path / CONFIG_FILE).write_text(json.dumps(data))
    with pytest.raises(UserError) as error:
        DiMGestor.load(tmp_path)
    assert str(tmp_path / CONFIG_FILE) in str(error.value) and "d_stat" in str(error.value)


@pytest.mark.reliability(
    "bad input",
    "invalid config.json (not JSON, wrong type, unknown backbone or schedule)",
    "UserError naming the file",
)
@pytest.mark.parametrize(
    "text", ["{not json", "[1, 2]", json.dumps({"backbone": "rnn"}), json.dumps({"diffusion": {"schedule": "x"}})]
)
def test_invalid_config_json_is_a_user_error_naming_the_file(tmp_path, text):
    perturbed_model().save(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(text)
    with pytest.raises(UserError) as error:
        DiMGestor.load(tmp_path)
    assert str(tmp_path / CONFIG_FILE) in str(error.value)


def test_shipped_default_weights_load_and_fit_the_skeleton_and_encoder():
    model = DiMGestor.load(default_weights_dir())
    assert model.config.pose_dim == HUMANOID.num_dofs
    assert model.pose_mean.shape == (HUMANOID.num_dofs,)
    encoder = make_speech_encoder(model.config.speech_encoder)
    assert encoder.dim == model.config.speech_dim and encoder.frame_rate == model.config.speech_fps
