"""Scores a weights folder on held-out clips against two baselines (mean pose, a random real clip).

    python scripts/evaluate_weights.py --weights DIR --held-out DIR --train DIR --out REPORT.json

Writes the generated and baseline BVH folders next to REPORT.json and runs `dimgestor eval` on all three.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from dimgestor_ros.audio.io import load_audio
from dimgestor_ros.generate import generate_poses
from dimgestor_ros.model.gesture_model import DiMGestor
from dimgestor_ros.motion.bvh import BvhMotion, read_bvh, write_bvh
from dimgestor_ros.motion.skeleton import HUMANOID
from dimgestor_ros.streaming.generator import StreamingConfig


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--held-out", type=Path, required=True, help="reference clips (*.wav + *.bvh)")
    parser.add_argument("--train", type=Path, required=True, help="training clips, for the random-clip baseline")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = DiMGestor.load(args.weights)
    root = args.out.parent
    folders = {name: root / name for name in ("generated", "mean_pose", "random_clip")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    train_motion = [read_bvh(p).to_poses(0.01) for p in sorted(args.train.glob("*.bvh"))]
    mean_pose = np.concatenate(train_motion).mean(axis=0)
    frame_time = 1.0 / model.config.motion_fps
    for wav in sorted(args.held_out.glob("*.wav")):
        frames = read_bvh(wav.with_suffix(".bvh")).num_frames
        poses = generate_poses(load_audio(wav, 16000), model, StreamingConfig(seed=args.seed))[:frames]
        write_bvh(BvhMotion.from_poses(HUMANOID, poses, frame_time), folders["generated"] / f"{wav.stem}.bvh")
        write_bvh(BvhMotion.from_poses(HUMANOID, np.repeat(mean_pose[None], frames, 0), frame_time),
                  folders["mean_pose"] / f"{wav.stem}.bvh")
        clip = train_motion[rng.integers(len(train_motion))]
        start = rng.integers(max(1, len(clip) - frames + 1))
        random_clip = np.resize(clip[start:], (frames, clip.shape[1])) if len(clip) - start < frames else clip[start : start + frames]
        write_bvh(BvhMotion.from_poses(HUMANOID, random_clip, frame_time), folders["random_clip"] / f"{wav.stem}.bvh")
        print(f"{wav.stem}: {frames} frames", flush=True)
    command = [str(Path(sys.executable).parent / "dimgestor"), "eval", "--reference", str(args.held_out), "--generated",
               *(f"{name}={folder}" for name, folder in folders.items()), "--out", str(args.out), "--seam-every", "15"]
    return subprocess.run(command).returncode


if __name__ == "__main__":
    raise SystemExit(main())
