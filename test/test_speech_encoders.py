"""HuBERT speech encoders (PyTorch and ONNX) on a tiny random checkpoint saved to disk: frame count, layers, ONNX
parity, windowed streaming, error messages, and the factory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dimgestor_ros.errors import UserError  # noqa: E402
from dimgestor_ros.features.factory import SpeechEncoder, make_speech_encoder  # noqa: E402
from dimgestor_ros.features.hubert import HubertEncoder, conv_geometry, normalise_waveform  # noqa: E402
from dimgestor_ros.features.onnx_encoder import OnnxSpeechEncoder  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
HIDDEN = 32
LAYERS = 2


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Voiced glides with syllable-rate amplitude, noise bursts and pauses: 16 kHz float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) * (np.sin(2 * np.pi * 0.3 * t) > -0.6)
    noise = rng.standard_normal(len(t)) * (np.sin(2 * np.pi * 2.5 * t + 1) > 0.8)
    return (0.3 * voiced * envelope + 0.05 * noise).astype(np.float32)


@pytest.fixture(scope="module")
def hubert_dirs(tmp_path_factory):
    """A tiny random HuBERT (standard conv kernels/strides: 320x down) saved twice: plain, and with a
    preprocessor_config.json (Wav2Vec2FeatureExtractor, do_normalize=True)."""
    import torch
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    config = HubertConfig(
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )
    assert conv_geometry(config.conv_kernel, config.conv_stride) == (400, 320)
    torch.manual_seed(0)
    model = HubertModel(config).eval()
    plain = tmp_path_factory.mktemp("hubert_plain")
    model.save_pretrained(plain)
    with_extractor = tmp_path_factory.mktemp("hubert_extractor")
    model.save_pretrained(with_extractor)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True).save_pretrained(with_extractor)
    return plain, with_extractor


@pytest.fixture(scope="module")
def encoder(hubert_dirs):
    return HubertEncoder(hubert_dirs[0], context_seconds=2.0)


@pytest.fixture(scope="module")
def onnx_file(hubert_dirs, tmp_path_factory):
    from dimgestor_ros.features.onnx_encoder import export_hubert_onnx

    return export_hubert_onnx(hubert_dirs[0], tmp_path_factory.mktemp("onnx") / "hubert.onnx", layer=-1, opset=17)


def test_frame_count_and_dim(encoder):
    assert isinstance(encoder, SpeechEncoder)
    assert (encoder.sample_rate, encoder.frame_rate, encoder.dim) == (16000, 50.0, HIDDEN)
    audio = speech_like(3.0)
    for n in (0, 319, 320, 399, 400, 16000, 16079, 16080, 16399, 47999):
        features = encoder.encode(audio[:n])
        assert features.shape == (n // 320, HIDDEN) and features.dtype == np.float32, n
        assert np.isfinite(features).all()
    # the 40 + 40 samples of padding make the conv stack itself give floor(n / 320) frames: nothing is trimmed
    for n in (320, 16000, 16319, 47999):
        padded = np.pad(normalise_waveform(audio[:n]), (40, 40))
        assert encoder._forward(padded).shape == (n // 320, HIDDEN)


def test_feature_extractor_folder_matches_plain_normalisation(encoder, hubert_dirs):
    other = HubertEncoder(hubert_dirs[1])
    assert other._extractor is not None and other._extractor.do_normalize
    audio = speech_like(2.0, seed=1)
    np.testing.assert_allclose(other.encode(audio), encoder.encode(audio), atol=1e-5)


def test_selected_layer(hubert_dirs):
    import torch
    from transformers import HubertModel

    audio = speech_like(2.0, seed=2)
    outputs = {layer: HubertEncoder(hubert_dirs[0], layer=layer).encode(audio) for layer in (0, 1, 2, -1, -3)}
    assert np.abs(outputs[0] - outputs[1]).max() > 1e-3
    assert np.abs(outputs[1] - outputs[2]).max() > 1e-3
    np.testing.assert_array_equal(outputs[2], outputs[-1])
    np.testing.assert_array_equal(outputs[0], outputs[-3])
    # the truncated model gives the full model's hidden state of that layer
    full = HubertModel.from_pretrained(str(hubert_dirs[0]), local_files_only=True).eval()
    values = torch.from_numpy(np.pad(normalise_waveform(audio), (40, 40)))[None]
    with torch.inference_mode():
        reference = full(values, output_hidden_states=True)
    np.testing.assert_allclose(outputs[1], reference.hidden_states[1][0].numpy(), atol=1e-5)
    np.testing.assert_allclose(outputs[-1], reference.last_hidden_state[0].numpy(), atol=1e-5)


def test_onnx_matches_pytorch(encoder, onnx_file):
    onnx_encoder = OnnxSpeechEncoder(onnx_file, context_seconds=2.0, num_threads=1)
    assert isinstance(onnx_encoder, SpeechEncoder)
    assert (onnx_encoder.sample_rate, onnx_encoder.frame_rate, onnx_encoder.dim) == (16000, 50.0, HIDDEN)
    assert onnx_encoder.providers[-1] == "CPUExecutionProvider"
    errors = []
    # none is the traced length (2 s + 80): the time axis is dynamic; 12 s checks the error does not grow with length
    for n in (320, 16000 + 123, 3 * 16000 + 77, 12 * 16000 + 5):
        audio = speech_like(12.5, seed=3)[:n]
        ours, reference = onnx_encoder.encode(audio), encoder.encode(audio)
        assert ours.shape == reference.shape == (n // 320, HIDDEN)
        errors.append(float(np.abs(ours - reference).max()))
    print(f"\nONNX vs PyTorch max abs error: {max(errors):.2e}")
    assert max(errors) < 1e-4
    # the windowed streaming is shared: both backends stream the same windows
    chunks = np.array_split(speech_like(3.0, seed=4), 7)
    streamed = []
    for backend in (encoder, onnx_encoder):
        state, parts = backend.init_state(), []
        for chunk in chunks:
            features, state = backend.encode_stream(chunk, state)
            parts.append(features)
        streamed.append(np.concatenate(parts))
    assert np.abs(streamed[0] - streamed[1]).max() < 1e-4


def test_blocked_group_norm_equals_group_norm():
    import torch

    from dimgestor_ros.features.onnx_encoder import blocked_group_norm

    torch.manual_seed(0)
    for groups, channels, frames in ((8, 8, 1001), (2, 6, 37), (4, 8, 64)):
        norm = torch.nn.GroupNorm(groups, channels, affine=True)
        torch.nn.init.normal_(norm.weight)
        torch.nn.init.normal_(norm.bias)
        x = torch.randn(2, channels, frames) * 3 + 5
        with torch.no_grad():
            torch.testing.assert_close(blocked_group_norm(norm)(x), norm(x), atol=1e-5, rtol=1e-5)


def test_streaming_approximates_offline(encoder):
    audio = speech_like(6.0, seed=5)
    offline = encoder.encode(audio)
    rng = np.random.default_rng(0)
    sizes = rng.integers(100, 9000, size=64)
    bounds = np.cumsum(sizes)
    bounds = bounds[bounds < len(audio)]
    state, parts, longest_buffer = encoder.init_state(), [], 0
    for chunk in np.split(audio, bounds):
        features, state = encoder.encode_stream(chunk, state)
        assert features.shape[1] == HIDDEN and np.isfinite(features).all()
        assert state.emitted == state.total // 320 and state.buffer_start % 320 == 0
        parts.append(features)
        longest_buffer = max(longest_buffer, len(state.buffer))
    streamed = np.concatenate(parts)
    assert streamed.shape == offline.shape == (len(audio) // 320, HIDDEN)
    assert longest_buffer <= 2.0 * 16000 + 9000 + 320  # bounded by the context window, not the stream length
    difference = np.abs(streamed - offline)
    scale = np.abs(offline).max()
    print(f"\nstreaming vs offline: max abs {difference.max():.3f}, mean abs {difference.mean():.3f} "
          f"(offline max abs {scale:.3f})")
    # an approximation, not equality: no future audio, a 2 s window, per-window normalisation
    assert difference.mean() < 0.5 * np.abs(offline).mean()


@pytest.mark.reliability("bad input", "missing or wrong HuBERT model folder", "UserError naming the folder and the fix")
def test_missing_and_wrong_folders(tmp_path):
    with pytest.raises(UserError, match=r"does not exist.*TencentGameMate/chinese-hubert-base.*copy the folder"):
        HubertEncoder(tmp_path / "nowhere")
    with pytest.raises(UserError, match=r"not a HuBERT checkpoint \(no config.json\)"):
        HubertEncoder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    with pytest.raises(UserError, match=r"not a HuBERT checkpoint \(config.json has model_type 'wav2vec2'"):
        HubertEncoder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "hubert"}))  # no weights
    with pytest.raises(UserError, match=rf"cannot load the HuBERT checkpoint in {tmp_path}"):
        HubertEncoder(tmp_path)


def test_bad_layer(hubert_dirs):
    for layer in (3, -4):
        with pytest.raises(UserError, match=r"layer .* out of range .* valid layers are -3\.\.2"):
            HubertEncoder(hubert_dirs[0], layer=layer)


@pytest.mark.reliability("bad input", "missing ONNX speech encoder file", "UserError naming it")
def test_onnx_missing_file(tmp_path):
    from dimgestor_ros.features.onnx_encoder import OnnxSpeechEncoder

    with pytest.raises(UserError, match=r"does not exist; export one with .*export_hubert_onnx"):
        OnnxSpeechEncoder(tmp_path / "missing.onnx")


def test_factory(hubert_dirs, onnx_file):
    from dimgestor_ros.features.acoustic import AcousticFrontEnd
    from dimgestor_ros.features.onnx_encoder import OnnxSpeechEncoder

    assert type(make_speech_encoder("acoustic")) is AcousticFrontEnd
    assert type(make_speech_encoder()) is AcousticFrontEnd
    with pytest.raises(UserError, match=r"'hubert' needs the option 'model_dir'"):
        make_speech_encoder("hubert", layer=3)
    with pytest.raises(UserError, match=r"'hubert-onnx' needs the option 'onnx_path'"):
        make_speech_encoder("hubert-onnx")
    with pytest.raises(UserError, match=r"does not take option\(s\) onnx_path"):
        make_speech_encoder("hubert", model_dir=hubert_dirs[0], onnx_path=onnx_file)
    with pytest.raises(UserError, match=r"unknown speech encoder 'wavlm'; available: acoustic, hubert, hubert-onnx"):
        make_speech_encoder("wavlm")
    hubert = make_speech_encoder("hubert", model_dir=hubert_dirs[0], layer=1)
    assert isinstance(hubert, HubertEncoder) and hubert.layer == 1
    assert isinstance(make_speech_encoder("hubert-onnx", onnx_path=onnx_file), OnnxSpeechEncoder)


def test_import_stays_light():
    code = (
        "import sys, dimgestor_ros.features.factory, dimgestor_ros.features.hubert, "
        "dimgestor_ros.features.onnx_encoder\n"
        "heavy = [m for m in ('transformers', 'onnxruntime', 'onnx', 'torch') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr


def test_dimgestor_export_onnx_command_writes_a_runnable_model(hubert_dirs, tmp_path):
    from conftest import VENV_BIN

    out = tmp_path / "hubert.onnx"
    result = subprocess.run([str(VENV_BIN / "dimgestor"), "export-onnx", str(hubert_dirs[0]), "-o", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    audio = speech_like(2.0)
    np.testing.assert_allclose(OnnxSpeechEncoder(out).encode(audio), HubertEncoder(hubert_dirs[0]).encode(audio),
                               atol=1e-4)


@pytest.mark.reliability("bad input", "dimgestor export-onnx of a missing folder", "exit 2, one line")
def test_dimgestor_export_onnx_of_a_missing_folder_is_a_one_line_error(tmp_path):
    from conftest import VENV_BIN

    result = subprocess.run([str(VENV_BIN / "dimgestor"), "export-onnx", str(tmp_path / "nope"), "-o",
                             str(tmp_path / "x.onnx")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "nope" in result.stderr
