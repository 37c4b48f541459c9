"""HuBERT speech features (PyTorch, transformers) behind the same interface as the acoustic front end.

Frames: HuBERT's convolutional stack has a total stride of 320 samples (50 fps at 16 kHz) and a receptive field
of 400 samples, so a clip of n samples alone gives floor((n - 80) / 320) frames. The waveform is therefore padded
with (receptive field - stride) / 2 = 40 zeros on each side, after normalisation: frame i then sees samples
[320 i - 40, 320 i + 360), centred on the hop [320 i, 320 (i + 1)), and a clip gives exactly floor(n / 320) frames,
the count of ``AcousticFrontEnd`` (any residual difference, e.g. from an unusual conv stack, is trimmed or padded
by repeating the last frame).

Streaming: HuBERT is not causal (bidirectional attention, group norm over time in the base model, utterance-level
waveform normalisation). ``encode_stream`` re-encodes a bounded trailing window (``context_seconds`` of audio
before the first new frame, plus the new audio) and emits only the frames whose hop has been fully received, so the
frame count equals the offline count (floor(total samples / 320)) chunk by chunk. Its output approximates the
offline output: a frame never sees audio after the end of the chunk it was completed in, nor audio older than the
context window; the positional convolution alone spans +-64 frames (1.3 s), so the newest frames of each chunk
differ most. Measured on random-weight models (12 s of synthetic speech, 0.5 s chunks, 4 s context): mean abs
difference 0.24 (tiny test model) to 0.41 (full-size base) of the offline features' mean magnitude, mean frame
cosine similarity 0.93 / 0.88, max abs about 3.4 / 3.9; trained weights will differ. The cost is one forward pass over (context + chunk) per chunk.

transformers is imported lazily (inside functions): importing this module stays light.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError

SAMPLE_RATE = 16000
HOP_LENGTH = 320  # samples per frame: 50 fps at 16 kHz, the acoustic front end's hop
DEFAULT_CONTEXT_SECONDS = 4.0
EXAMPLE_MODEL = "TencentGameMate/chinese-hubert-base"
DOWNLOAD_HINT = (
    f"download a HuBERT checkpoint (e.g. `huggingface-cli download {EXAMPLE_MODEL} --local-dir chinese-hubert-base`) "
    "on a machine with internet and copy the folder here"
)


def conv_geometry(kernels: tuple[int, ...] | list[int], strides: tuple[int, ...] | list[int]) -> tuple[int, int]:
    """(receptive field, total stride) in samples of a stack of valid (unpadded) 1-d convolutions."""
    receptive, jump = 1, 1
    for kernel, stride in zip(kernels, strides):
        receptive += (kernel - 1) * jump
        jump *= stride
    return receptive, jump


def normalise_waveform(audio: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance, as HuBERT's Wav2Vec2FeatureExtractor(do_normalize=True) does."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.size == 0:
        return audio
    return ((audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)).astype(np.float32)


@dataclass
class HubertStreamState:
    """What a windowed (non-causal) encoder carries from one audio chunk to the next."""

    buffer: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))  # samples from buffer_start on
    buffer_start: int = 0  # stream sample index of buffer[0]; always a multiple of the hop
    total: int = 0  # samples received so far
    emitted: int = 0  # frames emitted so far


class WindowedSpeechEncoder:
    """Shared framing, normalisation and windowed streaming of non-causal encoders at one frame per 320 samples.

    Subclasses set ``_dim``, ``_pad_left``, ``_pad_right``, ``_do_normalize`` and implement ``_forward``.
    """

    sample_rate: int = SAMPLE_RATE
    hop_length: int = HOP_LENGTH
    _dim: int
    _pad_left: int = 40
    _pad_right: int = 40
    _do_normalize: bool = True

    def __init__(self, context_seconds: float = DEFAULT_CONTEXT_SECONDS) -> None:
        try:
            context_seconds = float(context_seconds)
        except (TypeError, ValueError):
            context_seconds = float("nan")
        if not context_seconds > 0:
            raise UserError(f"context_seconds must be > 0 (got {context_seconds}); e.g. {DEFAULT_CONTEXT_SECONDS}")
        self.context_seconds = float(context_seconds)
        # whole hops, so window starts stay on the frame grid
        hops = max(1, round(self.context_seconds * self.sample_rate / self.hop_length))
        self._context_samples = hops * self.hop_length

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def dim(self) -> int:
        return self._dim

    # --- model-specific part -------------------------------------------------------------------------------------
    def _forward(self, input_values: np.ndarray) -> np.ndarray:
        """(frames, dim) float32 of the model on a normalised, padded (n,) float32 waveform."""
        raise NotImplementedError

    def _normalise(self, audio: np.ndarray) -> np.ndarray:
        return normalise_waveform(audio) if self._do_normalize else np.asarray(audio, dtype=np.float32)

    # --- interface -----------------------------------------------------------------------------------------------
    def encode(self, audio: np.ndarray) -> np.ndarray:
        """Features (floor(len / 320), dim) float32 of a whole clip (16 kHz mono)."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        n_frames = len(audio) // self.hop_length
        if n_frames == 0:
            return np.zeros((0, self._dim), dtype=np.float32)
        values = np.pad(self._normalise(audio), (self._pad_left, self._pad_right))
        return self._fit(self._forward(values), n_frames)

    def init_state(self) -> HubertStreamState:
        return HubertStreamState()

    def encode_stream(self, audio: np.ndarray, state: HubertStreamState) -> tuple[np.ndarray, HubertStreamState]:
        """Features of every frame whose hop ``audio`` completed, and the state to continue with.

        Approximates ``encode`` of the whole stream (see the module docstring); the frame count is exact.
        """
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        samples = np.concatenate([state.buffer, audio])
        total = state.total + len(audio)
        complete = total // self.hop_length
        if complete == state.emitted:
            return np.zeros((0, self._dim), dtype=np.float32), HubertStreamState(
                samples, state.buffer_start, total, state.emitted
            )
        first_window_frame = state.buffer_start // self.hop_length
        window = self.encode(samples)  # frames first_window_frame ... complete - 1 (samples ends at `total`)
        features = window[state.emitted - first_window_frame : complete - first_window_frame]
        new_start = max(0, complete * self.hop_length - self._context_samples)
        new_state = HubertStreamState(
            buffer=samples[new_start - state.buffer_start :].copy(),
            buffer_start=new_start,
            total=total,
            emitted=complete,
        )
        return np.ascontiguousarray(features, dtype=np.float32), new_state

    def _fit(self, features: np.ndarray, n_frames: int) -> np.ndarray:
        """Trim or pad (repeating the last frame) to exactly n_frames."""
        features = np.asarray(features, dtype=np.float32).reshape(-1, self._dim)
        if len(features) >= n_frames:
            return np.ascontiguousarray(features[:n_frames])
        if len(features) == 0:
            return np.zeros((n_frames, self._dim), dtype=np.float32)
        tail = np.repeat(features[-1:], n_frames - len(features), axis=0)
        return np.concatenate([features, tail], axis=0)


def check_hubert_folder(model_dir: str | Path) -> dict:
    """The config.json of a HuBERT checkpoint folder, or a UserError naming the folder and the fix."""
    folder = Path(model_dir).expanduser()
    if not folder.is_dir():
        raise UserError(f"HuBERT model folder {folder} does not exist; {DOWNLOAD_HINT}")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise UserError(f"{folder} is not a HuBERT checkpoint (no config.json); {DOWNLOAD_HINT}")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"{config_file} is not readable JSON ({error}); {DOWNLOAD_HINT}") from error
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type != "hubert":
        raise UserError(
            f"{folder} is not a HuBERT checkpoint (config.json has model_type {model_type!r}, expected 'hubert'); "
            f"{DOWNLOAD_HINT}"
        )
    return config


def resolve_layer(layer: int, num_hidden_layers: int, folder: str | Path) -> int:
    """Layer index in 0..num_hidden_layers (0: the transformer input, L: the last layer); -1 is the last."""
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
        raise UserError(f"HuBERT layer must be an integer, got {layer!r}")
    count = num_hidden_layers + 1
    if not -count <= layer < count:
        raise UserError(
            f"HuBERT layer {layer} is out of range for {folder} ({num_hidden_layers} transformer layers): valid layers "
            f"are {-count}..{num_hidden_layers} (0: the transformer input, {num_hidden_layers} or -1: the last layer)"
        )
    return int(layer) % count


def load_hubert(model_dir: str | Path, layer: int = -1):
    """(model truncated to what ``layer`` needs, eval mode, float32), layer index 0..L, feature extractor or None."""
    folder = Path(model_dir).expanduser()
    check_hubert_folder(folder)
    try:
        from transformers import HubertModel, Wav2Vec2FeatureExtractor
    except ImportError as error:
        raise UserError(
            f"the 'hubert' speech encoder needs transformers ({error}); run: pip install -r requirements.txt"
        ) from error

    try:
        model, info = HubertModel.from_pretrained(
            str(folder), local_files_only=True, output_loading_info=True, dtype="float32"
        )
    except (OSError, ValueError, RuntimeError) as error:
        raise UserError(f"cannot load the HuBERT checkpoint in {folder}: {error}; {DOWNLOAD_HINT}") from error
    missing = [key for key in info.get("missing_keys", ()) if "masked_spec_embed" not in key]
    if missing:
        raise UserError(
            f"{folder} does not hold HuBERT weights matching its config.json ({len(missing)} missing, e.g. "
            f"{missing[0]}); {DOWNLOAD_HINT}"
        )
    model.eval()
    config = model.config
    receptive, stride = conv_geometry(config.conv_kernel, config.conv_stride)
    if stride != HOP_LENGTH:
        raise UserError(
            f"{folder}: its conv stack has a stride of {stride} samples ({SAMPLE_RATE / stride:g} fps); only "
            f"{HOP_LENGTH} ({SAMPLE_RATE / HOP_LENGTH:g} fps, every HuBERT base/large) is supported"
        )
    index = resolve_layer(layer, config.num_hidden_layers, folder)
    if index < config.num_hidden_layers:
        # Layers above the selected one are never needed; hidden_states[index] is the output of layer index - 1
        # (or the transformer input for 0), which the first max(index, 1) layers compute.
        model.encoder.layers = model.encoder.layers[: max(index, 1)]

    extractor = None
    if (folder / "preprocessor_config.json").is_file():
        try:
            extractor = Wav2Vec2FeatureExtractor.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as error:
            raise UserError(f"cannot read {folder / 'preprocessor_config.json'}: {error}") from error
        if int(extractor.sampling_rate) != SAMPLE_RATE:
            raise UserError(
                f"{folder} expects {extractor.sampling_rate} Hz audio; only {SAMPLE_RATE} Hz HuBERT models are "
                "supported"
            )
    return model, index, extractor, receptive


def selected_layer_module(model, index: int):
    """torch.nn.Module: input_values (1, n) -> the selected layer (1, frames, dim); used to run and to export."""
    import torch

    num_layers = model.config.num_hidden_layers

    class SelectedLayer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hubert = model

        def forward(self, input_values: torch.Tensor) -> torch.Tensor:
            if index >= num_layers:  # the full model: last_hidden_state (after the final norm, if any)
                return self.hubert(input_values).last_hidden_state
            return self.hubert(input_values, output_hidden_states=True).hidden_states[index]

    return SelectedLayer().eval()


class HubertEncoder(WindowedSpeechEncoder):
    """HuBERT hidden states of one layer at 50 fps, from a local transformers checkpoint folder.

    ``layer``: -1 (default) or L is the last layer, 0 the transformer input (after the conv stack, projection and
    positional convolution), k the output of transformer layer k; negative values count from the end.
    """

    def __init__(
        self,
        model_dir: str | Path,
        layer: int = -1,
        device: str = "cpu",
        context_seconds: float = DEFAULT_CONTEXT_SECONDS,
    ) -> None:
        super().__init__(context_seconds)
        import torch

        self.model_dir = Path(model_dir).expanduser()
        model, self.layer, self._extractor, receptive = load_hubert(self.model_dir, layer)
        try:
            self.device = torch.device(device)
        except RuntimeError as error:
            raise UserError(f"unknown torch device {device!r}; use 'cpu' or 'cuda'") from error
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"device {device!r} asked for but CUDA is not available; use device='cpu'")
        self._module = selected_layer_module(model, self.layer).to(self.device)
        self._dim = int(model.config.hidden_size)
        excess = receptive - self.hop_length
        self._pad_left, self._pad_right = excess // 2, excess - excess // 2
        self._do_normalize = True if self._extractor is None else bool(self._extractor.do_normalize)
        self.num_hidden_layers = int(model.config.num_hidden_layers)

    def _normalise(self, audio: np.ndarray) -> np.ndarray:
        if self._extractor is None:
            return super()._normalise(audio)
        values = self._extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="np")["input_values"]
        return np.asarray(values, dtype=np.float32).reshape(-1)

    def _forward(self, input_values: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(input_values, dtype=np.float32))[None].to(self.device)
            out = self._module(x)[0]
        return out.float().cpu().numpy()
