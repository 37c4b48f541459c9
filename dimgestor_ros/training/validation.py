"""Gesture metrics at validation steps: sample a fixed set of validation windows and score them.

Why besides the validation loss: the denoising loss says little about what users see (a model can lower it and
still jitter or drift towards the mean pose). A handful of sampled windows scored with the evaluation metrics
(pose and kinetic FGD, jerk; see evaluation/metrics.py) tracks that during training, at a cost of one batched
sampling run per validation.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ..evaluation import metrics
from ..model.gesture_model import DiMGestor
from ..motion.kinematics import forward_kinematics
from ..motion.skeleton import HUMANOID

WINDOWS = 32  # validation windows sampled, evenly spread over the validation set
STEPS = 8  # sampling steps, as the streaming default


@torch.no_grad()
def validation_metrics(model: DiMGestor, dataset: Dataset, windows: int = WINDOWS) -> dict[str, float]:
    """{"val_fgd_pose", "val_fgd_kinetic", "val_jerk", "val_jerk_reference"} on up to ``windows`` windows, with
    fixed sampling noise so that the numbers of successive validations compare."""
    count = len(dataset)  # type: ignore[arg-type]
    picks = np.linspace(0, count - 1, min(windows, count)).round().astype(int)
    items = [dataset[int(i)] for i in picks]
    speech = torch.from_numpy(np.stack([item["speech"] for item in items]))  # (N, S, speech_dim)
    reference = np.stack([item["motion"] for item in items])  # (N, W, D)
    model.eval()
    local, style = model.fuzzy(speech)
    generated = model.denormalize(model.sample(local, style, steps=STEPS, generator=torch.Generator().manual_seed(0)))
    generated = generated.numpy().astype(np.float64)[:, : reference.shape[1]]  # (N, W', D)
    reference = reference[:, : generated.shape[1]]
    fps = float(model.config.motion_fps)
    result = {"val_fgd_pose": metrics.frechet_distance(reference.reshape(-1, reference.shape[2]),
                                                       generated.reshape(-1, generated.shape[2]))}
    if model.config.pose_dim == HUMANOID.num_dofs:
        ref_positions = [forward_kinematics(HUMANOID, clip) for clip in reference]  # each (W, B, 3)
        gen_positions = [forward_kinematics(HUMANOID, clip) for clip in generated]
        window_s = reference.shape[1] / fps
        result["val_fgd_kinetic"] = metrics.kinetic_fgd(
            np.concatenate([metrics.kinetic_features(p, fps, window_s) for p in ref_positions]),
            np.concatenate([metrics.kinetic_features(p, fps, window_s) for p in gen_positions]))
        result["val_jerk"] = float(np.mean([metrics.mean_jerk(p, fps) for p in gen_positions]))
        result["val_jerk_reference"] = float(np.mean([metrics.mean_jerk(p, fps) for p in ref_positions]))
    return result
