"""Avatar outputs of the gesture stream: a REP-155 human joint state, a stick figure, and BVH recording.

Plain Python (no rclpy); the retargeting node turns these into messages.

**REP-155 human joint state.** REP 155 (ROS4HRI) publishes a tracked body's joints as ``sensor_msgs/JointState``
on ``/humans/bodies/<body_id>/joint_states``, for the kinematic model of the ``human_description`` package (its
``urdf/human-tpl.xacro``: joint names end in ``_<body_id>``; ``hri_fullbody`` publishes the same 20 joints). The
gesture skeleton has all of them, so :func:`human_joint_positions` computes each from the source pose, exactly for
the model's joint axes (REP-103 axes, x forward, y left, z up; arms and legs hang down along -z at zero):

| joint | axis in its parent | computed from the source skeleton |
|---|---|---|
| ``waist`` | y (pitch) | forward lean of the chest (Spine2) relative to the hips: the chest's up axis in the hips' x-z plane |
| ``r_head``, ``y_head``, ``p_head`` | x, z, -y | Head relative to the model's torso (hips + waist), intrinsic X-Z-Y angles |
| ``l_y_shoulder``, ``l_p_shoulder`` | -z, x | direction of the upper arm (LeftArm -> LeftForeArm) in the torso |
| ``l_r_shoulder``, ``l_elbow`` | z, -y | upper-arm twist that puts the forearm (LeftForeArm -> LeftHand) in the elbow's plane; elbow bend |
| ``r_*_shoulder``, ``r_elbow`` | z, -x, -z, -y | the same for the right arm (the model mirrors the axes) |
| ``l_y_hip``, ``l_p_hip``, ``l_r_hip``, ``l_knee`` | -z, x, -y, -y | thigh direction and the knee's plane in the hips (LeftUpLeg, LeftLeg, LeftFoot); knee bend (<= 0) |
| ``r_y_hip``, ``r_p_hip``, ``r_r_hip``, ``r_knee`` | -z, -x, -y, -y | the same for the right leg |

Limb angles match directions (not lengths), so the model's proportions do not matter; the model's own (rough)
joint limits are not applied. The chest's yaw and roll relative to the hips have no joint in the model.

**Stick figure.** :func:`stick_figures` gives joint positions in REP-103 axes (metres, the source's root
translation included) and the bone segments between them, with end points for the head, hands and feet.

**BVH recording.** :class:`BvhRecorder` writes the incoming frames, as they arrive, to ``<path>.part`` (the motion
lines) and on :meth:`~BvhRecorder.close` writes ``<path>``: the gesture skeleton's hierarchy (as ``dimgestor
generate`` writes it, plus End Sites for the head, hands and feet), ``Frames`` = every frame received, the frame
time of the stream. Rest pose: all rotations zero, a T-pose (arms straight out sideways), Y up, the character
facing +Z, left = +X; lengths in centimetres; rotations in degrees, ZXY channel order per joint; the root's
position channels are the root translation. Non-finite input values are recorded as the last finite value of that
channel (the neutral pose's before any); angles beyond +-180 degrees are wrapped (the same rotation) and root
positions are clamped to +-1 km, so the file always reads back.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ..motion.bvh import BvhMotion, bvh_hierarchy, format_bvh_rows
from ..motion.kinematics import forward_kinematics
from ..motion.skeleton import HUMANOID, Skeleton, neutral_pose
from .sources import SKELETON_TO_ROBOT

HUMAN_JOINTS = (
    "waist", "r_head", "y_head", "p_head",
    "l_y_shoulder", "l_p_shoulder", "l_r_shoulder", "l_elbow",
    "r_y_shoulder", "r_p_shoulder", "r_r_shoulder", "r_elbow",
    "l_y_hip", "l_p_hip", "l_r_hip", "l_knee",
    "r_y_hip", "r_p_hip", "r_r_hip", "r_knee",
)

# End points of the leaf bones in their own rest frame (skeleton axes, metres): top of the head, fingertips, toes.
END_SITES = {
    "Head": (0.0, 0.18, 0.0),
    "LeftHand": (0.18, 0.0, 0.0),
    "RightHand": (-0.18, 0.0, 0.0),
    "LeftFoot": (0.0, -0.06, 0.15),
    "RightFoot": (0.0, -0.06, 0.15),
}

MAX_ROOT_TRANSLATION = 1000.0  # metres


class PoseSanitizer:
    """Finite, bounded copies of source poses for avatar outputs: a non-finite value becomes the last finite value
    of its DoF (the neutral pose's before any), angles beyond pi are wrapped (same rotation), the root translation
    is clamped to +-1 km."""

    def __init__(self, skeleton: Skeleton = HUMANOID) -> None:
        self.last = neutral_pose(skeleton).astype(np.float64) if skeleton is HUMANOID else np.zeros(skeleton.num_dofs)

    def __call__(self, poses: np.ndarray) -> np.ndarray:
        poses = np.array(poses, dtype=np.float64, copy=True).reshape(-1, len(self.last))
        for row in poses:
            bad = ~np.isfinite(row)
            row[bad] = self.last[bad]
            angles = row[3:]
            wrap = np.abs(angles) > np.pi
            angles[wrap] = np.remainder(angles[wrap] + np.pi, 2.0 * np.pi) - np.pi
            np.clip(row[:3], -MAX_ROOT_TRANSLATION, MAX_ROOT_TRANSLATION, out=row[:3])
            self.last = row.copy()
        return poses


# --- REP-155 human joint state --------------------------------------------------------------------------------------

def _rot(axis: str, angle: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotations by ``angle`` (N,) about the x, y or z axis."""
    c, s = np.cos(angle), np.sin(angle)
    one, zero = np.ones_like(angle), np.zeros_like(angle)
    rows = {
        "x": [[one, zero, zero], [zero, c, -s], [zero, s, c]],
        "y": [[c, zero, s], [zero, one, zero], [-s, zero, c]],
        "z": [[c, -s, zero], [s, c, zero], [zero, zero, one]],
    }[axis]
    return np.moveaxis(np.array(rows, dtype=np.float64), (0, 1), (-2, -1))


def _unit(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(norm > 1e-12, norm, 1.0)


def _in_frame(frame: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Vectors (N, 3) in world axes -> in the axes of ``frame`` (N, 3, 3): frame^T v."""
    return np.einsum("nji,nj->ni", frame, vectors)


def _arm(torso: np.ndarray, upper: np.ndarray, fore: np.ndarray, left: bool) -> np.ndarray:
    """(N, 4) y_shoulder, p_shoulder, r_shoulder, elbow of one arm from world directions (robot axes)."""
    u, f = _unit(_in_frame(torso, upper)), _unit(_in_frame(torso, fore))
    p = np.arccos(np.clip(-u[:, 2], -1.0, 1.0))
    # Left: Rz(-y) Rx(p) Rz(r) Ry(-e); right (mirrored axes): Rz(y) Rx(-p) Rz(-r) Ry(-e). Arm along -z at zero.
    y = np.arctan2(u[:, 0], u[:, 1]) if left else np.arctan2(u[:, 0], -u[:, 1])
    shoulder = _rot("z", -y) @ _rot("x", p) if left else _rot("z", y) @ _rot("x", -p)
    g = _in_frame(shoulder, f)  # forearm before the arm's twist: (sin e cos r, +-sin e sin r, -cos e)
    e = np.arccos(np.clip(-g[:, 2], -1.0, 1.0))
    r = np.arctan2(g[:, 1] if left else -g[:, 1], g[:, 0])
    r = np.where(np.sin(e) > 1e-6, r, 0.0)  # a straight arm has no elbow plane: no twist
    return np.stack([y, p, r, e], axis=1)


def _leg(body: np.ndarray, thigh: np.ndarray, shin: np.ndarray, left: bool) -> np.ndarray:
    """(N, 4) y_hip, p_hip, r_hip, knee of one leg: Rz(-y) Rx(+-p) Ry(-r), knee Ry(-k) with k <= 0."""
    t, s = _unit(_in_frame(body, thigh)), _unit(_in_frame(body, shin))
    z = -t  # the thigh hangs along the frame's -z
    bend = s - np.sum(s * t, axis=1, keepdims=True) * t
    straight = np.linalg.norm(bend, axis=1) < 1e-6
    forward = np.array([1.0, 0.0, 0.0]) - z[:, 0:1] * z  # body forward, made perpendicular to the thigh
    forward[np.linalg.norm(forward, axis=1) < 1e-6] = [0.0, 1.0, 0.0]
    x = np.where(straight[:, None], _unit(forward), -_unit(bend))  # the shin bends back (-x) from the thigh
    frame = np.stack([x, np.cross(z, x), z], axis=2)  # columns x, y, z
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Gimbal lock detected": still a valid decomposition
        a, b, c = Rotation.from_matrix(frame).as_euler("ZXY").T  # intrinsic: Rz(a) Rx(b) Ry(c)
    k = -np.arccos(np.clip(np.sum(t * s, axis=1), -1.0, 1.0))
    return np.stack([-a, b if left else -b, -c, k], axis=1)


def human_joint_positions(poses: np.ndarray, skeleton: Skeleton = HUMANOID) -> np.ndarray:
    """(N, 20) REP-155 (human_description) joint values in :data:`HUMAN_JOINTS` order from source poses (N, D).

    Poses must be finite (see :class:`PoseSanitizer`).
    """
    poses = np.asarray(poses, dtype=np.float64).reshape(-1, skeleton.num_dofs)
    positions, quats = forward_kinematics(skeleton, poses, return_rotations=True)
    n, b = quats.shape[:2]
    s = SKELETON_TO_ROBOT
    world = s @ Rotation.from_quat(quats.reshape(-1, 4)).as_matrix().reshape(n, b, 3, 3) @ s.T  # robot axes
    p = positions @ s.T  # (N, B, 3) robot axes
    index = {name: i for i, name in enumerate(skeleton.bone_names)}
    body = world[:, index["Hips"]]
    chest_up = _in_frame(body, world[:, index["Spine2"]][:, :, 2])
    waist = np.arctan2(chest_up[:, 0], chest_up[:, 2])
    torso = body @ _rot("y", waist)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Gimbal lock detected": still a valid decomposition
        a, bb, c = Rotation.from_matrix(np.einsum("nji,njk->nik", torso, world[:, index["Head"]])).as_euler("XZY").T
    head = np.stack([a, bb, -c], axis=1)  # Rx(r) Rz(y) Ry(-p)

    def direction(start: str, end: str) -> np.ndarray:
        return p[:, index[end]] - p[:, index[start]]

    columns = [waist[:, None], head]
    for side, left in (("Left", True), ("Right", False)):
        columns.append(_arm(torso, direction(f"{side}Arm", f"{side}ForeArm"),
                            direction(f"{side}ForeArm", f"{side}Hand"), left))
    for side, left in (("Left", True), ("Right", False)):
        columns.append(_leg(body, direction(f"{side}UpLeg", f"{side}Leg"),
                            direction(f"{side}Leg", f"{side}Foot"), left))
    return np.concatenate(columns, axis=1)


# --- stick figure ---------------------------------------------------------------------------------------------------

def stick_figures(poses: np.ndarray, skeleton: Skeleton = HUMANOID) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Points (N, B + E, 3) in REP-103 axes (metres: the bone origins, then the END_SITES tips) of poses (N, D),
    and the bone segments (i, j) between points."""
    poses = np.asarray(poses, dtype=np.float64).reshape(-1, skeleton.num_dofs)
    positions, quats = forward_kinematics(skeleton, poses, return_rotations=True)
    points = [positions[:, i] for i in range(skeleton.num_bones)]
    segments = [(bone.parent, i) for i, bone in enumerate(skeleton.bones) if bone.parent >= 0]
    for name, offset in END_SITES.items():
        if name in skeleton.bone_names:
            i = skeleton.bone_names.index(name)
            points.append(positions[:, i] + Rotation.from_quat(quats[:, i]).apply(offset))
            segments.append((i, len(points) - 1))
    return np.stack(points, axis=1) @ SKELETON_TO_ROBOT.T, segments


# --- BVH recording --------------------------------------------------------------------------------------------------

def recording_skeleton(skeleton: Skeleton = HUMANOID) -> Skeleton:
    """The gesture skeleton with End Sites on its leaf bones (tips for Blender's bones; ignored by the pose layout)."""
    bones = tuple(dataclasses.replace(bone, end_site=END_SITES.get(bone.name, bone.end_site))
                  for bone in skeleton.bones)
    return Skeleton(skeleton.name, bones)


class BvhRecorder:
    """Appends frames to ``<path>.part`` as they come; :meth:`close` writes the BVH file ``path`` from it."""

    def __init__(self, path: str | Path, frame_rate: float, skeleton: Skeleton = HUMANOID,
                 unit_scale: float = 0.01) -> None:
        self.path = Path(path).expanduser().resolve()
        self.part = self.path.with_name(self.path.name + ".part")
        self.skeleton = recording_skeleton(skeleton)
        self.frame_time = 1.0 / float(frame_rate)
        self.unit_scale = unit_scale
        self.frames = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._header, self._columns = bvh_hierarchy(
            BvhMotion.from_poses(self.skeleton, np.zeros((0, skeleton.num_dofs)), self.frame_time, unit_scale).skeleton)
        self._handle = self.part.open("w", encoding="utf-8")

    def add(self, poses: np.ndarray) -> None:
        """Frames (N, D) of finite pose vectors (radians, metres), e.g. from :class:`PoseSanitizer`."""
        if self._handle is None:
            raise ValueError(f"recording {self.path} is closed")
        values = BvhMotion.from_poses(self.skeleton, poses, self.frame_time, self.unit_scale).values
        lines = format_bvh_rows(values[:, self._columns])
        if lines:
            self._handle.write("\n".join(lines) + "\n")
            self._handle.flush()
        self.frames += len(lines)

    def close(self) -> Path | None:
        """Write the BVH file (header + every frame); None (and no file) if no frame came. Idempotent."""
        if self._handle is None:
            return self.path if self.frames else None
        self._handle.close()
        self._handle = None
        if not self.frames:
            self.part.unlink(missing_ok=True)
            return None
        temporary = self.path.with_name(self.path.name + ".tmp")
        header = [*self._header, "MOTION", f"Frames: {self.frames}", f"Frame Time: {self.frame_time!r}"]
        with temporary.open("w", encoding="utf-8") as out, self.part.open("r", encoding="utf-8") as data:
            out.write("\n".join(header) + "\n")
            while chunk := data.read(1 << 20):
                out.write(chunk)
        os.replace(temporary, self.path)
        self.part.unlink(missing_ok=True)
        return self.path


__all__ = ["BvhRecorder", "END_SITES", "HUMAN_JOINTS", "PoseSanitizer", "human_joint_positions", "recording_skeleton",
           "stick_figures"]
