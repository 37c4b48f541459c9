"""Builds the speech encoder a model was trained with (its config names it).

Every encoder has the same small interface (``SpeechEncoder``): 16 kHz mono float32 audio in, (T, dim) float32
features at 50 fps out, with T = floor(samples / 320), offline (``encode``) or chunk by chunk (``init_state`` and
``encode_stream``).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import UserError
from .acoustic import AcousticConfig, AcousticFrontEnd

SPEECH_ENCODERS = ("acoustic", "hubert", "hubert-onnx")

# name -> (required options, optional options)
_OPTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "acoustic": ((), ()),
    "hubert": (("model_dir",), ("layer", "device", "context_seconds")),
    "hubert-onnx": (("onnx_path",), ("context_seconds", "num_threads", "providers")),
}


@runtime_checkable
class SpeechEncoder(Protocol):
    sample_rate: int

    @property
    def frame_rate(self) -> float: ...

    @property
    def dim(self) -> int: ...

    def encode(self, audio: np.ndarray) -> np.ndarray: ...

    def init_state(self) -> Any: ...

    def encode_stream(self, audio: np.ndarray, state: Any) -> tuple[np.ndarray, Any]: ...


def make_speech_encoder(name: str = "acoustic", **options: Any) -> SpeechEncoder:
    """``acoustic`` (built in), ``hubert`` (model_dir=, layer=, device=, context_seconds=) or ``hubert-onnx``
    (onnx_path=, context_seconds=, num_threads=, providers=)."""
    if name not in _OPTIONS:
        raise UserError(f"unknown speech encoder {name!r}; available: {', '.join(SPEECH_ENCODERS)}")
    required, optional = _OPTIONS[name]
    given = {key: value for key, value in options.items() if value is not None}
    for key in required:
        if key not in given or given[key] == "":
            raise UserError(f"speech encoder {name!r} needs the option {key!r} ({key}=...)")
    unknown = sorted(set(given) - set(required) - set(optional))
    if unknown:
        accepted = ", ".join(required + optional) or "none"
        raise UserError(f"speech encoder {name!r} does not take option(s) {', '.join(unknown)}; it takes: {accepted}")
    if name == "acoustic":
        return AcousticFrontEnd(AcousticConfig())
    if name == "hubert":
        from .hubert import HubertEncoder

        return HubertEncoder(**given)
    from .onnx_encoder import OnnxSpeechEncoder

    return OnnxSpeechEncoder(**given)
