"""Test audio made to order: a tone, and a RIFF/WAVE file built from its header fields (to damage them one at a
time). Shared by the bad-audio, bad-input and fuzz tests."""

from __future__ import annotations

import struct

import numpy as np


def tone(seconds: float, rate: int, freq: float = 300.0, start: float = 0.0, level: float = 0.4) -> np.ndarray:
    """(N,) float32 sine of ``level`` peak, starting ``start`` seconds into it (so pieces join into one tone)."""
    t = start + np.arange(int(round(seconds * rate))) / rate
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def wav_file(format_tag: int, channels: int, rate: int, bits: int, payload: bytes, riff_size: int | None = None,
             fmt_size: int = 16, data_size: int | None = None, byte_rate: int | None = None,
             block_align: int | None = None) -> bytes:
    """A canonical RIFF/WAVE file from its header fields; None: the value consistent with the others."""
    align = block_align if block_align is not None else (channels * bits // 8) % 0x10000
    rate_bytes = byte_rate if byte_rate is not None else (rate * channels * bits // 8) % 2**32
    fmt = struct.pack("<HHIIHH", format_tag, channels, rate, rate_bytes, align, bits)
    fmt = (fmt + bytes(max(0, fmt_size - 16)))[:fmt_size]  # cut or padded to the size the chunk header says
    chunks = (b"fmt " + struct.pack("<I", fmt_size) + fmt + b"data"
              + struct.pack("<I", len(payload) if data_size is None else data_size) + payload)
    return b"RIFF" + struct.pack("<I", (4 + len(chunks)) if riff_size is None else riff_size) + b"WAVE" + chunks
