"""`dimgestor generate SPEECH.wav -o OUT.bvh [--preview OUT.mp4|.gif|.png]`: offline generation of a whole clip.

By default the whole clip is sampled at once (``dimgestor_ros.offline``): offline every frame can see the speech
on both sides and there are no seams. ``--windowed`` runs the streaming generator over the clip instead, hop by
hop, so the BVH is exactly what the ROS node would publish for the same audio, seed and settings; each hop then
looks OFFLINE_LOOKAHEAD frames (1.3 s) ahead by default, and ``--windowed --lookahead 4`` reproduces the node's
output exactly. Windowed motion has a seam every hop, where the motion's beats gather (see offline.py).
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
from .offline import OfflineConfig, sample_clip
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
    parser.add_argument("--temperature", type=float, default=OfflineConfig.temperature,
                        help="scale of the starting noise of whole-clip sampling (default "
                        f"{OfflineConfig.temperature:g}; lower follows the speech more closely and varies less, 0 "
                        "gives the same motion for the same speech)")
    parser.add_argument("--windowed", action="store_true",
                        help="generate hop by hop with the streaming generator, as the ROS node does")
    parser.add_argument("--lookahead", type=int,
                        help=f"with --windowed: frames each hop sees ahead (default {OFFLINE_LOOKAHEAD}; the "
                        f"streaming node uses {StreamingConfig.lookahead_frames})")
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
    if args.lookahead is not None and not args.windowed:
        raise UserError("--lookahead applies to --windowed generation; whole-clip sampling sees the whole clip")
    if not args.max_minutes > 0:
        raise UserError(f"--max-minutes must be positive, got {args.max_minutes:g}")
    if args.speech.is_file():
        _check_duration(args.speech, args.max_minutes)
    torch.set_num_threads(args.threads)
    model = DiMGestor.load(args.weights or default_weights_dir())
    encoder = make_speech_encoder(model.config.speech_encoder)
    audio = load_audio(args.speech, encoder.sample_rate)
    try:
        if args.windowed:
            lookahead = OFFLINE_LOOKAHEAD if args.lookahead is None else args.lookahead
            config = StreamingConfig(steps=args.steps, sampler=args.sampler, seed=args.seed,
                                     lookahead_frames=lookahead, guidance=args.guidance)
        else:
            offline = OfflineConfig(steps=args.steps, sampler=args.sampler, seed=args.seed, guidance=args.guidance,
                                    temperature=args.temperature)
    except ValueError as error:
        raise UserError(str(error)) from None
    if args.windowed:
        poses = generate_poses(audio, model, config, encoder)
    else:
        poses = sample_clip(audio, model, offline, encoder)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_bvh(BvhMotion.from_poses(HUMANOID, poses, 1.0 / model.config.motion_fps), args.output)
    print(f"wrote {args.output}: {len(poses)} frames at {model.config.motion_fps} fps ({len(poses) / model.config.motion_fps:.1f} s)")
    if args.preview is not None:
        render_preview(poses, model.config.motion_fps, args.preview, audio, encoder.sample_rate,
                       title=f"{args.speech.name} ({args.weights or 'shipped weights'})")
        print(f"wrote {args.preview}")
    return 0
