"""Reading and writing BVH motion capture, and converting it to and from the project's pose vectors.

Written here rather than taken from a library: the BVH parsers on PyPI either pull heavy or exactly pinned
dependencies (matplotlib, raylib, PyGLM) or are unmaintained, and the gesture data loaders need exact round trips,
any channel order, and errors a user can act on (file and line) more than they need extra features.

A :class:`BvhMotion` keeps the file's own layout and units (degrees, file length units) so that writing it back
is lossless; :meth:`BvhMotion.to_poses` and :meth:`BvhMotion.from_poses` convert to the pose vector (radians,
metres) used by the model, when the channels fit that layout.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dimgestor_ros.errors import UserError
from dimgestor_ros.motion.skeleton import POSITION_CHANNELS, ROTATION_CHANNELS, Bone, Skeleton

_CHANNEL_BY_LOWER = {name.lower(): name for name in POSITION_CHANNELS + ROTATION_CHANNELS}
_TOKEN = re.compile(r"[{}]|[^\s{}]+")
# Counts (channels per joint, frames) are ASCII digits: str.isdigit() also accepts '²' and other digits int()
# refuses, and int() refuses more than 4300 digits. 18 digits is more than any file can hold.
_COUNT = re.compile(r"[0-9]{1,18}")
# Joints nested deeper than this are a corrupt hierarchy (hips to a fingertip is a few tens of joints in any
# capture skeleton); the parser and bvh_hierarchy recurse once per level, so without a bound such a file would end
# in a RecursionError instead of an error naming the file.
MAX_JOINT_DEPTH = 256


@dataclass(frozen=True)
class BvhMotion:
    """A BVH file's content: hierarchy (offsets in file units), frame time (seconds) and (F, C) channel values.

    ``values`` columns follow ``skeleton.bone_channels`` bone by bone; rotations are in degrees and positions in
    the file's length unit, exactly as in the file.
    """

    skeleton: Skeleton
    frame_time: float
    values: np.ndarray  # (F, C) float64

    @property
    def num_frames(self) -> int:
        return int(self.values.shape[0])

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    @property
    def channel_names(self) -> list[str]:
        """``<bone>_t<axis>`` for positions and ``<bone>_r<axis>`` for rotations, as the pose's DoF names."""
        names = []
        for bone, channels in zip(self.skeleton.bones, self.skeleton.bone_channels):
            names += [f"{bone.name}_{'t' if c in POSITION_CHANNELS else 'r'}{c[0].lower()}" for c in channels]
        return names

    def fits_pose_layout(self) -> bool:
        """Whether the root has three positions and three rotations and every other bone exactly three rotations."""
        for index, channels in enumerate(self.skeleton.bone_channels):
            rotations = [c for c in channels if c in ROTATION_CHANNELS]
            positions = [c for c in channels if c in POSITION_CHANNELS]
            if len(rotations) != 3 or len(positions) != (3 if index == 0 else 0):
                return False
        return True

    def project_skeleton(self, unit_scale: float) -> Skeleton:
        """The skeleton in metres with the pose layout's channels (``unit_scale`` metres per file unit)."""
        self._require_pose_layout()
        bones = []
        for bone, channels in zip(self.skeleton.bones, self.skeleton.bone_channels):
            order = "".join(c[0] for c in channels if c in ROTATION_CHANNELS)
            end_site = None if bone.end_site is None else _scaled(bone.end_site, unit_scale)
            bones.append(Bone(bone.name, bone.parent, _scaled(bone.offset, unit_scale), order, None, end_site))
        return Skeleton(self.skeleton.name, tuple(bones))

    def to_poses(self, unit_scale: float) -> np.ndarray:
        """(F, 3 + 3B) pose vectors: root translation in metres, then radians in each bone's rotation order.

        ``unit_scale`` converts the file's length unit to metres, e.g. 0.01 for centimetres.
        """
        self._require_pose_layout()
        columns, scales = [], []
        start = 0
        for index, channels in enumerate(self.skeleton.bone_channels):
            if index == 0:
                columns += [start + channels.index(name) for name in POSITION_CHANNELS]
                scales += [unit_scale] * 3
            columns += [start + k for k, c in enumerate(channels) if c in ROTATION_CHANNELS]
            scales += [np.pi / 180.0] * 3
            start += len(channels)
        return (self.values[:, columns] * np.asarray(scales)).astype(np.float32)

    @classmethod
    def from_poses(
        cls, skeleton: Skeleton, poses: np.ndarray, frame_time: float, unit_scale: float = 0.01
    ) -> BvhMotion:
        """A BVH motion (file units = metres / ``unit_scale``, degrees) from pose vectors of a pose-layout skeleton."""
        poses = np.asarray(poses, dtype=np.float64)
        if poses.ndim != 2 or poses.shape[1] != skeleton.num_dofs:
            raise ValueError(f"poses must be (frames, {skeleton.num_dofs}), got {poses.shape}")
        bones = []
        for index, bone in enumerate(skeleton.bones):
            end_site = None if bone.end_site is None else _scaled(bone.end_site, 1.0 / unit_scale)
            rotations = tuple(f"{axis.upper()}rotation" for axis in bone.rotation_order)
            channels = (POSITION_CHANNELS if index == 0 else ()) + rotations
            offset = _scaled(bone.offset, 1.0 / unit_scale)
            bones.append(Bone(bone.name, bone.parent, offset, bone.rotation_order, channels, end_site))
        values = np.degrees(poses)
        values[:, :3] = poses[:, :3] / unit_scale
        return cls(Skeleton(skeleton.name, tuple(bones)), float(frame_time), values)

    def _require_pose_layout(self) -> None:
        if not self.fits_pose_layout():
            raise UserError(
                f"skeleton {self.skeleton.name!r}: its BVH channels do not fit the pose layout (root: 3 positions + "
                "3 rotations, other joints: 3 rotations only); use BvhMotion.values and forward_kinematics directly, "
                "or re-export the BVH with rotation-only channels below the root"
            )


def _scaled(offset: tuple[float, float, float], scale: float) -> tuple[float, float, float]:
    return (offset[0] * scale, offset[1] * scale, offset[2] * scale)


class _Tokens:
    """Hierarchy tokens with their line numbers, so every parse error can point at a line."""

    def __init__(self, path: Path, lines: list[str]) -> None:
        self.path = path
        self.items = [(token, number) for number, line in enumerate(lines, 1) for token in _TOKEN.findall(line)]
        self.position = 0
        self.last_line = len(lines)

    def error(self, message: str, line: int | None = None) -> UserError:
        where = f"{self.path}" if line is None else f"{self.path}, line {line}"
        return UserError(f"{where}: {message}")

    def next(self, what: str) -> tuple[str, int]:
        if self.position >= len(self.items):
            raise self.error(
                f"the HIERARCHY ends early, expected {what}; the file is truncated or not a BVH export", self.last_line)
        self.position += 1
        return self.items[self.position - 1]

    def expect(self, keyword: str) -> int:
        token, line = self.next(keyword)
        if token.upper() != keyword.upper():
            raise self.error(f"expected {keyword!r}, found {token!r}; check the BVH hierarchy syntax", line)
        return line

    def number(self, what: str) -> float:
        token, line = self.next(what)
        try:
            value = float(token)
        except ValueError:
            raise self.error(f"{what} must be a number, found {token!r}; fix or re-export the file", line) from None
        if not math.isfinite(value):  # 'nan', 'inf' and '1e999' parse as floats; an offset must be a distance
            raise self.error(f"{what} must be a finite number, found {token!r}; fix or re-export the file", line)
        return value

    def offset(self) -> tuple[float, float, float]:
        self.expect("OFFSET")
        return (self.number("an OFFSET value"), self.number("an OFFSET value"), self.number("an OFFSET value"))


def read_bvh(path: str | Path) -> BvhMotion:
    """Read a BVH file with any hierarchy and channel order (position channels allowed on any joint)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such BVH file; check the path")
    try:
        text = path.read_text(encoding="utf-8-sig", errors="strict")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file, so not a BVH file; pass a .bvh motion capture export") from None
    lines = text.splitlines()
    motion_line = next((i for i, line in enumerate(lines) if line.strip().upper() == "MOTION"), None)
    first = next((line.strip() for line in lines if line.strip()), "")
    if first.upper() != "HIERARCHY":
        raise UserError(f"{path}: not a BVH file (it does not start with HIERARCHY); pass a .bvh motion capture export")
    if motion_line is None:
        raise UserError(f"{path}: the BVH file has no MOTION section; the file is truncated, re-export or re-download it")
    tokens = _Tokens(path, lines[:motion_line])
    tokens.expect("HIERARCHY")
    bones: list[Bone] = []
    tokens.expect("ROOT")
    _read_joint(tokens, bones, parent=-1, depth=0)
    if tokens.position < len(tokens.items):
        token, line = tokens.items[tokens.position]
        raise tokens.error(
            f"unexpected {token!r} after the root joint (only one ROOT is supported); remove extra roots", line)
    skeleton = Skeleton(path.stem, tuple(bones))
    frame_time, values = _read_motion(path, lines, motion_line, skeleton.num_channels)
    return BvhMotion(skeleton, frame_time, values)



def read_skeleton_bvh(path: str | Path, skeleton: Skeleton, fix: str) -> BvhMotion:
    """A BVH that must be on ``skeleton`` (the same bones, pose-layout channels), for the readers that turn it into
    that skeleton's pose vectors; otherwise a UserError naming the file, what differs and ``fix``."""
    motion = read_bvh(path)
    if not motion.fits_pose_layout():
        raise UserError(f"{path}: its BVH channels do not fit the pose layout (root: 3 positions + 3 rotations, "
                        "others: 3 rotations); re-export with rotation-only channels below the root")
    if motion.skeleton.bone_names != skeleton.bone_names:
        missing = [b for b in skeleton.bone_names if b not in motion.skeleton.bone_names]
        raise UserError(f"{path}: skeleton {motion.skeleton.bone_names[:3]}... ({motion.skeleton.num_bones} joints) "
                        f"is not {skeleton.name!r} ({skeleton.num_bones} joints; missing {missing[:5]}); {fix}")
    return motion


def _read_joint(tokens: _Tokens, bones: list[Bone], parent: int, depth: int) -> None:
    name, name_line = tokens.next("a joint name")
    if depth > MAX_JOINT_DEPTH:
        raise tokens.error(f"joint {name!r} is nested more than {MAX_JOINT_DEPTH} joints deep; the hierarchy is "
                           "corrupt (a missing '}'?), re-export the file", name_line)
    if any(bone.name == name for bone in bones):
        raise tokens.error(f"joint name {name!r} appears twice; give each joint a unique name", name_line)
    tokens.expect("{")
    offset = tokens.offset()
    channels: tuple[str, ...] = ()
    token, token_line = tokens.next("CHANNELS, JOINT, End Site or }")
    if token.upper() == "CHANNELS":
        count_token, count_line = tokens.next("the channel count")
        if not _COUNT.fullmatch(count_token):
            raise tokens.error(f"channel count must be a whole number, found {count_token!r}", count_line)
        names = []
        for _ in range(int(count_token)):
            channel, channel_line = tokens.next("a channel name")
            if channel.lower() not in _CHANNEL_BY_LOWER:
                raise tokens.error(
                    f"unknown channel name {channel!r} on joint {name!r}; BVH channels are "
                    f"{', '.join(POSITION_CHANNELS + ROTATION_CHANNELS)}", channel_line)
            names.append(_CHANNEL_BY_LOWER[channel.lower()])
        if len(set(names)) != len(names):
            raise tokens.error(f"joint {name!r} repeats a channel; each channel may appear once", count_line)
        channels = tuple(names)
        token, token_line = tokens.next("JOINT, End Site or }")
    axes = "".join(c[0] for c in channels if c in ROTATION_CHANNELS)
    order = axes + "".join(a for a in "ZXY" if a not in axes)  # missing rotations are zero; any completion works
    index = len(bones)
    bones.append(Bone(name, parent, offset, order, channels))
    end_site = None
    while token != "}":
        if token.upper() == "JOINT":
            _read_joint(tokens, bones, parent=index, depth=depth + 1)
        elif token.upper() == "END":
            tokens.expect("Site")
            tokens.expect("{")
            end_site = tokens.offset()
            tokens.expect("}")
        else:
            raise tokens.error(f"expected JOINT, End Site or '}}' in joint {name!r}, found {token!r}", token_line)
        token, token_line = tokens.next(f"'}}' closing joint {name!r}")
    if end_site is not None:
        bones[index] = Bone(name, parent, offset, order, channels, end_site)


def _read_motion(path: Path, lines: list[str], motion_line: int, num_channels: int) -> tuple[float, np.ndarray]:
    numbered = enumerate(lines[motion_line + 1:], motion_line + 2)  # 1-based line numbers after MOTION
    rest = [(number, line.strip()) for number, line in numbered if line.strip()]
    header = {}
    for key, position in (("frames", 0), ("frame time", 1)):
        if len(rest) <= position:
            raise UserError(f"{path}: MOTION has no '{key.title()}:' line; the file is truncated, re-export it")
        number, line = rest[position]
        label, _, value = line.partition(":")
        if label.strip().lower() != key:
            raise UserError(f"{path}, line {number}: expected '{key.title()}:', found {line[:40]!r}")
        header[key] = (number, value.strip())
    frames_line, frames_text = header["frames"]
    time_line, time_text = header["frame time"]
    if not _COUNT.fullmatch(frames_text):
        raise UserError(f"{path}, line {frames_line}: frame count must be a whole number, found {frames_text!r}")
    num_frames = int(frames_text)
    if num_frames == 0:
        raise UserError(f"{path}, line {frames_line}: the file has zero frames; export at least one frame of motion")
    try:
        frame_time = float(time_text)
    except ValueError:
        raise UserError(f"{path}, line {time_line}: frame time must be a number, found {time_text!r}") from None
    if not (frame_time > 0 and math.isfinite(frame_time) and math.isfinite(1.0 / frame_time)):
        # inf would make the frame rate 0, and a subnormal time like 1e-320 makes it inf
        raise UserError(f"{path}, line {time_line}: frame time must be positive, finite seconds, found {time_text!r}")
    frame_lines = rest[2:]
    if len(frame_lines) != num_frames:
        state = "is truncated" if len(frame_lines) < num_frames else "has extra lines"
        raise UserError(
            f"{path}: 'Frames: {num_frames}' but {len(frame_lines)} frame lines follow (the file {state}); "
            "fix the Frames count or re-export the file")
    values = np.empty((num_frames, num_channels), dtype=np.float64)
    for frame, (number, line) in enumerate(frame_lines):
        fields = line.split()
        if len(fields) != num_channels:
            raise UserError(
                f"{path}, line {number}: {len(fields)} values but the hierarchy declares {num_channels} channels; "
                "the frame is truncated or the hierarchy does not match the motion")
        try:
            values[frame] = [float(field) for field in fields]
        except ValueError:
            bad = next(f for f in fields if not _is_float(f))
            raise UserError(f"{path}, line {number}: non-numeric value {bad!r}; fix or re-export the file") from None
    if not np.isfinite(values).all():
        row = int(np.nonzero(~np.isfinite(values).all(axis=1))[0][0])
        raise UserError(f"{path}, line {frame_lines[row][0]}: non-finite value (nan/inf); fix or re-export the file")
    return frame_time, values


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def write_bvh(motion: BvhMotion, path: str | Path, precision: int = 6) -> None:
    """Write a BVH file (tabs, ``precision`` decimals) that :func:`read_bvh` reads back to the same motion.

    Joints are written depth first with children in bone order, and the value columns follow that order, so a
    skeleton whose bones are not in depth-first order is still written correctly (and re-read in the new order).
    """
    skeleton = motion.skeleton
    values = np.asarray(motion.values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != skeleton.num_channels:
        raise ValueError(f"values must be (frames, {skeleton.num_channels}), got {values.shape}")
    out, column_order = bvh_hierarchy(skeleton, precision)
    out += ["MOTION", f"Frames: {values.shape[0]}", f"Frame Time: {float(motion.frame_time)!r}"]
    out += format_bvh_rows(values[:, column_order], precision)
    Path(path).write_text("\n".join(out) + "\n", encoding="utf-8")


def format_bvh_rows(values: np.ndarray, precision: int = 6) -> list[str]:
    """MOTION lines for (F, C) values already in the file's column order (see :func:`bvh_hierarchy`)."""
    row_format = " ".join([f"{{:.{precision}f}}"] * values.shape[1])
    return [row_format.format(*row) for row in values]


def bvh_hierarchy(skeleton: Skeleton, precision: int = 6) -> tuple[list[str], list[int]]:
    """The HIERARCHY lines of ``skeleton`` and, per written channel, its column in the skeleton's values.

    Joints are written depth first with children in bone order (what :func:`write_bvh` writes), so a writer that
    streams frames can write the same file: the header, then rows of ``values[:, column_order]``.
    """
    children: list[list[int]] = [[] for _ in skeleton.bones]
    for index, bone in enumerate(skeleton.bones):
        if bone.parent >= 0:
            children[bone.parent].append(index)
    starts = np.cumsum([0] + [len(c) for c in skeleton.bone_channels])
    out = ["HIERARCHY"]
    column_order: list[int] = []
    number = f"{{:.{precision}f}}"

    def offset_line(depth: int, offset: tuple[float, float, float]) -> str:
        return "\t" * depth + "OFFSET " + " ".join(number.format(v) for v in offset)

    def write_joint(index: int, depth: int) -> None:
        bone, channels = skeleton.bones[index], skeleton.bone_channels[index]
        tabs = "\t" * depth
        out.append(f"{tabs}{'ROOT' if depth == 0 else 'JOINT'} {bone.name}")
        out.append(tabs + "{")
        out.append(offset_line(depth + 1, bone.offset))
        out.append(f"{tabs}\tCHANNELS {len(channels)}" + "".join(f" {c}" for c in channels))
        column_order.extend(range(starts[index], starts[index + 1]))
        for child in children[index]:
            write_joint(child, depth + 1)
        if bone.end_site is not None:
            out.extend([f"{tabs}\tEnd Site", tabs + "\t{", offset_line(depth + 2, bone.end_site), tabs + "\t}"])
        out.append(tabs + "}")

    roots = [index for index, bone in enumerate(skeleton.bones) if bone.parent < 0]
    if len(roots) != 1:
        raise ValueError(f"a BVH file has one root, skeleton {skeleton.name!r} has {len(roots)}")
    write_joint(roots[0], 0)
    return out, column_order
