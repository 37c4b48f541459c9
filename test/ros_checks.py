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
