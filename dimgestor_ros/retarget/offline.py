"""`dimgestor retarget IN.bvh --robot NAME -o OUT.csv|.json [--plot OUT.png]`: a whole clip onto a robot, offline.

The same JointMapper as the retargeting node (limits, smoothing, fades), so a file shows exactly what a robot
would be sent: the clip starts by fading in from the robot's home pose and is followed by a fade back to home
(rows after the clip's last frame), so the file can be played on a robot from rest to rest.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..motion.bvh import read_skeleton_bvh
from ..motion.skeleton import HUMANOID, Skeleton
from .mapper import JointMapper
from .robot import RobotConfig, load_robot_config

OUTPUT_SUFFIXES = (".csv", ".json")


def load_source_poses(path: Path, skeleton: Skeleton = HUMANOID, unit_scale: float = 0.01) -> tuple[np.ndarray, float]:
    """(F, D) pose vectors and the frame rate of a BVH on ``skeleton`` (e.g. from `dimgestor generate`)."""
    motion = read_skeleton_bvh(path, skeleton, "retargeting reads the gesture skeleton that `dimgestor generate` "
                               "writes")
    return motion.to_poses(unit_scale).astype(np.float64), motion.fps


def retarget_poses(poses: np.ndarray, fps: float, robot: RobotConfig) -> tuple[np.ndarray, np.ndarray]:
    """Poses (F, D) at ``fps`` -> times (M,) in seconds and robot commands (M, J), M >= F (fade to home after)."""
    mapper = JointMapper(robot, fps)
    commands = np.concatenate([mapper.map(poses), mapper.fade_out()], axis=0)  # (M, J)
    times = np.arange(len(commands)) / fps
    return times, commands


def write_csv(path: Path, robot: RobotConfig, times: np.ndarray, commands: np.ndarray) -> None:
    """Columns: time (s), then one per robot joint named as in its URDF (radians, metres for prismatic joints)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["time", *robot.joint_names])
        for t, row in zip(times, commands):
            writer.writerow([f"{t:.6f}", *(f"{v:.6f}" for v in row)])


def write_json(path: Path, robot: RobotConfig, times: np.ndarray, commands: np.ndarray, fps: float) -> None:
    """The CSV's columns as lists, plus the robot, its URDF, units and the limits the commands respect."""
    lim = robot.limits
    data = {
        "robot": robot.name,
        "urdf": str(robot.urdf_path),
        "frame_rate": fps,
        "joint_names": robot.joint_names,
        "units": dict(zip(robot.joint_names, robot.units)),
        "limits": {name: {"lower": float(lim.lower[i]), "upper": float(lim.upper[i]),
                          "velocity": float(lim.velocity[i])} for i, name in enumerate(robot.joint_names)},
        "time": [round(float(t), 6) for t in times],
        "positions": {name: [round(float(v), 6) for v in commands[:, i]] for i, name in enumerate(robot.joint_names)},
    }
    path.write_text(json.dumps(data, indent=1) + "\n")


def plot_joint_curves(path: Path, robot: RobotConfig, times: np.ndarray, commands: np.ndarray,
                      clip_seconds: float) -> Path:
    """One small panel per joint: its command over time, its position limits dashed, the clip's end dotted."""
    from ..evaluation.plots import _pyplot

    plt = _pyplot()
    count = len(robot.joint_names)
    columns = 3 if count > 4 else count
    rows = int(np.ceil(count / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4.0 * columns, 1.9 * rows), squeeze=False, sharex=True)
    lim = robot.limits
    for i, (ax, name) in enumerate(zip(axes.flat, robot.joint_names)):
        ax.plot(times, commands[:, i], color="C0", linewidth=1.0)
        for bound in (lim.lower[i], lim.upper[i]):
            ax.axhline(bound, color="C3", linestyle="--", linewidth=0.8)
        ax.axvline(clip_seconds, color="0.6", linestyle=":", linewidth=0.8)
        ax.set_title(f"{name} ({robot.units[i]})", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[count:]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("time (s)", fontsize=8)
    figure.suptitle(f"{robot.name}: joint commands (limits dashed, end of clip dotted, then fade to home)",
                    fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def add_retarget_parser(commands) -> None:
    parser = commands.add_parser(
        "retarget", help="map a gesture BVH onto a robot's joints (CSV or JSON)",
        description="Map a BVH on the gesture skeleton (as `dimgestor generate` writes) onto a robot's joints, "
        "within its URDF limits, with the retargeting node's smoothing and fades.")
    parser.add_argument("motion", type=Path, help="BVH file on the dimgestor humanoid skeleton")
    parser.add_argument("--robot", required=True,
                        help="robot config under config/robots/ (generic_humanoid, nao, unitree_g1) or a YAML path")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help=".csv (time, then one column per robot joint) or .json")
    parser.add_argument("--plot", type=Path, help="also draw the joint curves and their limits to this .png")
    parser.add_argument("--unit-scale", type=float, default=0.01,
                        help="metres per BVH length unit (default 0.01: centimetres)")
    parser.set_defaults(handler=run_retarget)


def run_retarget(args: argparse.Namespace) -> int:
    if args.output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise UserError(f"output {args.output} must end in .csv or .json")
    if args.plot is not None and args.plot.suffix.lower() != ".png":
        raise UserError(f"--plot {args.plot} must end in .png")
    robot = load_robot_config(args.robot)
    poses, fps = load_source_poses(args.motion, unit_scale=args.unit_scale)
    times, commands = retarget_poses(poses, fps, robot)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if args.output.suffix.lower() == ".csv":
        write_csv(args.output, robot, times, commands)
    else:
        write_json(args.output, robot, times, commands, fps)
    message = (f"wrote {args.output}: {len(robot.joint_names)} joints of {robot.name}, {len(times)} rows at "
               f"{fps:g} fps ({len(poses)} clip frames, then {len(times) - len(poses)} fading to home)")
    if args.plot is not None:
        plot_joint_curves(args.plot, robot, times, commands, (len(poses) - 1) / fps)
        message += f"; plot {args.plot}"
    print(message)
    return 0


__all__ = ["add_retarget_parser", "load_source_poses", "retarget_poses", "write_csv", "write_json"]
