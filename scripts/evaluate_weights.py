"""Scores weights folders on held-out clips against two baselines (the mean pose, a random real clip).

    python scripts/evaluate_weights.py --weights mamba2=DIR [transformer=DIR ...] --held-out DIR --train DIR \
        --out REPORT.json [--limit N] [--streaming]

For every held-out clip (``<stem>.wav`` + ``<stem>.bvh``) each model generates motion from the speech exactly as
`dimgestor generate` does (whole-clip sampling, ``dimgestor_ros.offline``, at ``--temperature``; with
``--lookahead N`` instead the windowed streaming generator with that lookahead, the protocol of the model cards
before whole-clip sampling), each clip with its own seed (``clip_seed``): one seed for every clip would start every
clip from the same noise, so the clips' motions would not be independent draws and the pose FGD of one run would
swing with the seed (0.040 to 0.090 for the same weights). The mean-pose baseline holds the training clips' mean
pose; the random-clip baseline plays a random stretch of a random training clip. With ``--streaming`` each model
is also scored as the node publishes it (its default lookahead), and the streaming / offline ratios are printed.
The BVH folders go next to REPORT.json and `dimgestor eval` scores them all in one side-by-side table, with plots
in REPORT.json's folder / plots.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dimgestor_ros.audio.io import load_audio
from dimgestor_ros.generate import generate_poses
from dimgestor_ros.model.gesture_model import DiMGestor
from dimgestor_ros.motion.bvh import BvhMotion, read_bvh, write_bvh
from dimgestor_ros.motion.skeleton import HUMANOID
from dimgestor_ros.offline import OfflineConfig, sample_clip
from dimgestor_ros.streaming.generator import StreamingConfig

FRAME_TIME = 1.0 / 30.0


def clip_seed(seed: int, index: int) -> int:
    """The sampling seed of the index-th held-out clip (sorted by name) for the run's --seed: independent streams
    per clip (numpy's SeedSequence), the same for the offline and the streaming pass so those are paired, and the
    same for a clip whether or not --limit picks a subset."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", nargs="+", required=True, metavar="NAME=DIR", help="weights folders to score")
    parser.add_argument("--held-out", type=Path, required=True, help="reference clips (*.wav + *.bvh)")
    parser.add_argument("--train", type=Path, required=True, help="training clips, for the baselines")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, help="score only every k-th clip so that about this many are used")
    parser.add_argument("--lookahead", type=int, help="score the offline rows with the windowed streaming generator "
                        "and this lookahead (40: the protocol before whole-clip sampling; "
                        f"{StreamingConfig.lookahead_frames}: what the streaming node publishes) instead of "
                        "whole-clip sampling")
    parser.add_argument("--temperature", type=float, default=OfflineConfig.temperature,
                        help=f"whole-clip sampling temperature (default {OfflineConfig.temperature:g}, as "
                        "`dimgestor generate`)")
    parser.add_argument("--streaming", action="store_true",
                        help="also score each model as the streaming node publishes it (lookahead "
                        f"{StreamingConfig.lookahead_frames}), as NAME_streaming, and print the streaming / offline "
                        "ratios of pose FGD and seam jerk")
    parser.add_argument("--seed", type=int, default=0, help="the run's seed; each clip samples with its own seed "
                        "derived from it (see clip_seed)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = args.out.parent
    wavs = sorted(args.held_out.glob("*.wav"))
    seeds = {wav: clip_seed(args.seed, index) for index, wav in enumerate(wavs)}
    if args.limit:
        wavs = wavs[:: max(1, len(wavs) // args.limit)][: args.limit]
    models = {}
    for spec in args.weights:
        name, _, directory = spec.partition("=")
        models[name] = DiMGestor.load(directory)
    # name -> how its motion is made: None for whole-clip sampling, else StreamingConfig settings
    configs: dict[str, dict | None] = {
        name: None if args.lookahead is None else {"lookahead_frames": args.lookahead} for name in models}
    if args.streaming:
        configs.update({f"{name}_streaming": {} for name in models})
    folders = {name: root / name for name in (*configs, "mean_pose", "random_clip")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.bvh"):
            stale.unlink()
    rng = np.random.default_rng(args.seed)
    train_motion = [read_bvh(p).to_poses(0.01) for p in sorted(args.train.glob("*.bvh"))]
    mean_pose = np.concatenate(train_motion).mean(axis=0)
    seconds = {name: 0.0 for name in configs}
    for wav in wavs:
        frames = read_bvh(wav.with_suffix(".bvh")).num_frames
        audio = load_audio(wav, 16000)
        for name, settings in configs.items():
            model = models[name.removesuffix("_streaming")]
            began = time.perf_counter()
            if settings is None:
                offline = OfflineConfig(temperature=args.temperature, seed=seeds[wav])
                poses = sample_clip(audio, model, offline)[:frames]
            else:
                poses = generate_poses(audio, model, StreamingConfig(**settings, seed=seeds[wav]))[:frames]
            seconds[name] += time.perf_counter() - began
            write_bvh(BvhMotion.from_poses(HUMANOID, poses, FRAME_TIME), folders[name] / f"{wav.stem}.bvh")
        write_bvh(BvhMotion.from_poses(HUMANOID, np.repeat(mean_pose[None], frames, 0), FRAME_TIME),
                  folders["mean_pose"] / f"{wav.stem}.bvh")
        clip = train_motion[rng.integers(len(train_motion))]
        start = rng.integers(max(1, len(clip) - frames + 1))
        stretch = clip[start : start + frames]
        random_clip = np.resize(stretch, (frames, clip.shape[1])) if len(stretch) < frames else stretch
        write_bvh(BvhMotion.from_poses(HUMANOID, random_clip, FRAME_TIME), folders["random_clip"] / f"{wav.stem}.bvh")
    audio_s = sum(read_bvh(w.with_suffix(".bvh")).num_frames for w in wavs) * FRAME_TIME
    for name, spent in seconds.items():
        print(f"{name}: generated {audio_s:.0f} s of motion for {len(wavs)} clips in {spent:.0f} s "
              f"(real-time factor {spent / audio_s:.3f})", flush=True)
    command = [str(Path(sys.executable).parent / "dimgestor"), "eval", "--reference", str(args.held_out),
               "--generated", *(f"{name}={folder}" for name, folder in folders.items()), "--out", str(args.out),
               "--seam-every", str(StreamingConfig.hop_frames), "--plots", str(root / "plots")]
    if args.limit:
        reference = root / "reference"
        reference.mkdir(exist_ok=True)
        for wav in wavs:
            for path in (wav, wav.with_suffix(".bvh")):
                target = reference / path.name
                target.unlink(missing_ok=True)
                target.symlink_to(path.resolve())
        command[command.index("--reference") + 1] = str(reference)
    returncode = subprocess.run(command).returncode
    if returncode == 0 and args.streaming:
        scores = {entry["name"]: entry["metrics"] for entry in json.loads(args.out.read_text())["models"]}
        for name in models:
            offline, streaming = scores[name], scores[f"{name}_streaming"]
            print(f"{name}: streaming / offline pose FGD {streaming['fgd_pose'] / offline['fgd_pose']:.3f}; "
                  f"streaming seam jerk / mean jerk {streaming['seam_continuity']:.3f}")
    return returncode


if __name__ == "__main__":
    raise SystemExit(main())
