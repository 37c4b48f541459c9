"""The checks ros2_control's JointTrajectoryController applies to a trajectory, plus what a robot also needs.

The retargeting node runs :func:`trajectory_violations` on every message before publishing it (a message that
fails is logged and not sent), and the tests run it on what they receive. Rules 1-10 are those of
``JointTrajectoryController::validate_trajectory_msg`` and ``validate_trajectory_point_field`` in ros2_controllers'
``joint_trajectory_controller/src/joint_trajectory_controller.cpp`` (Humble to Rolling; a message failing them is
rejected with an error log and the robot keeps its current trajectory). Rules 11-14 are not checked by the JTC,
but a robot must not get anything else:

1.  ``joint_names`` has as many names as the controller has joints, unless ``allow_partial_joints_goal``.
2.  ``joint_names`` is not empty.
3.  ``points`` is not empty.
4.  every name is one of the controller's joints.
5.  names are unique (the JTC's ``joints`` parameter must be unique; a message naming a joint twice would write two
    columns into one joint: rejected here, stricter than the JTC).
6.  the last point's velocities are all zero (|v| <= float epsilon), unless ``allow_nonzero_velocity_at_trajectory_end``
    (default false since Jazzy; true in Humble).
7.  with a non-zero ``header.stamp``, the trajectory must not end in the past (stamp + last time_from_start >= now).
8.  ``time_from_start`` strictly increases from point to point.
9.  each point has one position per name (required unless ``allow_integration_in_goal_trajectories``); velocities
    and accelerations are empty or one per name.
10. no effort values (unless the controller commands effort).
11. the first point is at least one control period ahead (``time_from_start`` >= ``min_first_time``): at 0 the JTC
    does not interpolate from the current state to the trajectory, the joints jump to the first point.
12. every number is finite (the JTC does not check; NaN would reach the hardware).
13. positions are within the joints' position limits (where given).
14. velocities are within the joints' velocity limits (where given).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .limit_check import LIMIT_ABS_TOLERANCE, LIMIT_REL_TOLERANCE  # one slack for every limit check (why: there)

FLOAT_EPSILON = float(np.finfo(np.float32).eps)  # the JTC compares against std::numeric_limits<float>::epsilon()


@dataclass(frozen=True)
class ControllerSettings:
    """The JTC parameters that decide what it accepts (defaults: the JTC's own, Jazzy and later)."""

    joints: tuple[str, ...]
    allow_partial_joints_goal: bool = False
    allow_nonzero_velocity_at_trajectory_end: bool = False
    allow_integration_in_goal_trajectories: bool = False
    has_effort_command_interface: bool = False
    min_first_time: float = 0.0  # seconds; the controller's update period for rule 11 (0: only > 0)


def _seconds(value) -> float:
    """builtin_interfaces Time/Duration (sec, nanosec) or a number of seconds."""
    if hasattr(value, "sec"):
        return value.sec + value.nanosec * 1e-9
    return float(value)


def trajectory_violations(msg, settings: ControllerSettings, now: float | None = None,
                          lower=None, upper=None, max_velocity=None) -> list[str]:
    """Everything wrong with a ``trajectory_msgs/JointTrajectory`` (or any object shaped like one); [] if valid.

    ``now`` (seconds on the controller's clock) is needed for rule 7; ``lower``/``upper``/``max_velocity`` are
    per-name arrays (in ``msg.joint_names`` order) for rules 13 and 14.
    """
    problems: list[str] = []
    names = list(msg.joint_names)
    points = list(msg.points)
    if not settings.allow_partial_joints_goal and len(names) != len(settings.joints):
        problems.append(f"1: {len(names)} joint names, the controller has {len(settings.joints)} joints")
    if not names:
        problems.append("2: empty joint_names")
    if not points:
        problems.append("3: no points")
    unknown = [n for n in names if n not in settings.joints]
    if unknown:
        problems.append(f"4: joints {unknown} are not the controller's")
    if len(set(names)) != len(names):
        problems.append("5: a joint is named twice")
    if points and not settings.allow_nonzero_velocity_at_trajectory_end:
        last = list(points[-1].velocities)
        moving = [names[i] if i < len(names) else i for i, v in enumerate(last) if abs(v) > FLOAT_EPSILON]
        if moving:
            problems.append(f"6: last point has non-zero velocity for {moving}")
    stamp = _seconds(msg.header.stamp)
    if points and stamp != 0.0 and now is not None:
        end = stamp + _seconds(points[-1].time_from_start)
        if end < now:
            problems.append(f"7: trajectory stamped {stamp:.3f} ends at {end:.3f}, before now ({now:.3f})")
    times = [_seconds(p.time_from_start) for p in points]
    for i in range(1, len(times)):
        if not times[i] > times[i - 1]:
            problems.append(f"8: time_from_start of points {i - 1} and {i} not strictly increasing "
                            f"({times[i - 1]:.6f}, {times[i]:.6f})")
            break
    n = len(names)
    for i, point in enumerate(points):
        fields = {"positions": list(point.positions), "velocities": list(point.velocities),
                  "accelerations": list(point.accelerations)}
        if settings.allow_integration_in_goal_trajectories:
            if not any(fields.values()):
                problems.append(f"9: point {i} has no positions, velocities or accelerations")
            wrong = [k for k, v in fields.items() if v and len(v) != n]
        else:
            wrong = [k for k, v in fields.items() if len(v) != n and (v or k == "positions")]
        if wrong:
            problems.append(f"9: point {i}: {', '.join(f'{k} has {len(fields[k])} values' for k in wrong)} "
                            f"for {n} joints")
        if list(point.effort) and not settings.has_effort_command_interface:
            problems.append(f"10: point {i} has effort values")
        values = [v for k in fields for v in fields[k]] + list(point.effort)
        if not all(math.isfinite(v) for v in values):
            problems.append(f"12: point {i} has a non-finite value")
    if times and (times[0] <= 0.0 or times[0] < settings.min_first_time - LIMIT_ABS_TOLERANCE):
        problems.append(f"11: first point at {times[0]:.4f} s, less than one control period "
                        f"({settings.min_first_time:.4f} s) ahead")
    for bound, kind in ((lower, "below its lower"), (upper, "above its upper")):
        if bound is None or not points:
            continue
        bound = np.asarray(bound, dtype=float)
        for i, point in enumerate(points):
            q = np.asarray(point.positions, dtype=float)
            if q.shape != bound.shape:
                continue
            bad = q < bound - LIMIT_ABS_TOLERANCE if kind.startswith("below") else q > bound + LIMIT_ABS_TOLERANCE
            if bad.any():
                problems.append(f"13: point {i}: {[names[j] for j in np.flatnonzero(bad)]} {kind} position limit")
                break
    if max_velocity is not None:
        limit = np.asarray(max_velocity, dtype=float)
        for i, point in enumerate(points):
            v = np.asarray(point.velocities, dtype=float)
            if v.shape == limit.shape and (np.abs(v) > limit * (1 + LIMIT_REL_TOLERANCE) + LIMIT_ABS_TOLERANCE).any():
                problems.append(f"14: point {i}: velocity beyond the velocity limit")
                break
    return problems


__all__ = ["ControllerSettings", "FLOAT_EPSILON", "trajectory_violations"]
