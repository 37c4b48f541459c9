"""Writes weights/dimgestor_default: a freshly initialised (UNTRAINED) DiM-Gestor for the pipeline's spine.

Trained weights replace these with `dimgestor train` (issue 5). The normalisation statistics centre the output
on the skeleton's neutral pose so an untrained model holds a calm rest pose instead of a T-pose.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from dimgestor_ros.model.config import ModelConfig
from dimgestor_ros.model.gesture_model import DiMGestor, parameter_count
from dimgestor_ros.motion.skeleton import HUMANOID, neutral_pose


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "weights" / "dimgestor_default")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model = DiMGestor(ModelConfig(pose_dim=HUMANOID.num_dofs))
    std = torch.full((HUMANOID.num_dofs,), 0.15)
    std[:3] = 0.02  # root translation, metres
    model.set_normalization(torch.from_numpy(neutral_pose()), std)
    model.save(args.out)
    print(f"wrote {args.out} ({parameter_count(model):,} parameters)")


if __name__ == "__main__":
    main()
