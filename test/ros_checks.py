"""Checks shared by the ROS end-to-end tests (what a JointTrajectoryController would also insist on)."""

from __future__ import annotations


def duration_s(duration) -> float:
    return duration.sec + duration.nanosec * 1e-9


def stamp_s(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def assert_valid_trajectories(messages, joint_names: list[str], fps: float) -> int:
    """Every message: the expected joint names, one position per joint, strictly increasing time_from_start
    at 1/fps; consecutive messages: stamps that follow on. Returns the number of points."""
    points = 0
    previous_end = None
    for msg in messages:
        assert list(msg.joint_names) == joint_names
        times = [duration_s(point.time_from_start) for point in msg.points]
        assert times, "empty trajectory"
        assert all(b > a for a, b in zip(times, times[1:])), f"time_from_start not strictly increasing: {times}"
        assert abs(times[0]) < 1e-9 and abs((times[-1] - times[0]) - (len(times) - 1) / fps) < 1e-6
        for point in msg.points:
            assert len(point.positions) == len(joint_names)
        start = stamp_s(msg.header.stamp)
        if previous_end is not None:
            # the next hop starts one frame after the previous hop's last point
            assert abs(start - previous_end - 1.0 / fps) < 2e-3, (start, previous_end)
        previous_end = start + times[-1]
        points += len(times)
    return points


# Tolerances of assert_within_robot_limits. Positions are compared with an absolute 1e-9 (rad or m): the retargeter
# clips in float64 and the message carries float64, so a command at a limit arrives exactly at it. Velocities and
# position steps get a relative 1e-6 on top: time_from_start is in whole nanoseconds, so one frame of 1/30 s is
# rounded by up to 0.5 ns (1.5e-8 of it), and the velocities are central differences of the positions.
LIMIT_ABS_TOLERANCE = 1e-9
LIMIT_REL_TOLERANCE = 1e-6


def robot_limit_violations(messages, robot) -> tuple[list[str], int]:
    """Every point of every robot JointTrajectory against the robot's URDF limits: positions within [lower, upper],
    |velocity| <= the velocity limit, and consecutive points of a message no further apart than the velocity limit
    allows in the time between them (the tolerances above). ``robot``: a robot config name or a RobotConfig, read by
    dimgestor_ros.retarget.robot.load_robot_config; the limits are the URDF's own (``urdf_limits``), the bound the
    robot must never leave, not the config's possibly tighter ones. Returns (one line per violation, points checked)."""
    import math

    import numpy as np

    from dimgestor_ros.retarget.robot import load_robot_config

    config = load_robot_config(robot) if isinstance(robot, str) else robot
    limits = config.urdf_limits or config.limits
    names = config.joint_names
    lower, upper, vmax = (np.asarray(a, dtype=float) for a in (limits.lower, limits.upper, limits.velocity))
    violations: list[str] = []
    points = 0
    for m, msg in enumerate(messages):
        if sorted(msg.joint_names) != sorted(names):
            violations.append(f"message {m}: joints {list(msg.joint_names)} are not the robot's {names}")
            continue
        order = [list(msg.joint_names).index(name) for name in names]
        q = np.array([[point.positions[i] for i in order] for point in msg.points], dtype=float).reshape(-1, len(names))
        t = np.array([duration_s(point.time_from_start) for point in msg.points])
        points += len(q)
        for k, point in enumerate(msg.points):
            if not np.all(np.isfinite(q[k])):
                violations.append(f"message {m} point {k}: non-finite position {q[k].tolist()}")
            for j in np.flatnonzero((q[k] < lower - LIMIT_ABS_TOLERANCE) | (q[k] > upper + LIMIT_ABS_TOLERANCE)):
                violations.append(f"message {m} point {k}: {names[j]} at {q[k, j]:.6f} outside "
                                  f"[{lower[j]:.6f}, {upper[j]:.6f}]")
            if len(point.velocities):
                v = np.array([point.velocities[i] for i in order], dtype=float)
                bound = vmax * (1 + LIMIT_REL_TOLERANCE) + LIMIT_ABS_TOLERANCE
                for j in np.flatnonzero(~np.isfinite(v) | (np.abs(v) > bound)):
                    violations.append(f"message {m} point {k}: {names[j]} velocity {v[j]:.6f} beyond "
                                      f"{vmax[j]:.6f}")
        for k in range(1, len(q)):
            dt = t[k] - t[k - 1]
            if not dt > 0 or not math.isfinite(dt):
                violations.append(f"message {m} point {k}: time_from_start does not increase ({t[k - 1]} -> {t[k]})")
                continue
            bound = vmax * dt * (1 + LIMIT_REL_TOLERANCE) + LIMIT_ABS_TOLERANCE
            step = np.abs(q[k] - q[k - 1])
            for j in np.flatnonzero(step > bound):
                violations.append(f"message {m} point {k}: {names[j]} moved {step[j]:.6f} in {dt:.4f} s, more than "
                                  f"its velocity limit {vmax[j]:.6f}/s allows")
    return violations, points


def assert_within_robot_limits(messages, robot) -> int:
    """No robot command outside the URDF limits (robot_limit_violations), in at least one point; returns the
    number of points checked, so a caller can also require that there was something to check."""
    violations, points = robot_limit_violations(messages, robot)
    assert not violations, f"{len(violations)} limit violations in {points} points: {violations[:10]}"
    assert points > 0, "no robot command to check"
    return points
