"""`dimgestor bench speech`: the speech encoder's share of the cost, per second of audio.

Encoders: a HuBERT-base-sized model (transformers' ``HubertConfig()`` defaults: 12 layers, 768 wide, about 94 M
parameters; random weights, created in a temporary folder with ``save_pretrained``, nothing downloaded) run by
PyTorch (``HubertEncoder``) and by ONNX Runtime (exported with the package's ``export_hubert_onnx``, run by
``OnnxSpeechEncoder``; the CUDA execution provider when onnxruntime offers it), and the built-in acoustic front end.
``--quick`` uses a tiny HuBERT (2 layers, 32 wide) instead: same code path, for tests.

Per encoder: offline (one ``encode`` of a clip) and streaming (``encode_stream`` chunk by chunk, as the node feeds
it, after the stream is older than the encoder's context), in ms per second of audio, for 50 ms chunks (what the
node and ``bench streaming`` push) and 0.5 s chunks (one hop). HuBERT is not causal, so it streams by re-encoding
its trailing context (4 s by default) for every chunk: its streaming cost depends on the chunk length.
For the share, the shipped Mamba-2 model's own per-hop work (fuzzy extractor on the hop's speech frames plus
sampling the 60-frame window, 8 steps; random weights of the shipped configuration) is timed in the same run:
share = encoder / (encoder + model), streaming with 50 ms chunks.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .common import machine_info, median_ms, report_head, set_threads, time_interleaved
from .report import write_report

SCHEMA = 1
SAMPLE_RATE = 16000
TINY_HUBERT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
               "conv_dim": (32,) * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4}


@dataclass
class Settings:
    clip_seconds: float
    chunk_seconds: tuple[float, ...]
    chunks_timed: int
    context_seconds: float
    warmup: int
    repeats: int
    hubert: str  # "base" or "tiny"
    threads: int
    device: str
    quick: bool


def speech_audio(seconds: float) -> tuple[np.ndarray, str]:
    """The shipped speech clip looped to ``seconds`` (real speech), or a speech-like synthetic signal if it cannot
    be read (e.g. no soundfile on a GPU machine): encoder cost does not depend on the words."""
    n = int(seconds * SAMPLE_RATE)
    try:
        from ..audio.io import load_audio
        from ..paths import demo_audio_file

        clip = load_audio(demo_audio_file(), SAMPLE_RATE)
        return np.tile(clip, int(np.ceil(n / len(clip))))[:n].astype(np.float32), "the shipped speech clip, looped"
    except Exception as error:  # noqa: BLE001 - any reason the clip is unreadable; fall back
        t = np.arange(n) / SAMPLE_RATE
        f0 = 120 + 30 * np.sin(2 * np.pi * 0.5 * t)
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
        voiced = sum(np.sin(k * phase) / k for k in range(1, 6))
        envelope = np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
        return (0.3 * voiced * envelope).astype(np.float32), f"synthetic speech-like signal ({error})"


def make_hubert(folder: Path, size: str) -> Path:
    """A randomly initialised HuBERT (base or tiny) saved as a transformers checkpoint folder."""
    from transformers import HubertConfig, HubertModel

    config = HubertConfig() if size == "base" else HubertConfig(**TINY_HUBERT)
    torch.manual_seed(0)
    HubertModel(config).eval().save_pretrained(folder)
    return folder


def _encoders(folder: Path, onnx_path: Path | None, settings: Settings) -> tuple[dict, dict]:
    """name -> encoder, and name -> why it is missing."""
    encoders, missing = {}, {}
    try:
        from ..features.acoustic import AcousticFrontEnd

        encoders["acoustic"] = AcousticFrontEnd()
    except Exception as error:  # noqa: BLE001 - e.g. librosa missing on a GPU machine
        missing["acoustic"] = str(error)
    try:
        from ..features.hubert import HubertEncoder

        encoders["hubert_pytorch"] = HubertEncoder(folder, device=settings.device,
                                                   context_seconds=settings.context_seconds)
    except Exception as error:  # noqa: BLE001
        missing["hubert_pytorch"] = str(error)
    if onnx_path is not None:
        try:
            from ..features.onnx_encoder import OnnxSpeechEncoder

            encoders["hubert_onnxruntime"] = OnnxSpeechEncoder(onnx_path, context_seconds=settings.context_seconds,
                                                               num_threads=settings.threads)
        except Exception as error:  # noqa: BLE001
            missing["hubert_onnxruntime"] = str(error)
    return encoders, missing


def _model_per_audio_second(settings: Settings) -> dict:
    """The shipped Mamba-2 model's work per hop (fuzzy extractor + window sampling), per second of audio."""
    from ..streaming.generator import StreamingConfig
    from .models import build, shipped_config

    stream = StreamingConfig()
    config = shipped_config("mamba2")
    model = build(config, settings.device)
    device = settings.device
    speech_frames = stream.hop_frames * config.speech_fps // config.motion_fps
    speech = torch.randn(1, speech_frames, config.speech_dim, device=device)
    state = model.fuzzy.init_state(1, device=device)
    local = torch.randn(1, stream.window_frames, config.d_model, device=device)
    known = torch.randn(1, stream.window_frames, config.pose_dim, device=device)
    mask = torch.zeros(1, stream.window_frames, 1, dtype=torch.bool, device=device)
    mask[:, : stream.window_frames - stream.hop_frames - stream.lookahead_frames] = True

    def hop():
        with torch.inference_mode():
            _, style, _ = model.fuzzy.forward_stream(speech, state)
            model.sample(local, style, steps=stream.steps, known=known, known_mask=mask)

    times = time_interleaved({"hop": hop}, settings.warmup, max(3, settings.repeats), device)
    hop_seconds = stream.hop_frames / config.motion_fps
    ms = median_ms(times["hop"])
    return {"ms_per_hop": ms, "hop_seconds": hop_seconds, "ms_per_audio_second": ms / hop_seconds,
            "what": "shipped Mamba-2 configuration: fuzzy extractor on one hop of speech frames + sampling the "
                    f"{stream.window_frames}-frame window with {stream.steps} steps"}


def run(out: Path | None, quick: bool, threads: int = 2, device: str = "cpu") -> dict:
    settings = Settings(
        clip_seconds=2.0 if quick else 10.0,
        chunk_seconds=(0.05, 0.5),
        chunks_timed=2 if quick else 10,
        context_seconds=4.0,
        warmup=1,
        repeats=1 if quick else 3,
        hubert="tiny" if quick else "base",
        threads=threads,
        device=device,
        quick=quick,
    )
    set_threads(threads)
    machine = machine_info(device, threads)
    try:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # loading bars would fill the benchmark's log
    except ImportError:
        pass
    audio, audio_source = speech_audio(max(settings.clip_seconds, settings.context_seconds + 1.0 + max(
        settings.chunk_seconds) * (settings.chunks_timed + 1)))
    clip = audio[: int(settings.clip_seconds * SAMPLE_RATE)]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="dimgestor-bench-hubert-") as tmp:
        folder = make_hubert(Path(tmp) / "hubert", settings.hubert)
        onnx_path, export_error = None, None
        try:
            from ..features.onnx_encoder import export_hubert_onnx

            onnx_path = export_hubert_onnx(folder, Path(tmp) / "hubert.onnx")
        except Exception as error:  # noqa: BLE001 - reported in the JSON
            export_error = str(error)
        encoders, missing = _encoders(folder, onnx_path, settings)
        if export_error:
            missing["hubert_onnxruntime"] = f"export failed: {export_error}"
        from transformers import HubertConfig

        hubert_config = HubertConfig() if settings.hubert == "base" else HubertConfig(**TINY_HUBERT)
        hubert_parameters = None
        if "hubert_pytorch" in encoders:
            hubert_parameters = sum(p.numel() for p in encoders["hubert_pytorch"]._module.parameters())
        # offline: one encode of the clip
        offline = time_interleaved({name: (lambda e=e: e.encode(clip)) for name, e in encoders.items()},
                                   settings.warmup, settings.repeats, "cpu")
        for name, seconds in offline.items():
            results[name] = {"offline_ms_per_audio_second": median_ms(seconds) / settings.clip_seconds,
                             "streaming": {}}
        # streaming: chunk by chunk after the context is full
        for chunk_seconds in settings.chunk_seconds:
            chunk = int(chunk_seconds * SAMPLE_RATE)
            start = int((settings.context_seconds + 1.0) * SAMPLE_RATE)
            states = {}
            for name, encoder in encoders.items():
                state = encoder.init_state()
                _, state = encoder.encode_stream(audio[:start], state)  # fill the context (untimed)
                states[name] = state
            position = {"at": start}

            def push(name, encoder):
                def call():
                    piece = audio[position["at"] : position["at"] + chunk]
                    _, states[name] = encoder.encode_stream(piece, states[name])
                return call

            times: dict[str, list[float]] = {name: [] for name in encoders}
            for i in range(settings.chunks_timed + 1):  # the first chunk is a warm-up
                measured = time_interleaved({name: push(name, e) for name, e in encoders.items()}, 0, 1, "cpu")
                if i:
                    for name in encoders:
                        times[name] += measured[name]
                position["at"] += chunk
            for name in encoders:
                ms = median_ms(times[name])
                results[name]["streaming"][f"{chunk_seconds:g}"] = {"ms_per_chunk": ms,
                                                                    "ms_per_audio_second": ms / chunk_seconds}
        providers = getattr(encoders.get("hubert_onnxruntime"), "providers", None)
    model = _model_per_audio_second(settings)
    share_chunk = f"{min(settings.chunk_seconds):g}"
    for name, figures in results.items():
        encoder_ms = figures["streaming"][share_chunk]["ms_per_audio_second"]
        figures["share_of_streaming_compute"] = encoder_ms / (encoder_ms + model["ms_per_audio_second"])
        figures["realtime_factor_streaming"] = encoder_ms / 1000
        print(f"{name:>20}: offline {figures['offline_ms_per_audio_second']:8.1f} ms per s of audio; streaming "
              + ", ".join(f"{k} s chunks {v['ms_per_audio_second']:8.1f}" for k, v in figures["streaming"].items())
              + f" ms per s; share of streaming compute {100 * figures['share_of_streaming_compute']:.0f} %",
              flush=True)
    for name, why in missing.items():
        print(f"{name:>20}: not measured ({why})", flush=True)
    print(f"{'model':>20}: {model['ms_per_audio_second']:.1f} ms per s of audio ({model['what']})", flush=True)
    report = {
        **report_head("speech", SCHEMA, machine, settings, __doc__),
        "audio": audio_source,
        "hubert": {"size": settings.hubert, "parameters": hubert_parameters,
                   "hidden_size": hubert_config.hidden_size, "layers": hubert_config.num_hidden_layers,
                   "onnxruntime_providers": providers},
        "encoders": results,
        "not_measured": missing,
        "model": model,
    }
    write_report(report, out)
    return report
