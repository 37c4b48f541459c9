"""Robot configs: which source degree of freedom drives each robot joint, and the limits from the URDF.

A robot YAML (config/robots/<name>.yaml) names its URDF (relative to the YAML) and, per robot joint, a source
DoF of the gesture skeleton with sign, scale and offset. Position and velocity limits always come from the URDF;
the YAML may only tighten them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ..errors import UserError
from ..paths import robot_config_file


@dataclass(frozen=True)
class JointMap:
    name: str  # robot joint, as in the URDF
    source: str  # source skeleton DoF name (see Skeleton.dof_names)
    scale: float = 1.0  # multiplies the source value; a negative scale flips the axis
    offset: float = 0.0  # added after scaling, radians (or metres for prismatic joints)


@dataclass(frozen=True)
class JointLimits:
    lower: np.ndarray  # (J,)
    upper: np.ndarray  # (J,)
    velocity: np.ndarray  # (J,) absolute value per second


@dataclass(frozen=True)
class RobotConfig:
    name: str
    urdf_path: Path
    joints: tuple[JointMap, ...]
    limits: JointLimits
    home: np.ndarray  # (J,) pose to fade from and to, inside the limits

    @property
    def joint_names(self) -> list[str]:
        return [joint.name for joint in self.joints]


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"robot config not found: {path} (robots ship in config/robots/; or give a YAML path)") from None
    except yaml.YAMLError as error:
        raise UserError(f"robot config {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise UserError(f"robot config {path} must be a mapping with 'urdf' and 'joints'")
    return data


def _urdf_limits(urdf_path: Path, joint_names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from urdf_parser_py.urdf import URDF

    try:
        robot = URDF.from_xml_string(urdf_path.read_bytes())
    except FileNotFoundError:
        raise UserError(f"URDF not found: {urdf_path} (the robot YAML names it relative to itself)") from None
    except Exception as error:  # urdf_parser_py raises bare Exceptions and lxml errors for malformed files
        raise UserError(f"cannot parse URDF {urdf_path}: {error}") from None
    lower, upper, velocity = [], [], []
    for name in joint_names:
        joint = robot.joint_map.get(name)
        if joint is None:
            raise UserError(f"joint {name!r} is not in {urdf_path}; its joints are {sorted(robot.joint_map)}")
        limit = joint.limit
        if joint.type == "continuous":
            lo, hi = -np.pi, np.pi
        elif limit is None or limit.lower is None or limit.upper is None:
            raise UserError(f"joint {name!r} in {urdf_path} has no <limit lower upper>; add the robot's limits")
        else:
            lo, hi = float(limit.lower), float(limit.upper)
        if limit is None or not limit.velocity:
            raise UserError(f"joint {name!r} in {urdf_path} has no velocity limit; add <limit velocity=...>")
        lower.append(lo)
        upper.append(hi)
        velocity.append(abs(float(limit.velocity)))
    return np.array(lower), np.array(upper), np.array(velocity)


def load_robot_config(robot: str) -> RobotConfig:
    """Load config/robots/<robot>.yaml (or a YAML path) and its URDF limits."""
    path = robot_config_file(robot)
    data = _read_yaml(path)
    if "urdf" not in data or "joints" not in data:
        raise UserError(f"robot config {path} needs the keys 'urdf' and 'joints'")
    joints = []
    for entry in data["joints"]:
        try:
            joints.append(JointMap(**entry))
        except TypeError as error:
            raise UserError(f"robot config {path}: bad joint entry {entry}: {error}") from None
    names = [joint.name for joint in joints]
    urdf_path = (path.parent / data["urdf"]).resolve()
    lower, upper, velocity = _urdf_limits(urdf_path, names)
    for name, tighter in (data.get("limits") or {}).items():
        if name not in names:
            raise UserError(f"robot config {path}: 'limits' names {name!r}, which is not a mapped joint")
        i = names.index(name)
        # YAML limits may only tighten the URDF's.
        lower[i] = max(lower[i], float(tighter.get("lower", lower[i])))
        upper[i] = min(upper[i], float(tighter.get("upper", upper[i])))
        velocity[i] = min(velocity[i], abs(float(tighter.get("velocity", velocity[i]))))
    for i in np.flatnonzero(lower > upper):
        raise UserError(
            f"robot config {path}: joint {names[i]!r} has lower limit {lower[i]} above upper limit {upper[i]} "
            "(URDF limits tightened by 'limits'); fix the range"
        )
    home_values = data.get("home") or {}
    home = np.array([float(home_values.get(name, 0.0)) for name in names])
    home = np.clip(home, lower, upper)
    return RobotConfig(
        name=str(data.get("name", path.stem)),
        urdf_path=urdf_path,
        joints=tuple(joints),
        limits=JointLimits(lower, upper, velocity),
        home=home,
    )
