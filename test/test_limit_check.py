"""The URDF-limit check (dimgestor_ros/retarget/limit_check.py) that the soak's monitor and every ROS test trusting
``ros_checks.assert_within_robot_limits`` rely on: it passes a clean trajectory and catches each kind of violation,
with a line naming the joint or point, so that "zero commands outside the limits" means something."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from dimgestor_ros.retarget.limit_check import LimitCheck
from dimgestor_ros.retarget.robot import load_robot_config

FPS = 30.0
FRAME_NS = round(1e9 / FPS)


@pytest.fixture(scope="module")
def robot():
    return load_robot_config("generic_humanoid")


@pytest.fixture
def check(robot) -> LimitCheck:
    return LimitCheck.for_robot(robot)


def trajectory(names: list[str], positions: np.ndarray, velocities: np.ndarray | None = None,
               times_ns: list[int] | None = None, order: list[str] | None = None) -> JointTrajectory:
    """A JointTrajectory of ``positions`` (points x joints, in ``names`` order), sent with joint names in
    ``order`` (default: ``names``), one frame apart from 0.3 s unless ``times_ns`` says otherwise."""
    order = order or names
    columns = [names.index(name) for name in order]
    velocities = np.zeros_like(positions) if velocities is None else velocities
    times_ns = times_ns or [round(0.3e9) + k * FRAME_NS for k in range(len(positions))]
    msg = JointTrajectory(joint_names=list(order))
    for q, v, ns in zip(positions, velocities, times_ns):
        point = JointTrajectoryPoint(positions=q[columns].tolist(), velocities=v[columns].tolist())
        point.time_from_start.sec, point.time_from_start.nanosec = divmod(ns, 10**9)
        msg.points.append(point)
    return msg


def ramp(check: LimitCheck, fraction: float = 0.99, points: int = 4) -> np.ndarray:
    """From the middle of each joint's range, moving up at ``fraction`` of the velocity limit per frame."""
    middle = (check.lower + check.upper) / 2
    return middle + np.arange(points)[:, None] * check.velocity * fraction / FPS


def test_a_clean_trajectory_passes_and_is_counted(check):
    q = ramp(check)
    assert check.check(trajectory(check.joint_names, q)) == 0
    assert check.violations == 0 and check.lines == []
    assert check.points == 4 and check.commands == q.size
    assert check.worst["speed_between_points_over_limit"] == pytest.approx(0.99, rel=1e-6)
    assert check.worst["velocity_sent_over_limit"] == 0.0


def test_joint_names_in_another_order_are_mapped_by_name(check):
    names = check.joint_names
    assert check.check(trajectory(names, ramp(check), order=list(reversed(names)))) == 0
    q = ramp(check)[:1]  # one point: no step to check
    q[0, 3] = check.upper[3] + 1e-6
    assert check.check(trajectory(names, q, order=list(reversed(names)))) == 1
    assert check.position == 1 and names[3] in check.lines[0]


@pytest.mark.parametrize("value", ["above", "below", "nan"])
def test_a_position_outside_the_limits_or_not_finite_is_counted(check, value):
    q = np.tile(ramp(check)[:1], (3, 1))  # held still
    q[1, 2] = {"above": check.upper[2] + 1e-6, "below": check.lower[2] - 1e-6, "nan": np.nan}[value]
    if value != "nan":
        q = q[1:2]  # one point: no step to check (a jump just past a limit is also too fast)
    assert check.check(trajectory(check.joint_names, q)) == 1  # NaN: no step counted on top
    assert check.position == 1 and len(check.lines) == 1
    assert f"point {1 if value == 'nan' else 0}: {check.joint_names[2]} at" in check.lines[0]
    assert "outside" in check.lines[0]


def test_a_position_exactly_at_a_limit_passes(check):
    for bound in (check.lower, check.upper):
        assert check.check(trajectory(check.joint_names, np.stack([bound, bound]))) == 0


def test_a_velocity_beyond_the_limit_is_counted(check):
    q = ramp(check)
    v = np.zeros_like(q)
    v[1, 1] = -check.velocity[1] * 1.001
    v[2, 1] = check.velocity[1] * (1 + 1e-7)  # within the relative tolerance: central differences on a ns grid
    assert check.check(trajectory(check.joint_names, q, v)) == 1
    assert check.velocity_sent == 1 and check.joint_names[1] in check.lines[0] and "velocity" in check.lines[0]
    assert check.worst["velocity_sent_over_limit"] == pytest.approx(1.001)


def test_a_step_too_large_for_the_time_between_points_is_counted(check):
    q = ramp(check)
    q[3, 2] = q[2, 2] + 1.5 * check.velocity[2] / FPS  # 1.5x the limit for one frame
    assert check.check(trajectory(check.joint_names, q)) == 1
    assert check.speed == 1 and check.position == 0
    assert "point 3" in check.lines[0] and check.joint_names[2] in check.lines[0] and "velocity limit" in check.lines[0]
    assert check.worst["speed_between_points_over_limit"] == pytest.approx(1.5, rel=1e-6)


def test_time_from_start_that_does_not_increase_is_counted(check):
    q = np.tile(ramp(check)[:1], (3, 1))
    times = [round(0.3e9), round(0.3e9) + FRAME_NS, round(0.3e9) + FRAME_NS]  # the last point repeats the time
    assert check.check(trajectory(check.joint_names, q, times_ns=times)) == 1
    assert check.time_not_increasing == 1 and "point 2" in check.lines[0] and "does not increase" in check.lines[0]


@pytest.mark.parametrize("change", ["missing", "unknown", "repeated"])
def test_a_message_for_other_joints_is_counted_and_not_checked(check, change):
    names = list(check.joint_names)
    sent = {"missing": names[1:], "unknown": names[1:] + ["not_a_joint"], "repeated": names[1:] + names[1:2]}[change]
    msg = trajectory(names, ramp(check), order=names)
    msg.joint_names = sent
    for point in msg.points:
        point.positions = point.positions[: len(sent)]
    assert check.check(msg) == 1
    assert check.wrong_joints == 1 and check.points == 0
    named = {"missing": names[0], "unknown": "not_a_joint", "repeated": names[1]}[change]
    assert f"{change} [{named!r}]" in check.lines[0]


def test_counts_run_on_and_lines_stop_at_the_cap(robot):
    check = LimitCheck.for_robot(robot, max_lines=3)
    q = np.tile(ramp(check)[:1], (2, 1))
    q[:, :2] = check.upper[:2] + 1.0  # 2 joints x 2 points per message
    for _ in range(3):
        assert check.check(trajectory(check.joint_names, q)) == 4
    assert check.position == 12 and len(check.lines) == 3 and check.messages == 3
    assert check.lines[0].startswith("message 0 point 0:") and check.lines[2].startswith("message 0 point 1:")
    summary = check.summary()  # the soak's robot_limits, keys as docs/soak.md and its summary JSON have them
    assert summary == {"points_checked": 6, "commands_checked": 6 * len(check.joint_names), "out_of_limits": 12,
                       "position": 12, "velocity_sent": 0, "speed_between_points": 0, "wrong_joint_names": 0,
                       "largest_ratio_to_velocity_limit": summary["largest_ratio_to_velocity_limit"]}
    assert set(summary["largest_ratio_to_velocity_limit"]) == {"velocity_sent_over_limit",
                                                               "speed_between_points_over_limit"}


def test_the_check_needs_no_ros():
    """The soak's summary and the offline tools can use it without a ROS graph: no rclpy on import."""
    code = "import sys, dimgestor_ros.retarget.limit_check; assert 'rclpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
