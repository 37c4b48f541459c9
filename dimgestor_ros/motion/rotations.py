"""Rotation representations of pose vectors: Euler (the pose layout), quaternion, matrix, 6D and exponential map.

Why several: Euler angles are what BVH stores and what ``/gesture_joints`` publishes, but they wrap at +-pi and
lock at gimbal singularities, so models trained on real motion capture usually learn a continuous representation
instead: the 6D form (first two columns of the rotation matrix, Zhou et al. 2019, continuous everywhere) or the
exponential map (axis * angle, 3 numbers, continuous away from pi). These functions convert the rotation part of
pose vectors both ways with scipy's Rotation, keeping the root translation as the first three values.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.spatial.transform import Rotation

from .skeleton import Skeleton

Representation = Literal["euler", "quat", "matrix", "6d", "expmap"]
WIDTHS: dict[str, int] = {"euler": 3, "quat": 4, "matrix": 9, "6d": 6, "expmap": 3}


def matrix_to_6d(matrix: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 6): the first two columns, column after column."""
    matrix = np.asarray(matrix, dtype=np.float64)
    return np.concatenate([matrix[..., :, 0], matrix[..., :, 1]], axis=-1)


def matrix_from_6d(six: np.ndarray) -> np.ndarray:
    """(..., 6) -> (..., 3, 3) by Gram-Schmidt, so any 6 numbers (e.g. a network's output) give a rotation."""
    six = np.asarray(six, dtype=np.float64)
    a, b = six[..., :3], six[..., 3:]
    x = a / np.clip(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12, None)
    b = b - (x * b).sum(axis=-1, keepdims=True) * x
    y = b / np.clip(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12, None)
    z = np.cross(x, y)
    return np.stack([x, y, z], axis=-1)  # columns x, y, z


def _bone_rotations(skeleton: Skeleton, poses: np.ndarray) -> list[Rotation]:
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 2 or poses.shape[1] != skeleton.num_dofs:
        raise ValueError(f"poses must be (frames, {skeleton.num_dofs}), got {poses.shape}")
    angles = poses[:, 3:].reshape(len(poses), skeleton.num_bones, 3)  # (N, B, 3) in each bone's channel order
    # Upper-case axes are intrinsic rotations, which is how BVH channels compose.
    return [Rotation.from_euler(bone.rotation_order.upper(), angles[:, b]) for b, bone in enumerate(skeleton.bones)]


def poses_to(skeleton: Skeleton, poses: np.ndarray, representation: Representation) -> np.ndarray:
    """Pose vectors (N, 3 + 3B) -> (N, 3 + B * width): root translation, then each bone in ``representation``."""
    if representation not in WIDTHS:
        raise ValueError(f"representation must be one of {sorted(WIDTHS)}, got {representation!r}")
    if representation == "euler":
        return np.asarray(poses, dtype=np.float64).copy()
    parts = []
    for rotation in _bone_rotations(skeleton, poses):
        if representation == "quat":
            parts.append(rotation.as_quat(canonical=True))  # (N, 4) x, y, z, w with w >= 0
        elif representation == "matrix":
            parts.append(rotation.as_matrix().reshape(-1, 9))  # row-major
        elif representation == "6d":
            parts.append(matrix_to_6d(rotation.as_matrix()))
        else:
            parts.append(rotation.as_rotvec())  # axis * angle, radians
    return np.concatenate([np.asarray(poses, dtype=np.float64)[:, :3], *parts], axis=1)


def poses_from(skeleton: Skeleton, features: np.ndarray, representation: Representation) -> np.ndarray:
    """Inverse of :func:`poses_to`: (N, 3 + B * width) -> pose vectors (N, 3 + 3B) with Euler angles in (-pi, pi].

    The Euler angles are the same rotations, not always the same numbers: an angle set past a singularity comes
    back as its equivalent.
    """
    if representation not in WIDTHS:
        raise ValueError(f"representation must be one of {sorted(WIDTHS)}, got {representation!r}")
    features = np.asarray(features, dtype=np.float64)
    width = WIDTHS[representation]
    if features.ndim != 2 or features.shape[1] != 3 + skeleton.num_bones * width:
        raise ValueError(f"{representation} features must be (frames, {3 + skeleton.num_bones * width}), "
                         f"got {features.shape}")
    if representation == "euler":
        return features.copy()
    per_bone = features[:, 3:].reshape(len(features), skeleton.num_bones, width)  # (N, B, width)
    poses = np.empty((len(features), skeleton.num_dofs))
    poses[:, :3] = features[:, :3]
    for b, bone in enumerate(skeleton.bones):
        values = per_bone[:, b]
        if representation == "quat":
            rotation = Rotation.from_quat(values)  # normalised by scipy
        elif representation == "matrix":
            rotation = Rotation.from_matrix(values.reshape(-1, 3, 3))  # nearest rotation if not orthonormal
        elif representation == "6d":
            rotation = Rotation.from_matrix(matrix_from_6d(values))
        else:
            rotation = Rotation.from_rotvec(values)
        poses[:, 3 + 3 * b : 6 + 3 * b] = rotation.as_euler(bone.rotation_order.upper())
    return poses
