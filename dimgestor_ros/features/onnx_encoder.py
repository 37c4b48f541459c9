"""HuBERT exported to ONNX and run in onnxruntime, with the interface and frame count of ``HubertEncoder``.

``export_hubert_onnx`` traces the selected layer with torch.onnx's TorchScript exporter (``dynamo=False``: the
default torch.export-based exporter of torch >= 2.9 needs the extra ``onnxscript`` package; the TorchScript one
needs only ``onnx``). The time axis is dynamic. The graph takes the normalised, padded waveform (1, samples) and
gives (1, frames, dim); normalisation, the 40 + 40 samples of padding and the floor(n / 320) frame rule stay in
Python (shared with ``HubertEncoder``) and are described in the model's metadata, which ``OnnxSpeechEncoder``
reads. onnxruntime is imported lazily; ``onnx`` and torch are needed only to export.

Accuracy: HuBERT base normalises its first conv layer with GroupNorm over the whole time axis. Exported as is,
onnxruntime's float32 reductions over ~n / 5 samples drift with clip length (max abs error vs PyTorch about 9e-5
at 3 s on a tiny model, growing with length); the export therefore swaps each GroupNorm for the same
normalisation with a two-level (blocked) mean, which keeps onnxruntime as accurate as PyTorch (about 2e-6).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .hubert import (
    DEFAULT_CONTEXT_SECONDS,
    HOP_LENGTH,
    SAMPLE_RATE,
    WindowedSpeechEncoder,
    load_hubert,
    selected_layer_module,
)

DEFAULT_OPSET = 17
META_PREFIX = "dimgestor."


def blocked_group_norm(norm, block: int = 64):
    """torch.nn.Module computing ``norm`` (a torch.nn.GroupNorm on (B, C, T)) with blocked means.

    Sums of ``block`` elements, then a sum of those: float32 rounding error grows with T / block + block instead of
    T, as it does in a naive single-pass reduction.
    """
    import torch

    class BlockedGroupNorm(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.num_groups, self.eps, self.affine = norm.num_groups, norm.eps, norm.affine
            self.weight, self.bias = norm.weight, norm.bias

        @staticmethod
        def _mean(x: torch.Tensor) -> torch.Tensor:  # (B, G, N) -> (B, G, 1)
            n = x.shape[-1]
            padded = torch.nn.functional.pad(x, (0, (-n) % block))
            return padded.reshape(x.shape[0], x.shape[1], -1, block).sum(-1).sum(-1, keepdim=True) / n

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            grouped = x.reshape(x.shape[0], self.num_groups, -1)
            centred = grouped - self._mean(grouped)
            out = (centred * torch.rsqrt(self._mean(centred * centred) + self.eps)).reshape(x.shape)
            if self.affine:
                shape = (1, -1) + (1,) * (x.dim() - 2)
                out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
            return out

    return BlockedGroupNorm()


def _swap_group_norms(module) -> int:
    import torch

    swapped = 0
    for name, child in list(module.named_children()):
        if isinstance(child, torch.nn.GroupNorm):
            setattr(module, name, blocked_group_norm(child))
            swapped += 1
        else:
            swapped += _swap_group_norms(child)
    return swapped


def export_hubert_onnx(
    model_dir: str | Path, out_path: str | Path, layer: int = -1, opset: int = DEFAULT_OPSET
) -> Path:
    """Export layer ``layer`` of the HuBERT checkpoint in ``model_dir`` to ``out_path`` (ONNX); returns the path."""
    import torch

    try:
        import onnx
    except ImportError as error:
        raise UserError(
            f"exporting to ONNX needs the 'onnx' package ({error}); run: pip install -r requirements.txt"
        ) from error

    model, index, extractor, receptive = load_hubert(model_dir, layer)
    _swap_group_norms(model)
    module = selected_layer_module(model, index)
    excess = receptive - HOP_LENGTH
    pad_left, pad_right = excess // 2, excess - excess // 2
    do_normalize = True if extractor is None else bool(extractor.do_normalize)
    out = Path(out_path).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.randn(1, 2 * SAMPLE_RATE + excess)  # any length works: the time axis is dynamic
    import warnings

    with warnings.catch_warnings(), torch.inference_mode():
        # The TorchScript exporter is deprecated in favour of dynamo=True (which needs onnxscript), and the tracer
        # warns about a Python bool in transformers' SDPA wrapper that is constant (False) for HuBERT.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            (example,),
            str(out),
            input_names=["input_values"],
            output_names=["features"],
            dynamic_axes={"input_values": {1: "samples"}, "features": {1: "frames"}},
            opset_version=int(opset),
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load(str(out))
    metadata = {
        "encoder": "hubert",
        "source": str(Path(model_dir).expanduser().resolve()),
        "layer": str(index),
        "num_hidden_layers": str(model.config.num_hidden_layers),
        "dim": str(model.config.hidden_size),
        "sample_rate": str(SAMPLE_RATE),
        "hop_length": str(HOP_LENGTH),
        "pad_left": str(pad_left),
        "pad_right": str(pad_right),
        "do_normalize": "1" if do_normalize else "0",
    }
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_PREFIX + key, value
    onnx.save(proto, str(out))
    return out


def choose_providers(available: list[str]) -> list[str]:
    """CUDA when onnxruntime offers it, with CPU as the fallback."""
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxSpeechEncoder(WindowedSpeechEncoder):
    """Runs an ONNX export of ``export_hubert_onnx`` in onnxruntime (CUDA if available, else CPU)."""

    def __init__(
        self,
        onnx_path: str | Path,
        context_seconds: float = DEFAULT_CONTEXT_SECONDS,
        num_threads: int | None = None,
        providers: list[str] | None = None,
    ) -> None:
        super().__init__(context_seconds)
        path = Path(onnx_path).expanduser()
        if not path.is_file():
            raise UserError(
                f"ONNX speech encoder {path} does not exist; export one with "
                "dimgestor_ros.features.onnx_encoder.export_hubert_onnx(model_dir, out_path)"
            )
        try:
            import onnxruntime as ort
        except ImportError as error:
            raise UserError(
                f"the 'hubert-onnx' speech encoder needs onnxruntime ({error}); run: pip install -r requirements.txt"
            ) from error
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        self.providers = list(providers) if providers else choose_providers(ort.get_available_providers())
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options, providers=self.providers)
        except Exception as error:  # onnxruntime raises its own exception types for unreadable models
            raise UserError(f"cannot load the ONNX model {path}: {error}") from error
        self.onnx_path = path
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 2:
            raise UserError(
                f"{path} is not a speech encoder of export_hubert_onnx: it must take one (1, samples) waveform input"
            )
        self._input_name = inputs[0].name
        meta = self._session.get_modelmeta().custom_metadata_map
        get = lambda key, default: meta.get(META_PREFIX + key, default)  # noqa: E731
        if int(get("sample_rate", SAMPLE_RATE)) != SAMPLE_RATE or int(get("hop_length", HOP_LENGTH)) != HOP_LENGTH:
            raise UserError(f"{path} is not a {SAMPLE_RATE} Hz, {HOP_LENGTH}-sample-hop encoder")
        self._pad_left = int(get("pad_left", 40))
        self._pad_right = int(get("pad_right", 40))
        self._do_normalize = get("do_normalize", "1") == "1"
        self.layer = int(get("layer", -1))
        dim = get("dim", None)
        if dim is None:  # an ONNX model from elsewhere: ask it
            probe = self._session.run(None, {self._input_name: np.zeros((1, 400 + HOP_LENGTH), np.float32)})[0]
            dim = probe.shape[-1]
        self._dim = int(dim)

    def _forward(self, input_values: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(input_values, dtype=np.float32)[None]
        return self._session.run(None, {self._input_name: x})[0][0]
