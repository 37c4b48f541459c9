"""`dimgestor generate SPEECH.wav -o OUT.bvh [--preview OUT.mp4|.gif|.png]`: offline generation of a whole clip.

Offline generation is the streaming generator run as fast as possible over the clip, so a BVH written here is
exactly what the ROS node would have published for the same audio, seed and settings. One setting differs by
default: offline, the whole clip is known, so each hop looks OFFLINE_LOOKAHEAD frames (1.3 s) ahead instead of
the node's few frames. Gestures start before the words they go with (hands rise about half a second before a
phrase), which a low-latency stream cannot see coming; ``--lookahead 4`` reproduces the node's output exactly.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from .audio.io import load_audio
from .diffusion.gaussian import SAMPLERS
from .errors import UserError
from .features.factory import SpeechEncoder, make_speech_encoder
from .model.gesture_model import DiMGestor
from .motion.bvh import BvhMotion, write_bvh
from .motion.preview import PREVIEW_SUFFIXES, render_preview
from .motion.skeleton import HUMANOID
from .paths import default_weights_dir
from .streaming.generator import StreamingConfig, StreamingGestureGenerator

CHUNK_SECONDS = 0.5
MAX_MINUTES = 30.0  # default cap on a clip: offline generation holds the whole clip and its motion in memory
OFFLINE_LOOKAHEAD = 40  # frames: window 60 = 5 frames of context + a 15-frame hop + 40 frames ahead


def generate_poses(
    audio: np.ndarray, model: DiMGestor, config: StreamingConfig, encoder: SpeechEncoder | None = None
) -> np.ndarray:
    """Poses (F, 63) covering the whole clip, F = ceil(seconds x fps); ``encoder`` defaults to the model's."""
    encoder = encoder or make_speech_encoder(model.config.speech_encoder)
    generator = StreamingGestureGenerator(model, encoder, config)
    chunk = int(CHUNK_SECONDS * generator.encoder.sample_rate)
    hops = []
    for start in range(0, len(audio), chunk):
        hops += generator.push(audio[start : start + chunk])
    hops += generator.flush()
    return np.concatenate([hop.poses for hop in hops]) if hops else np.zeros((0, model.config.pose_dim), np.float32)


def add_generate_parser(commands) -> None:
    parser = commands.add_parser("generate", help="generate gestures for a speech file (BVH)",
                                 description="Generate gesture motion for a whole speech clip and write it as BVH "
                                 "(30 fps, centimetres, the dimgestor humanoid).")
    parser.add_argument("speech", type=Path, help="speech file (WAV, FLAC, ...; any rate, any channels)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="BVH file to write")
    parser.add_argument("--weights", type=Path, help="weights folder (default: the shipped weights)")
    parser.add_argument("--preview", type=Path, help="also render a stick-figure preview with joint speed against "
                        "loudness: .png (still), .gif or .mp4 (animation)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=StreamingConfig.steps, help="sampling steps per window")
    parser.add_argument("--sampler", choices=SAMPLERS, default=StreamingConfig.sampler)
    parser.add_argument("--lookahead", type=int, default=OFFLINE_LOOKAHEAD,
                        help=f"frames each hop sees ahead (default {OFFLINE_LOOKAHEAD}; the streaming node uses "
                        f"{StreamingConfig.lookahead_frames})")
    parser.add_argument("--guidance", type=float, default=StreamingConfig.guidance,
                        help="classifier-free guidance scale (1: off)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-minutes", type=float, default=MAX_MINUTES,
                        help=f"refuse speech longer than this (default {MAX_MINUTES:g}): offline generation holds the "
                        "whole clip in memory and runs at about 0.2 x real time on a 2-core CPU; longer recordings "
                        "stream through the node, or split them")
    parser.set_defaults(handler=run_generate)


def _check_duration(path: Path, max_minutes: float) -> None:
    """Refuse a recording longer than ``max_minutes`` before decoding it (a multi-hour file would take gigabytes
    at its own rate and hours to generate); the header's length is enough. Unreadable files are left to
    load_audio, which names the problem."""
    import soundfile

    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError, OSError):
        return
    minutes = info.frames / max(1, info.samplerate) / 60.0
    if minutes > max_minutes:
        raise UserError(f"{path} holds {minutes:.1f} min of audio, more than --max-minutes {max_minutes:g}; "
                        f"split it (e.g. 'sox {path.name} part.wav trim 0 10:00 : newfile : restart'), stream it "
                        f"through the node (audio_source:=file), or pass --max-minutes {int(minutes) + 1}")


def run_generate(args: argparse.Namespace) -> int:
    if args.output.suffix.lower() != ".bvh":
        raise UserError(f"output {args.output} must end in .bvh")
    if args.steps < 1:
        raise UserError(f"--steps must be >= 1, got {args.steps}")
    if args.preview is not None and args.preview.suffix.lower() not in PREVIEW_SUFFIXES:
        raise UserError(f"--preview {args.preview} must end in one of {', '.join(PREVIEW_SUFFIXES)}")
    if not args.max_minutes > 0:
        raise UserError(f"--max-minutes must be positive, got {args.max_minutes:g}")
    if args.speech.is_file():
        _check_duration(args.speech, args.max_minutes)
    torch.set_num_threads(args.threads)
    model = DiMGestor.load(args.weights or default_weights_dir())
    encoder = make_speech_encoder(model.config.speech_encoder)
    audio = load_audio(args.speech, encoder.sample_rate)
    try:
        config = StreamingConfig(steps=args.steps, sampler=args.sampler, seed=args.seed,
                                 lookahead_frames=args.lookahead, guidance=args.guidance)
    except ValueError as error:
        raise UserError(str(error)) from None
    poses = generate_poses(audio, model, config, encoder)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_bvh(BvhMotion.from_poses(HUMANOID, poses, 1.0 / model.config.motion_fps), args.output)
    print(f"wrote {args.output}: {len(poses)} frames at {model.config.motion_fps} fps ({len(poses) / model.config.motion_fps:.1f} s)")
    if args.preview is not None:
        render_preview(poses, model.config.motion_fps, args.preview, audio, encoder.sample_rate,
                       title=f"{args.speech.name} ({args.weights or 'shipped weights'})")
        print(f"wrote {args.preview}")
    return 0
