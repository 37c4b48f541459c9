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


def robot_limit_violations(messages, robot) -> tuple[list[str], int]:
    """Every point of every robot JointTrajectory against the robot's URDF limits (positions, velocities sent, steps
    between consecutive points, increasing time_from_start; joint names in any order), by
    dimgestor_ros.retarget.limit_check.LimitCheck, the check the soak's monitor runs too, so the tests and the soak
    cannot disagree on what a violation is. ``robot``: a robot config name or a RobotConfig. Returns (one line per
    violation, points checked)."""
    from dimgestor_ros.retarget.limit_check import LimitCheck

    check = LimitCheck.for_robot(robot, max_lines=None)
    for msg in messages:
        check.check(msg)
    return check.lines, check.points


def assert_within_robot_limits(messages, robot) -> int:
    """No robot command outside the URDF limits (robot_limit_violations), in at least one point; returns the
    number of points checked, so a caller can also require that there was something to check."""
    violations, points = robot_limit_violations(messages, robot)
    assert not violations, f"{len(violations)} limit violations in {points} points: {violations[:10]}"
    assert points > 0, "no robot command to check"
    return points
