"""Robot configs: what drives each robot joint, and the limits no command may leave.

A robot YAML (``config/robots/<name>.yaml``) names its URDF (relative to the YAML) and, per robot joint, its
source: either one rotation component of a bone of the gesture skeleton (``bone``, ``axis``, ``sign``, ``scale``,
``offset``) or an arm IK group (``ik: left_arm``) whose upper-arm and forearm directions are matched by inverse
kinematics on the URDF. Why both: torso and head joints correspond to the human's almost one to one, while arm
joint conventions differ so much between robots (NAO's elbow yaw/roll, G1's tilted shoulder) that only IK maps
them faithfully.

Position and velocity limits always come from the URDF, read by urdf-parser-py; the YAML may tighten them and
add acceleration limits, never loosen them (a looser value is an error, not silently ignored, because a user
who wrote it expects it to act). Every problem is a one-line :class:`UserError` naming the file and the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..errors import UserError, quoted
from ..motion.skeleton import HUMANOID, Skeleton
from ..paths import robot_config_file
from .filters import FadeConfig, SmoothingConfig

AXES = ("x", "y", "z")


@dataclass(frozen=True)
class BoneSource:
    """One rotation component of a bone of the source skeleton, as a robot joint angle.

    The bone's rotation relative to ``relative_to`` (default: its parent, i.e. the bone's local rotation) is
    decomposed into intrinsic Euler angles in ``order`` (skeleton axes: X left, Y up, Z forward; "YXZ" = yaw,
    then pitch, then roll, the order of most robot necks and waists) and the angle about ``axis`` is taken,
    wrapped to (-pi, pi]. Joint value = sign * scale * angle + offset.
    """

    bone: str
    axis: str  # "x", "y" or "z" of the source skeleton
    relative_to: str | None = None  # an ancestor bone; None: the bone's parent
    order: str = "YXZ"  # Euler decomposition order, a permutation of XYZ
    sign: float = 1.0  # +1 or -1: whether the robot's axis points the same way as the skeleton's
    scale: float = 1.0  # > 0: gain on the angle
    offset: float = 0.0  # added last, radians (metres for a prismatic joint)


@dataclass(frozen=True)
class IKChainConfig:
    """An arm solved by inverse kinematics: the robot's upper-arm and forearm point where the human's do.

    Links are URDF links whose origins are the shoulder, elbow and wrist points; the chain runs from
    ``base_link`` (the robot's torso, which corresponds to the source bone ``frame``) to ``wrist_link``. Matching
    directions instead of positions makes the result independent of the two bodies' proportions.
    """

    name: str
    base_link: str
    shoulder_link: str
    elbow_link: str
    wrist_link: str
    bones: tuple[str, str, str]  # source shoulder, elbow and wrist bones (e.g. LeftArm, LeftForeArm, LeftHand)
    frame: str = "Spine2"  # source bone whose frame corresponds to base_link
    regularization: float = 0.05  # pull towards the home pose, resolves redundancy (e.g. a straight arm's twist)


@dataclass(frozen=True)
class JointSpec:
    name: str  # robot joint, as in the URDF
    bone: BoneSource | None = None
    ik: str | None = None  # name of an IKChainConfig


@dataclass(frozen=True)
class JointLimits:
    lower: np.ndarray  # (J,)
    upper: np.ndarray  # (J,)
    velocity: np.ndarray  # (J,) absolute value per second
    acceleration: np.ndarray  # (J,) absolute value per second squared; inf: none


@dataclass(frozen=True)
class RobotConfig:
    name: str
    path: Path  # the robot YAML
    urdf_path: Path
    joints: tuple[JointSpec, ...]
    joint_types: tuple[str, ...]  # URDF joint type per joint: revolute, continuous or prismatic
    limits: JointLimits
    home: np.ndarray  # (J,) pose to fade from and to, inside the limits
    ik: dict[str, IKChainConfig] = field(default_factory=dict)
    smoothing: SmoothingConfig = SmoothingConfig()
    fade: FadeConfig = FadeConfig()
    # The URDF's own limits (before the YAML tightened them): the bound that runtime changes may not exceed.
    urdf_limits: JointLimits | None = None

    @property
    def joint_names(self) -> list[str]:
        return [joint.name for joint in self.joints]

    @property
    def units(self) -> list[str]:
        return ["m" if kind == "prismatic" else "rad" for kind in self.joint_types]


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"robot config not found: {path} (robots ship in config/robots/: "
                        f"{', '.join(shipped_robots()) or 'none'}; or give a YAML path)") from None
    except UnicodeDecodeError:
        raise UserError(f"robot config {path} is not a UTF-8 text file; give a robot YAML") from None
    except OSError as error:  # a folder, no permission
        raise UserError(f"robot config {path} cannot be read ({error.strerror}); give a robot YAML file") from None
    # ValueError: an integer of more than 4300 digits; RecursionError: brackets nested about a thousand deep
    except (yaml.YAMLError, ValueError, RecursionError) as error:
        reason = " ".join(str(error).split())
        raise UserError(f"robot config {path} is not valid YAML: {reason}") from None
    if not isinstance(data, dict):
        raise UserError(f"robot config {path} must be a mapping with 'urdf' and 'joints'")
    return data


def shipped_robots() -> list[str]:
    """Names of the robot configs under config/robots/."""
    folder = robot_config_file("x").parent
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def _dataclass_from(cls: type, entry: Any, where: str, path: Path, **extra: Any) -> Any:
    """Build ``cls`` from a YAML mapping; unknown or missing keys are a UserError listing the allowed keys."""
    if not isinstance(entry, dict):
        raise UserError(f"robot config {path}: {where} must be a mapping, got {quoted(entry)}")
    allowed = [f.name for f in fields(cls) if f.name not in extra]
    unknown = sorted(set(entry) - set(allowed), key=str)  # key=str: YAML keys may be numbers, dates, ...
    if unknown:
        raise UserError(f"robot config {path}: {where} has unknown keys {unknown}; allowed: {', '.join(allowed)}")
    for key, value in entry.items():
        # A single value (bool is an int), or a flat tuple such as ik bones; a list or mapping in a field would
        # pass the dataclass and fail later, e.g. as an unhashable URDF link name.
        items = value if isinstance(value, tuple) else (value,)
        if not all(isinstance(item, (str, int, float, type(None))) for item in items):
            raise UserError(f"robot config {path}: {where}: {key} must be a single value, got {quoted(value)}")
    try:
        return cls(**entry, **extra)
    except (TypeError, ValueError, OverflowError) as error:  # OverflowError: FadeConfig's isfinite(10**400)
        raise UserError(f"robot config {path}: {where}: {error}") from None


def _number(value: Any, what: str, path: Path) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond float's range
        raise UserError(f"robot config {path}: {what} must be a number, got {quoted(value)}") from None
    if not math.isfinite(number):
        raise UserError(f"robot config {path}: {what} must be finite, got {quoted(value)}")
    return number


def _text(value: Any, what: str, path: Path) -> str:
    """A name from the YAML, which must be a string (str() of a list would hide the mistake, or never end)."""
    if not isinstance(value, str):
        raise UserError(f"robot config {path}: {what} must be text, got {quoted(value)}; quote it in the YAML")
    return value


def _ancestors(skeleton: Skeleton, bone: int) -> list[int]:
    chain = []
    while bone >= 0:
        bone = skeleton.bones[bone].parent
        if bone >= 0:
            chain.append(bone)
    return chain


def _check_bone_source(source: BoneSource, joint: str, skeleton: Skeleton, path: Path) -> BoneSource:
    names = skeleton.bone_names
    where = f"joint {joint!r}"
    if source.bone not in names:
        raise UserError(f"robot config {path}: {where} names bone {source.bone!r}, which skeleton {skeleton.name!r} "
                        f"lacks; use one of {', '.join(names)}")
    bone = names.index(source.bone)
    relative_to = source.relative_to
    if relative_to is None:
        if skeleton.bones[bone].parent < 0:
            raise UserError(f"robot config {path}: {where}: bone {source.bone!r} is the root; it has no parent to be "
                            "relative to")
        relative_to = names[skeleton.bones[bone].parent]
    if relative_to not in names or names.index(relative_to) not in _ancestors(skeleton, bone):
        raise UserError(f"robot config {path}: {where}: relative_to {relative_to!r} must be an ancestor bone of "
                        f"{source.bone!r} ({', '.join(names[i] for i in _ancestors(skeleton, bone))})")
    axis = str(source.axis).lower()
    order = str(source.order).upper()
    if axis not in AXES:
        raise UserError(f"robot config {path}: {where}: axis must be x, y or z, got {source.axis!r}")
    if sorted(order) != ["X", "Y", "Z"]:
        raise UserError(f"robot config {path}: {where}: order must be a permutation of XYZ, got {source.order!r}")
    sign = _number(source.sign, f"{where} sign", path)
    if sign not in (1.0, -1.0):
        raise UserError(f"robot config {path}: {where}: sign must be 1 or -1, got {source.sign!r}")
    scale = _number(source.scale, f"{where} scale", path)
    if scale <= 0:
        raise UserError(f"robot config {path}: {where}: scale must be > 0 (flip the axis with sign: -1), "
                        f"got {source.scale!r}")
    offset = _number(source.offset, f"{where} offset", path)
    return BoneSource(source.bone, axis, relative_to, order, sign, scale, offset)


def _parse_joints(data: dict, path: Path, skeleton: Skeleton) -> list[JointSpec]:
    entries = data["joints"]
    if not isinstance(entries, list) or not entries:
        raise UserError(f"robot config {path}: 'joints' must be a non-empty list of {{name: ..., bone: ...}} or "
                        "{name: ..., ik: ...} entries")
    bone_keys = [f.name for f in fields(BoneSource)]
    joints = []
    for entry in entries:
        if not isinstance(entry, dict) or "name" not in entry:
            raise UserError(f"robot config {path}: joint entry {quoted(entry)} needs a 'name' (the URDF joint)")
        name = _text(entry["name"], "a joint's name", path)
        rest = {k: v for k, v in entry.items() if k != "name"}
        if "ik" in rest:
            ik = _text(rest["ik"], f"joint {name!r}: ik", path)
            if len(rest) != 1:
                raise UserError(f"robot config {path}: joint {name!r} is driven by ik: {ik!r}; remove "
                                f"{sorted(set(rest) - {'ik'}, key=str)} (IK joints take no bone, axis or scale)")
            joints.append(JointSpec(name, ik=ik))
            continue
        if "bone" not in rest or "axis" not in rest:
            unknown = sorted(set(rest) - set(bone_keys), key=str)
            hint = f" (unknown keys {unknown})" if unknown else ""
            raise UserError(f"robot config {path}: joint {name!r} needs either 'ik: <group>' or 'bone' and 'axis'"
                            f"{hint}; allowed keys: name, ik, {', '.join(bone_keys)}")
        source = _dataclass_from(BoneSource, rest, f"joint {name!r}", path)
        joints.append(JointSpec(name, bone=_check_bone_source(source, name, skeleton, path)))
    names = [joint.name for joint in joints]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(f"robot config {path}: joints {duplicates} are listed twice; list each robot joint once")
    return joints


def _load_urdf(urdf_path: Path, path: Path):
    from urdf_parser_py.urdf import URDF

    try:
        text = urdf_path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"robot config {path}: URDF not found: {urdf_path} ('urdf' is relative to the YAML)") from None
    except OSError as error:  # a folder, a name too long, no permission
        raise UserError(f"robot config {path}: cannot read URDF {urdf_path} ({error.strerror}); 'urdf' must name "
                        "a URDF file, relative to the YAML") from None
    try:
        return URDF.from_xml_string(text)
    except Exception as error:  # urdf_parser_py raises bare Exceptions and lxml errors for malformed files
        reason = " ".join(str(error).split())
        raise UserError(f"robot config {path}: cannot parse URDF {urdf_path}: {reason}") from None


def _urdf_limits(urdf, urdf_path: Path, path: Path, names: list[str]) -> tuple[list[str], np.ndarray, np.ndarray,
                                                                                np.ndarray]:
    movable = sorted(j.name for j in urdf.joints if j.type in ("revolute", "continuous", "prismatic"))
    kinds, lower, upper, velocity = [], [], [], []
    for name in names:
        joint = urdf.joint_map.get(name)
        if joint is None or joint.type not in ("revolute", "continuous", "prismatic"):
            what = "is not a movable joint of" if joint is not None else "is not in"
            raise UserError(f"robot config {path}: joint {name!r} {what} the URDF {urdf_path}; use one of its "
                            f"joints ({', '.join(movable)}) or fix the name")
        limit = joint.limit
        if joint.type == "continuous":
            lo, hi = -math.pi, math.pi  # one turn either way: commands never wind up
        elif limit is None or limit.lower is None or limit.upper is None:
            raise UserError(f"robot config {path}: joint {name!r} in {urdf_path} has no <limit lower upper>; add the "
                            "robot's published position limits to the URDF")
        else:
            lo, hi = float(limit.lower), float(limit.upper)
        if limit is None or not limit.velocity:
            raise UserError(f"robot config {path}: joint {name!r} in {urdf_path} has no velocity limit; add "
                            "<limit velocity=...> (rad/s or m/s) from the robot's documentation to the URDF")
        if not all(math.isfinite(value) for value in (lo, hi, float(limit.velocity))):  # nan, inf, 1e999
            raise UserError(f"robot config {path}: joint {name!r} in {urdf_path} has a non-finite limit (lower {lo}, "
                            f"upper {hi}, velocity {limit.velocity}); fix the URDF")
        if not lo < hi:
            raise UserError(f"robot config {path}: joint {name!r} in {urdf_path} has lower limit {lo} >= upper {hi}; "
                            "fix the URDF")
        kinds.append(joint.type)
        lower.append(lo)
        upper.append(hi)
        velocity.append(abs(float(limit.velocity)))
    return kinds, np.array(lower), np.array(upper), np.array(velocity)


def _tighten(data: dict, path: Path, urdf_path: Path, names: list[str], lower: np.ndarray, upper: np.ndarray,
             velocity: np.ndarray) -> np.ndarray:
    """Apply the YAML's tighter limits in place; return the acceleration limits. Looser values are errors."""
    default_acceleration = data.get("acceleration")
    acceleration = np.full(len(names), np.inf)
    if default_acceleration is not None:
        value = _number(default_acceleration, "acceleration", path)
        if value <= 0:
            raise UserError(f"robot config {path}: acceleration must be > 0 rad/s^2, got {value}")
        acceleration[:] = value
    limits = data.get("limits") or {}
    if not isinstance(limits, dict):
        raise UserError(f"robot config {path}: 'limits' must map joint names to {{lower, upper, velocity, "
                        "acceleration}")
    for name, tighter in limits.items():
        if name not in names:
            raise UserError(f"robot config {path}: 'limits' names {name!r}, which is not a mapped joint; use one of "
                            f"{', '.join(names)}")
        if not isinstance(tighter, dict) or set(tighter) - {"lower", "upper", "velocity", "acceleration"}:
            raise UserError(f"robot config {path}: limits.{name} may only set lower, upper, velocity and "
                            f"acceleration, got {quoted(tighter)}")
        i = names.index(name)
        checks = (("lower", lower, lambda new, old: new >= old, ">="),
                  ("upper", upper, lambda new, old: new <= old, "<="),
                  ("velocity", velocity, lambda new, old: 0 < new <= old, "in (0, URDF]"))
        for key, array, tightens, relation in checks:
            if key in tighter:
                value = _number(tighter[key], f"limits.{name}.{key}", path)
                if not tightens(value, array[i]):
                    raise UserError(f"robot config {path}: limits.{name}.{key} = {value} is looser than the URDF's "
                                    f"{array[i]:g} ({urdf_path.name}); YAML limits may only tighten: use a value "
                                    f"{relation} {array[i]:g} or remove it")
                array[i] = value
        if "acceleration" in tighter:
            value = _number(tighter["acceleration"], f"limits.{name}.acceleration", path)
            if value <= 0:
                raise UserError(f"robot config {path}: limits.{name}.acceleration must be > 0, got {value}")
            acceleration[i] = value
    for i in np.flatnonzero(lower >= upper):
        raise UserError(f"robot config {path}: joint {names[i]!r} has lower limit {lower[i]:g} at or above upper limit "
                        f"{upper[i]:g} after 'limits' tightened the URDF's; fix the range")
    return acceleration


def _parse_ik(data: dict, path: Path, urdf, urdf_path: Path, joints: list[JointSpec],
              skeleton: Skeleton) -> dict[str, IKChainConfig]:
    groups = data.get("ik") or {}
    if not isinstance(groups, dict):
        raise UserError(f"robot config {path}: 'ik' must map group names to chains")
    used = {joint.ik for joint in joints if joint.ik is not None}
    for name in sorted(used - set(groups)):
        raise UserError(f"robot config {path}: a joint uses ik: {name!r}, but 'ik' defines no such group "
                        f"(groups: {', '.join(map(str, groups)) or 'none'})")
    chains = {}
    for name, entry in groups.items():
        if isinstance(entry, dict) and "bones" in entry:
            bones = entry["bones"]
            if not (isinstance(bones, list) and len(bones) == 3 and all(isinstance(bone, str) for bone in bones)):
                raise UserError(f"robot config {path}: ik.{name}.bones must list the source shoulder, elbow and "
                                "wrist bones, e.g. [LeftArm, LeftForeArm, LeftHand]")
            entry = {**entry, "bones": tuple(bones)}
        chain = _dataclass_from(IKChainConfig, entry, f"ik.{name}", path, name=name)
        for bone in (*chain.bones, chain.frame):
            if bone not in skeleton.bone_names:
                raise UserError(f"robot config {path}: ik.{name} names bone {bone!r}, which skeleton "
                                f"{skeleton.name!r} lacks; use one of {', '.join(skeleton.bone_names)}")
        indices = [skeleton.bone_names.index(b) for b in (chain.frame, *chain.bones)]
        for upper_bone, lower_bone in zip(indices, indices[1:]):
            if upper_bone not in _ancestors(skeleton, lower_bone):
                raise UserError(f"robot config {path}: ik.{name}: {skeleton.bone_names[upper_bone]!r} must be an "
                                f"ancestor of {skeleton.bone_names[lower_bone]!r} (frame, shoulder, elbow, wrist)")
        if _number(chain.regularization, f"ik.{name}.regularization", path) < 0:
            raise UserError(f"robot config {path}: ik.{name}.regularization must be >= 0")
        path_links, path_joints = urdf_chain(urdf, chain.base_link, chain.wrist_link, urdf_path, path, name)
        for link in (chain.shoulder_link, chain.elbow_link):
            if link not in path_links:
                raise UserError(f"robot config {path}: ik.{name}: link {link!r} is not on the URDF chain from "
                                f"{chain.base_link!r} to {chain.wrist_link!r} ({', '.join(path_links)})")
        if path_links.index(chain.shoulder_link) >= path_links.index(chain.elbow_link):
            raise UserError(f"robot config {path}: ik.{name}: shoulder_link must come before elbow_link on the chain")
        members = [joint.name for joint in joints if joint.ik == name]
        if not members:
            raise UserError(f"robot config {path}: ik.{name} drives no joint; add joints with ik: {name} or remove it")
        for member in members:
            if member not in path_joints:
                raise UserError(f"robot config {path}: joint {member!r} has ik: {name}, but it is not on the URDF "
                                f"chain from {chain.base_link!r} to {chain.wrist_link!r} ({', '.join(path_joints)})")
        chains[name] = chain
    return chains


def urdf_chain(urdf, base_link: str, tip_link: str, urdf_path: Path, path: Path, group: str
               ) -> tuple[list[str], list[str]]:
    """Links (base first) and movable joints on the URDF path from ``base_link`` down to ``tip_link``."""
    for link in (base_link, tip_link):
        if link not in urdf.link_map:
            raise UserError(f"robot config {path}: ik.{group}: link {link!r} is not in the URDF {urdf_path}; use one "
                            f"of {', '.join(sorted(urdf.link_map))}")
    links, joints = [tip_link], []
    while links[-1] != base_link:
        if links[-1] not in urdf.parent_map:
            raise UserError(f"robot config {path}: ik.{group}: {tip_link!r} does not hang below {base_link!r} in "
                            f"{urdf_path}; base_link must be an ancestor of wrist_link")
        joint, parent = urdf.parent_map[links[-1]]
        if parent in links:  # urdf_parser_py accepts joints that form a loop; walking up one would never end
            raise UserError(f"robot config {path}: the URDF {urdf_path} has a loop of joints through link {parent!r} "
                            "(a URDF is a tree); fix the joints' parent and child links")
        if urdf.joint_map[joint].type != "fixed":
            joints.append(joint)
        links.append(parent)
    return links[::-1], joints[::-1]


def load_robot_config(robot: str, skeleton: Skeleton = HUMANOID) -> RobotConfig:
    """Load config/robots/<robot>.yaml (or a YAML path), check it against its URDF and the source skeleton."""
    try:
        return _load_robot_config(robot, skeleton)
    except UserError as error:
        message = str(error)
        if message.isprintable():
            raise
        # Messages quote names from the YAML and the URDF (ik group and joint names, links), which may hold a
        # newline ("a\nb": or &#10; in XML); escaped, the message stays the one line a command prints.
        raise UserError("".join(c if c.isprintable() else repr(c)[1:-1] for c in message)) from None


def _load_robot_config(robot: str, skeleton: Skeleton) -> RobotConfig:
    path = robot_config_file(robot)
    data = _read_yaml(path)
    if "urdf" not in data or "joints" not in data:
        raise UserError(f"robot config {path} needs the keys 'urdf' and 'joints'")
    known = {"name", "urdf", "joints", "ik", "limits", "acceleration", "home", "smoothing", "fade"}
    unknown = sorted(set(data) - known, key=str)  # key=str: YAML keys may be numbers, dates, ...
    if unknown:
        raise UserError(f"robot config {path} has unknown keys {unknown}; allowed: {', '.join(sorted(known))}")
    robot_name = _text(data.get("name", path.stem), "name", path)
    joints = _parse_joints(data, path, skeleton)
    names = [joint.name for joint in joints]
    urdf_text = _text(data["urdf"], "urdf", path)
    if "\0" in urdf_text:  # Path.resolve() raises ValueError on it
        raise UserError(f"robot config {path}: urdf {urdf_text!r} holds a NUL character; give the URDF's file name")
    urdf_path = (path.parent / urdf_text).resolve()
    urdf = _load_urdf(urdf_path, path)
    kinds, lower, upper, velocity = _urdf_limits(urdf, urdf_path, path, names)
    urdf_limits = JointLimits(lower.copy(), upper.copy(), velocity.copy(), np.full(len(names), np.inf))
    acceleration = _tighten(data, path, urdf_path, names, lower, upper, velocity)
    ik = _parse_ik(data, path, urdf, urdf_path, joints, skeleton)
    home_values = data.get("home") or {}
    if not isinstance(home_values, dict):
        raise UserError(f"robot config {path}: 'home' must map joint names to positions")
    home = np.clip(np.zeros(len(names)), lower, upper)  # unlisted joints: 0 if allowed, else the nearest limit
    for name, value in home_values.items():
        if name not in names:
            raise UserError(f"robot config {path}: 'home' names {name!r}, which is not a mapped joint")
        i = names.index(name)
        home[i] = _number(value, f"home.{name}", path)
        if not lower[i] <= home[i] <= upper[i]:
            raise UserError(f"robot config {path}: home.{name} = {home[i]:g} is outside the limits "
                            f"[{lower[i]:g}, {upper[i]:g}]; choose a home pose inside them")
    smoothing = _dataclass_from(SmoothingConfig, data.get("smoothing") or {}, "smoothing", path)
    for key in ("min_cutoff", "beta", "d_cutoff"):  # SmoothingConfig lets inf through, and beta: inf makes NaN
        _number(getattr(smoothing, key), f"smoothing.{key}", path)
    fade = _dataclass_from(FadeConfig, data.get("fade") or {}, "fade", path)
    return RobotConfig(
        name=robot_name,
        path=path,
        urdf_path=urdf_path,
        joints=tuple(joints),
        joint_types=tuple(kinds),
        limits=JointLimits(lower, upper, velocity, acceleration),
        home=home,
        ik=ik,
        smoothing=smoothing,
        fade=fade,
        urdf_limits=urdf_limits,
    )
