"""End to end over real rclpy/FastDDS: the nodes run as their own processes, this process subscribes."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile
from trajectory_msgs.msg import JointTrajectory

from dimgestor_ros.motion.skeleton import HUMANOID
from dimgestor_ros.paths import demo_audio_file
from dimgestor_ros.retarget.jtc import ControllerSettings, trajectory_violations
from dimgestor_ros.retarget.robot import load_robot_config

from conftest import REPO, VENV_BIN
from ros_checks import assert_valid_trajectories

FPS = 30.0
LAUNCH = [str(VENV_BIN / "dimgestor-launch")]

pytestmark = pytest.mark.timeout(180)


def _skeleton_chunk():
    from dimgestor_msgs.msg import SkeletonChunk

    return SkeletonChunk


def test_readme_run_command_streams_the_whole_clip_and_exits_zero(collector_factory):
    """`make run` with no microphone: /gesture_joints carries >= 90% of clip length x frame rate, the robot
    trajectory and the per-bone message arrive in this other process, and every node exits 0 at the clip's end."""
    clip_seconds = soundfile.info(str(demo_audio_file())).duration
    collector = collector_factory(
        {
            "/gesture_joints": JointTrajectory,
            "/retarget/joint_trajectory": JointTrajectory,
            "/gesture_skeleton": _skeleton_chunk(),
        }
    )
    started = time.monotonic()
    result = subprocess.run(["make", "run"], cwd=REPO, capture_output=True, text=True, timeout=150)
    elapsed = time.monotonic() - started
    time.sleep(1.0)
    assert result.returncode == 0, result.stderr[-2000:]
    assert elapsed >= clip_seconds * 0.95, "the clip must be streamed in real time"

    joints = collector.messages["/gesture_joints"]
    points = assert_valid_trajectories(joints, HUMANOID.dof_names, FPS)
    expected = clip_seconds * FPS
    assert points >= 0.9 * expected, f"received {points} of {expected:.0f} points"
    assert points <= math.ceil(expected) + 1

    robot = load_robot_config("generic_humanoid")
    robot_msgs = collector.messages["/retarget/joint_trajectory"]
    assert len(robot_msgs) >= 0.8 * len(joints)
    # What a JointTrajectoryController accepts (rules in dimgestor_ros/retarget/jtc.py), within the URDF limits.
    controller = ControllerSettings(joints=tuple(robot.joint_names), min_first_time=0.01)
    for msg in robot_msgs:
        assert trajectory_violations(msg, controller, lower=robot.limits.lower, upper=robot.limits.upper,
                                     max_velocity=robot.limits.velocity) == []

    chunks = collector.messages["/gesture_skeleton"]
    assert len(chunks) == len(joints)
    for chunk, trajectory in zip(chunks, joints):
        assert list(chunk.bone_names) == HUMANOID.bone_names
        assert list(chunk.bone_parents) == HUMANOID.parents
        assert chunk.num_frames == len(trajectory.points)
        assert (chunk.stamp_sec, chunk.stamp_nanosec) == (trajectory.header.stamp.sec, trajectory.header.stamp.nanosec)
        quats = np.asarray(chunk.rotations).reshape(chunk.num_frames, HUMANOID.num_bones, 4)
        np.testing.assert_allclose(np.linalg.norm(quats, axis=-1), 1.0, atol=1e-5)
        roots = np.asarray(chunk.root_translations).reshape(chunk.num_frames, 3)
        np.testing.assert_allclose(roots, [p.positions[:3] for p in trajectory.points], atol=1e-5)


def test_launcher_with_duration_and_no_robot_stops_after_five_seconds(collector_factory):
    collector = collector_factory({"/gesture_joints": JointTrajectory, "/retarget/joint_trajectory": JointTrajectory})
    result = subprocess.run(LAUNCH + ["robot:=none", "duration:=5"], capture_output=True, text=True, timeout=90)
    time.sleep(1.0)
    assert result.returncode == 0, result.stderr[-2000:]
    points = assert_valid_trajectories(collector.messages["/gesture_joints"], HUMANOID.dof_names, FPS)
    assert 0.9 * 5 * FPS <= points <= 5 * FPS
    assert collector.messages["/retarget/joint_trajectory"] == []
    assert "retarget_node" not in result.stdout


def test_launcher_accepts_name_equals_value_arguments(tmp_path, collector_factory):
    speech = tmp_path / "speech.wav"
    t = np.arange(int(2.0 * 16000)) / 16000
    soundfile.write(speech, (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 16000)
    collector = collector_factory({"/gesture_joints": JointTrajectory})
    result = subprocess.run(LAUNCH + ["audio_source=file", f"audio_file={speech}", "robot=none"],
                            capture_output=True, text=True, timeout=60)
    time.sleep(1.0)
    assert result.returncode == 0, result.stderr[-2000:]
    points = assert_valid_trajectories(collector.messages["/gesture_joints"], HUMANOID.dof_names, FPS)
    assert points == 60


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["colour:=blue"], "unknown launch argument"),
        (["params_file:=/nonexistent/params.yaml"], "params_file /nonexistent/params.yaml does not exist"),
        (["audio_source:=radio"], "audio_source:=radio is not one of"),
        (["duration:=soon"], "duration:=soon must be a finite number of seconds >= 0"),
        (["robot:=no_such_robot"], "robot 'no_such_robot'"),
    ],
)
def test_bad_launch_argument_is_one_line_error_with_exit_code_2(arguments, message):
    result = subprocess.run(LAUNCH + arguments, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_launcher_fails_when_a_node_dies():
    result = subprocess.run(LAUNCH + ["audio_source:=file", "audio_file:=/nonexistent/speech.wav"],
                            capture_output=True, text=True, timeout=90)
    assert result.returncode != 0
    assert "audio file not found: /nonexistent/speech.wav" in result.stderr
    assert "gesture_node died with exit code 2" in result.stderr


def test_ctrl_c_stops_every_node_and_exits_zero():
    process = subprocess.Popen(LAUNCH + ["audio_source:=file"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    time.sleep(6.0)
    assert process.poll() is None, "the launch ended before Ctrl-C"
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr[-2000:]
    leftovers = subprocess.run(["pgrep", "-f", f"{sys.executable} -m dimgestor_ros.nodes"], capture_output=True)
    assert leftovers.stdout == b"", "node processes outlived the launcher"
