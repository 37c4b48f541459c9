"""The source skeleton the model generates motion for, and conversions of its degrees of freedom.

A pose is a flat vector of degrees of freedom (DoF): the root translation in metres, then per bone three Euler
angles in radians in that bone's BVH channel order (intrinsic rotations, as BVH applies them). These DoF are the
joint names of ``/gesture_joints``; avatar engines get per-bone quaternions from :func:`euler_to_quaternions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.spatial.transform import Rotation

POSITION_CHANNELS = ("Xposition", "Yposition", "Zposition")
ROTATION_CHANNELS = ("Xrotation", "Yrotation", "Zrotation")


@dataclass(frozen=True)
class Bone:
    name: str
    parent: int  # index into Skeleton.bones, -1 for the root
    offset: tuple[float, float, float]  # rest-pose offset from the parent, metres (file units inside a BvhMotion)
    rotation_order: str = "ZXY"  # BVH channel order of this bone's rotation
    # BVH channels in file order, for skeletons read from BVH files whose channels need not fit the pose layout
    # (translation on non-root joints, fewer than three rotations). None: the pose layout, see Skeleton.bone_channels.
    channels: tuple[str, ...] | None = None
    end_site: tuple[float, float, float] | None = None  # BVH "End Site" offset below this bone, if it has one


@dataclass(frozen=True)
class Skeleton:
    """A bone hierarchy (parents before children) whose root also translates."""

    name: str
    bones: tuple[Bone, ...]

    def __post_init__(self) -> None:
        for index, bone in enumerate(self.bones):
            if not -1 <= bone.parent < index:
                raise ValueError(f"bone {bone.name!r}: parent index {bone.parent} must come before the bone")
            if sorted(bone.rotation_order.upper()) != ["X", "Y", "Z"]:
                raise ValueError(f"bone {bone.name!r}: rotation order {bone.rotation_order!r} is not a permutation of XYZ")
            if bone.channels is not None:
                unknown = [c for c in bone.channels if c not in POSITION_CHANNELS + ROTATION_CHANNELS]
                if unknown or len(set(bone.channels)) != len(bone.channels):
                    raise ValueError(f"bone {bone.name!r}: channels {bone.channels!r} must be distinct BVH channel names")

    @cached_property
    def bone_channels(self) -> list[tuple[str, ...]]:
        """Each bone's BVH channels in order; without explicit channels, the layout of the pose vector.

        The default (root: X/Y/Z position then its rotation order; other bones: their rotation order) makes the
        channel values of a frame the same vector as the pose, so BVH code and pose code share one layout.
        """
        result = []
        for index, bone in enumerate(self.bones):
            if bone.channels is not None:
                result.append(bone.channels)
                continue
            rotations = tuple(f"{axis.upper()}rotation" for axis in bone.rotation_order)
            result.append(POSITION_CHANNELS + rotations if index == 0 else rotations)
        return result

    @property
    def num_channels(self) -> int:
        return sum(len(channels) for channels in self.bone_channels)

    @cached_property
    def bone_names(self) -> list[str]:
        return [bone.name for bone in self.bones]

    @cached_property
    def parents(self) -> list[int]:
        return [bone.parent for bone in self.bones]

    @property
    def num_bones(self) -> int:
        return len(self.bones)

    @property
    def num_dofs(self) -> int:
        return 3 + 3 * len(self.bones)

    @cached_property
    def dof_names(self) -> list[str]:
        """Names of the pose vector's entries: ``<root>_tx/_ty/_tz``, then ``<bone>_r<axis>`` in channel order."""
        root = self.bones[0].name
        names = [f"{root}_tx", f"{root}_ty", f"{root}_tz"]
        for bone in self.bones:
            names += [f"{bone.name}_r{axis.lower()}" for axis in bone.rotation_order]
        return names

    def rest_offsets(self) -> np.ndarray:
        """(B, 3) rest-pose offsets in metres."""
        return np.asarray([bone.offset for bone in self.bones], dtype=np.float32)


def euler_to_quaternions(skeleton: Skeleton, poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split poses (N, D) into root translations (N, 3) and bone-local quaternions (N, B, 4) as (x, y, z, w)."""
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 2 or poses.shape[1] != skeleton.num_dofs:
        raise ValueError(f"poses must be (frames, {skeleton.num_dofs}), got {poses.shape}")
    n = poses.shape[0]
    angles = poses[:, 3:].reshape(n, skeleton.num_bones, 3)  # (N, B, 3) in each bone's channel order
    quats = np.empty((n, skeleton.num_bones, 4), dtype=np.float64)
    for b, bone in enumerate(skeleton.bones):
        # Upper-case axes are intrinsic rotations, which is how BVH channels compose.
        quats[:, b] = Rotation.from_euler(bone.rotation_order.upper(), angles[:, b]).as_quat()
    return poses[:, :3].astype(np.float32), quats.astype(np.float32)


def _mirror(offset: tuple[float, float, float]) -> tuple[float, float, float]:
    return (-offset[0], offset[1], offset[2])


def _build_upper_body_humanoid() -> Skeleton:
    """A 20-bone humanoid (Y up, character faces +Z, left is +X) close to BEAT/ZEGGS-style capture skeletons."""
    spine = [
        ("Hips", -1, (0.0, 0.95, 0.0)),
        ("Spine", 0, (0.0, 0.10, 0.0)),
        ("Spine1", 1, (0.0, 0.14, 0.0)),
        ("Spine2", 2, (0.0, 0.14, 0.0)),
        ("Neck", 3, (0.0, 0.12, 0.0)),
        ("Head", 4, (0.0, 0.10, 0.0)),
    ]
    bones = [Bone(name, parent, offset) for name, parent, offset in spine]
    for side, sign in (("Left", 1.0), ("Right", -1.0)):
        arm = [
            (f"{side}Shoulder", 3, (0.04, 0.09, 0.0)),
            (f"{side}Arm", None, (0.14, 0.0, 0.0)),
            (f"{side}ForeArm", None, (0.27, 0.0, 0.0)),
            (f"{side}Hand", None, (0.24, 0.0, 0.0)),
        ]
        for name, parent, offset in arm:
            parent_index = len(bones) - 1 if parent is None else parent
            bones.append(Bone(name, parent_index, offset if sign > 0 else _mirror(offset)))
    for side, sign in (("Left", 1.0), ("Right", -1.0)):
        leg = [
            (f"{side}UpLeg", 0, (0.09, -0.06, 0.0)),
            (f"{side}Leg", None, (0.0, -0.42, 0.0)),
            (f"{side}Foot", None, (0.0, -0.42, 0.0)),
        ]
        for name, parent, offset in leg:
            parent_index = len(bones) - 1 if parent is None else parent
            bones.append(Bone(name, parent_index, offset if sign > 0 else _mirror(offset)))
    return Skeleton("dimgestor_humanoid", tuple(bones))


HUMANOID = _build_upper_body_humanoid()


def neutral_pose(skeleton: Skeleton = HUMANOID) -> np.ndarray:
    """A relaxed standing pose (arms down by the sides), the model's rest pose and a safe hold pose."""
    pose = np.zeros(skeleton.num_dofs, dtype=np.float32)
    pose[:3] = skeleton.bones[0].offset
    names = skeleton.dof_names
    # Arms hang: rotate the upper arm about Z by about 75 degrees towards the body, elbows slightly bent.
    for name, value in (
        ("LeftArm_rz", -1.3),
        ("RightArm_rz", 1.3),
        ("LeftForeArm_ry", -0.25),
        ("RightForeArm_ry", 0.25),
    ):
        pose[names.index(name)] = value
    return pose
