"""Builds the speech encoder a model was trained with (its config names it)."""

from __future__ import annotations

from ..errors import UserError
from .acoustic import AcousticConfig, AcousticFrontEnd

SPEECH_ENCODERS = ("acoustic",)


def make_speech_encoder(name: str) -> AcousticFrontEnd:
    if name == "acoustic":
        return AcousticFrontEnd(AcousticConfig())
    raise UserError(f"unknown speech encoder {name!r}; available: {', '.join(SPEECH_ENCODERS)}")
