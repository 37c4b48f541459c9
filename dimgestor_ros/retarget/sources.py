"""What the robot config reads from the source motion: bone rotation components and arm directions.

Both are computed from forward kinematics of the source skeleton, so they are exact rotations and directions
whatever Euler angles carried them (huge angles are just turns; a single bad angle only spoils the joints that
depend on it). The root translation is never used: it is zeroed before FK, so a huge or missing root position
cannot cancel the metre-scale differences that directions come from.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.spatial.transform import Rotation

from ..motion.kinematics import forward_kinematics
from ..motion.skeleton import Skeleton
from .robot import BoneSource, IKChainConfig

# Source skeleton axes (X left, Y up, Z forward) -> robot axes (REP-103: x forward, y left, z up), as rows:
# robot = SKELETON_TO_ROBOT @ skeleton. A proper rotation, so rotations and cross products carry over.
SKELETON_TO_ROBOT = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


class SourceFrames:
    """World positions (N, B, 3) and rotation matrices (N, B, 3, 3) of every bone, and which DoF were finite."""

    def __init__(self, skeleton: Skeleton, poses: np.ndarray) -> None:
        poses = np.asarray(poses, dtype=np.float64)
        if poses.ndim != 2 or poses.shape[1] != skeleton.num_dofs:
            raise ValueError(f"poses must be (frames, {skeleton.num_dofs}), got {poses.shape}")
        self.skeleton = skeleton
        self.finite = np.isfinite(poses)  # (N, D)
        clean = np.where(self.finite, poses, 0.0)
        clean[:, :3] = 0.0  # root translation is not used; zero it so huge values cannot swamp bone offsets
        # Angles beyond a few turns carry no more information; wrapping keeps sin/cos accurate for values like 1e300.
        clean[:, 3:] = np.remainder(clean[:, 3:] + np.pi, 2.0 * np.pi) - np.pi
        positions, quats = forward_kinematics(skeleton, clean, return_rotations=True)
        n, b = quats.shape[:2]
        self.positions = positions  # (N, B, 3) metres
        self.rotations = Rotation.from_quat(quats.reshape(-1, 4)).as_matrix().reshape(n, b, 3, 3)  # (N, B, 3, 3)

    def path(self, ancestor: int, bone: int) -> list[int]:
        """Bones strictly below ``ancestor`` down to ``bone`` (inclusive); their rotations move ``bone``."""
        chain = []
        while bone != ancestor:
            chain.append(bone)
            bone = self.skeleton.bones[bone].parent
            if bone < 0:
                raise ValueError(f"bone {ancestor} is not an ancestor")
        return chain

    def valid(self, bones: list[int]) -> np.ndarray:
        """(N,) whether all rotation DoF of ``bones`` are finite in each frame."""
        columns = [3 + 3 * b + k for b in bones for k in range(3)]
        return self.finite[:, columns].all(axis=1) if columns else np.ones(len(self.finite), dtype=bool)


def bone_component(frames: SourceFrames, source: BoneSource) -> np.ndarray:
    """(N,) joint values from one rotation component; NaN where a DoF it depends on is not finite."""
    names = frames.skeleton.bone_names
    bone, reference = names.index(source.bone), names.index(source.relative_to)
    relative = np.einsum("nji,njk->nik", frames.rotations[:, reference], frames.rotations[:, bone])  # R_ref^T R_bone
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Gimbal lock detected": the angles are still a valid decomposition
        angles = Rotation.from_matrix(relative).as_euler(source.order)  # (N, 3) intrinsic, in (-pi, pi]
    angle = angles[:, source.order.index(source.axis.upper())]
    values = source.sign * source.scale * angle + source.offset
    return np.where(frames.valid(frames.path(reference, bone)), values, np.nan)


def arm_directions(frames: SourceFrames, chain: IKChainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper-arm and forearm unit directions (N, 3) each, in robot axes of the ``chain.frame`` bone, and validity.

    Returns (upper, forearm, valid (N,)). Invalid frames (a non-finite DoF on the way) hold NaN directions.
    """
    names = frames.skeleton.bone_names
    frame = names.index(chain.frame)
    shoulder, elbow, wrist = (names.index(b) for b in chain.bones)
    base = frames.rotations[:, frame]  # (N, 3, 3)
    p = frames.positions

    def direction(a: int, b: int) -> np.ndarray:
        local = np.einsum("nji,nj->ni", base, p[:, b] - p[:, a])  # R_frame^T (p_b - p_a): (N, 3)
        robot = local @ SKELETON_TO_ROBOT.T
        return robot / np.linalg.norm(robot, axis=1, keepdims=True)

    skeleton = frames.skeleton
    needed = sorted(set(frames.path(frame, skeleton.bones[wrist].parent)))
    valid = frames.valid(needed)
    upper, fore = direction(shoulder, elbow), direction(elbow, wrist)
    upper[~valid] = np.nan
    fore[~valid] = np.nan
    return upper, fore, valid
