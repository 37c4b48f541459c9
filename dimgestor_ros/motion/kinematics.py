"""Forward kinematics with BVH semantics, and the motion edits that need it: resampling and mirroring.

Channel values follow ``skeleton.bone_channels`` (for a pose-layout skeleton such as ``HUMANOID`` that is the pose
vector itself). BVH semantics: each joint's rotation channels are intrinsic rotations applied in channel order;
a joint's position channels replace the matching components of its offset (the root's translation replaces its
offset); ``position_child = position_parent + R_parent_global @ local_translation_child``.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from dimgestor_ros.errors import UserError
from dimgestor_ros.motion.bvh import BvhMotion
from dimgestor_ros.motion.skeleton import POSITION_CHANNELS, ROTATION_CHANNELS, Bone, Skeleton

_AXIS = {"X": 0, "Y": 1, "Z": 2}


def forward_kinematics(
    skeleton: Skeleton, values: np.ndarray, *, degrees: bool = False, return_rotations: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """(F, B, 3) joint world positions from (F, C) channel values, in the skeleton's length unit.

    ``degrees``: True for BVH file values, False (radians) for pose vectors. With ``return_rotations`` also
    returns (F, B, 4) global rotations as (x, y, z, w) quaternions.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != skeleton.num_channels:
        raise ValueError(f"values must be (frames, {skeleton.num_channels}), got {values.shape}")
    frames = values.shape[0]
    positions = np.empty((frames, skeleton.num_bones, 3))
    rotations: list[Rotation] = []
    start = 0
    for index, (bone, channels) in enumerate(zip(skeleton.bones, skeleton.bone_channels)):
        block = values[:, start:start + len(channels)]  # (F, channels of this bone)
        start += len(channels)
        translation = np.tile(np.asarray(bone.offset, dtype=np.float64), (frames, 1))  # (F, 3)
        axes, angle_columns = "", []
        for k, channel in enumerate(channels):
            if channel in POSITION_CHANNELS:
                translation[:, _AXIS[channel[0]]] = block[:, k]
            else:
                axes += channel[0]
                angle_columns.append(k)
        if axes:
            # Upper-case axes: intrinsic rotations, composed in channel order as BVH does.
            local = Rotation.from_euler(axes, block[:, angle_columns], degrees=degrees)
        else:
            local = Rotation.identity(frames)
        if bone.parent < 0:
            rotations.append(local)
            positions[:, index] = translation
        else:
            parent = rotations[bone.parent]
            rotations.append(parent * local)
            positions[:, index] = positions[:, bone.parent] + parent.apply(translation)
    if not return_rotations:
        return positions
    quats = np.stack([rotation.as_quat() for rotation in rotations], axis=1)  # (F, B, 4)
    return positions, quats


def resample(motion: BvhMotion, fps: float) -> BvhMotion:
    """The motion at another frame rate over the same duration (e.g. 120 -> 30 fps for training data).

    Rotations of joints with all three rotation channels are slerped (interpolating Euler angles would take
    detours near gimbal lock and at +-180 degree wraps) and written back as Euler angles unwrapped over time;
    position channels and joints with fewer rotation channels are interpolated linearly.
    """
    if not fps > 0:
        raise UserError(f"frame rate must be positive, got {fps}; pass the target fps, e.g. 30")
    old_times = np.arange(motion.num_frames) * motion.frame_time
    count = int(np.floor(old_times[-1] * fps + 1e-6)) + 1
    new_times = np.minimum(np.arange(count) / fps, old_times[-1])
    values = np.empty((count, motion.values.shape[1]))
    start = 0
    for channels in motion.skeleton.bone_channels:
        columns = list(range(start, start + len(channels)))
        start += len(channels)
        rotation_columns = [c for c, name in zip(columns, channels) if name in ROTATION_CHANNELS]
        for column, name in zip(columns, channels):
            if name in POSITION_CHANNELS or len(rotation_columns) != 3:
                values[:, column] = np.interp(new_times, old_times, motion.values[:, column])
        if len(rotation_columns) == 3:
            order = "".join(channels[columns.index(c)][0] for c in rotation_columns)
            if motion.num_frames == 1:
                values[:, rotation_columns] = motion.values[:, rotation_columns]
                continue
            key_rotations = Rotation.from_euler(order, motion.values[:, rotation_columns], degrees=True)
            angles = Slerp(old_times, key_rotations)(new_times).as_euler(order, degrees=True)  # (count, 3)
            values[:, rotation_columns] = np.unwrap(angles, period=360.0, axis=0)
    return BvhMotion(motion.skeleton, 1.0 / fps, values)


def mirror_partners(skeleton: Skeleton) -> list[int]:
    """For each bone, the index of its Left/Right counterpart (itself for centre bones such as the spine)."""
    index = {name: i for i, name in enumerate(skeleton.bone_names)}
    partners = []
    for name in skeleton.bone_names:
        if "Left" in name:
            partner = name.replace("Left", "Right")
        elif "Right" in name:
            partner = name.replace("Right", "Left")
        else:
            partner = name
        if partner not in index:
            raise UserError(f"skeleton {skeleton.name!r}: bone {name!r} has no counterpart {partner!r} to mirror onto; "
                            "mirroring needs Left*/Right* bone pairs")
        partners.append(index[partner])
    return partners


def mirror(motion: BvhMotion, axis: str = "x") -> BvhMotion:
    """The motion reflected through the plane normal to world ``axis``, with Left and Right bones swapped.

    Exact for any skeleton with matching Left*/Right* pairs: each joint's world position becomes the reflection of
    its partner's (a mirrored skeleton is built from the partners' reflected offsets). Reflection M conjugates a
    rotation about ``axis`` to itself and rotations about the other axes to their inverses, so per channel the
    partner's angle is kept or negated.
    """
    axis = axis.upper()
    if axis not in _AXIS:
        raise UserError(f"mirror axis must be x, y or z, got {axis!r}")
    skeleton = motion.skeleton
    partners = mirror_partners(skeleton)
    channels = skeleton.bone_channels
    starts = np.cumsum([0] + [len(c) for c in channels])
    sign = np.ones(3)
    sign[_AXIS[axis]] = -1.0

    def reflect(offset: tuple[float, float, float] | None) -> tuple[float, float, float] | None:
        return None if offset is None else tuple(float(v) for v in np.asarray(offset) * sign)

    bones, columns, factors = [], [], []
    for index, (bone, partner) in enumerate(zip(skeleton.bones, partners)):
        other = skeleton.bones[partner]
        expected_parent = -1 if bone.parent < 0 else partners[bone.parent]
        if channels[partner] != channels[index] or other.parent != expected_parent:
            raise UserError(f"skeleton {skeleton.name!r}: {bone.name!r} and {other.name!r} differ in channels or "
                            "parents, so the motion cannot be mirrored; re-export with a symmetric hierarchy")
        bones.append(Bone(bone.name, bone.parent, reflect(other.offset), bone.rotation_order, bone.channels,
                          reflect(other.end_site)))
        for k, channel in enumerate(channels[index]):
            columns.append(starts[partner] + k)
            on_axis = channel[0] == axis
            factors.append(-1.0 if on_axis == (channel in POSITION_CHANNELS) else 1.0)
    values = motion.values[:, columns] * np.asarray(factors)  # (F, C): partner's channels, signs flipped
    return BvhMotion(Skeleton(skeleton.name, tuple(bones)), motion.frame_time, values)
