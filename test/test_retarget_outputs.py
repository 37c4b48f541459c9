"""The retargeting node's building blocks without ROS (issue 7, parts 3 and 4): the JointTrajectoryController
checks (each rule caught), the command schedule (timeline, overlap of successive messages, velocities), the REP-155
human joint state (checked by forward kinematics of the human_description model's own joint axes), the stick
figure, BVH recording, runtime limits that may never be looser than the URDF, and the mapper's counters."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dimgestor_ros.motion.bvh import read_bvh
from dimgestor_ros.motion.kinematics import forward_kinematics
from dimgestor_ros.motion.skeleton import HUMANOID, neutral_pose
from dimgestor_ros.retarget.avatar import (
    HUMAN_JOINTS,
    BvhRecorder,
    PoseSanitizer,
    human_joint_positions,
    stick_figures,
)
from dimgestor_ros.retarget.jtc import ControllerSettings, trajectory_violations
from dimgestor_ros.retarget.mapper import JointMapper
from dimgestor_ros.retarget.offline import load_source_poses
from dimgestor_ros.retarget.robot import load_robot_config
from dimgestor_ros.retarget.schedule import CommandSchedule
from dimgestor_ros.retarget.sources import SKELETON_TO_ROBOT

FPS = 30.0
D = HUMANOID.num_dofs


# --- JTC checks ----------------------------------------------------------------------------------------------------

def _duration(seconds: float):
    ns = int(round(seconds * 1e9))
    return SimpleNamespace(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _msg(names=("a", "b"), times=(0.1, 0.2), positions=None, velocities=None, stamp=0.0, **point_fields):
    """A JointTrajectory-shaped object (the validator reads only fields)."""
    positions = positions if positions is not None else [[0.0] * len(names) for _ in times]
    velocities = velocities if velocities is not None else [[0.0] * len(names) for _ in times]
    points = [SimpleNamespace(positions=list(p), velocities=list(v), accelerations=list(point_fields.get("acc", [])),
                              effort=list(point_fields.get("effort", [])), time_from_start=_duration(t))
              for t, p, v in zip(times, positions, velocities)]
    return SimpleNamespace(header=SimpleNamespace(stamp=_duration(stamp)), joint_names=list(names), points=points)


SETTINGS = ControllerSettings(joints=("a", "b"), min_first_time=0.01)


def test_a_valid_trajectory_has_no_violation():
    msg = _msg(positions=[[0.1, 0.2], [0.2, 0.3]], velocities=[[1.0, 1.0], [0.0, 0.0]])
    assert trajectory_violations(msg, SETTINGS, now=5.0, lower=[-1, -1], upper=[1, 1], max_velocity=[2, 2]) == []
    assert trajectory_violations(_msg(stamp=4.95), SETTINGS, now=5.0) == []  # ends at 5.15: not in the past


@pytest.mark.parametrize("msg, rule", [
    (_msg(names=("a",), times=(0.1,)), "1:"),
    (_msg(names=(), times=(0.1,)), "2:"),
    (_msg(times=()), "3:"),
    (_msg(names=("a", "c")), "4:"),
    (_msg(names=("a", "a")), "5:"),
    (_msg(velocities=[[0.0, 0.0], [0.0, 0.5]]), "6:"),
    (_msg(stamp=4.0), "7:"),
    (_msg(times=(0.1, 0.1)), "8:"),
    (_msg(positions=[[0.0], [0.0, 0.0]]), "9:"),
    (_msg(velocities=[[0.0, 0.0, 0.0], [0.0, 0.0]]), "9:"),
    (_msg(effort=[1.0, 1.0]), "10:"),
    (_msg(times=(0.0, 0.1)), "11:"),
    (_msg(times=(0.005, 0.1)), "11:"),
    (_msg(positions=[[0.0, np.nan], [0.0, 0.0]]), "12:"),
    (_msg(positions=[[0.0, 1.5], [0.0, 0.0]]), "13:"),
    (_msg(velocities=[[0.0, 3.0], [0.0, 0.0]]), "14:"),
])
def test_each_rule_catches_what_it_documents(msg, rule):
    problems = trajectory_violations(msg, SETTINGS, now=5.0, lower=[-1, -1], upper=[1, 1], max_velocity=[2, 2])
    assert any(p.startswith(rule) for p in problems), problems


def test_controller_options_relax_their_rules():
    relaxed = ControllerSettings(joints=("a", "b", "c"), allow_partial_joints_goal=True,
                                 allow_nonzero_velocity_at_trajectory_end=True)
    assert trajectory_violations(_msg(velocities=[[0.0, 0.0], [0.0, 0.5]]), relaxed) == []


# --- schedule ------------------------------------------------------------------------------------------------------

def test_schedule_anchors_lead_ahead_continues_in_time_and_reanchors_when_late():
    schedule = CommandSchedule(FPS, lead_s=0.3, min_lead_s=0.01)
    now = 1_000_000_000
    assert schedule.append(np.zeros((15, 2)), now)  # a stream starts: anchored
    assert schedule.entries[0].time_ns == now + 300_000_000
    # The next chunk 0.5 s later continues the timeline: frame 15 of it.
    assert not schedule.append(np.ones((15, 2)), now + 500_000_000)
    assert schedule.entries[15].time_ns == now + 300_000_000 + round(15e9 / FPS)
    # Far too late (the timeline ran out): anchored again lead_time after the arrival.
    late = now + 3_000_000_000
    assert schedule.append(np.ones((3, 2)), late)
    assert schedule.entries[-3].time_ns == late + 300_000_000
    assert schedule.anchors == 2


def test_plans_carry_the_commands_still_to_come_with_consistent_velocities():
    schedule = CommandSchedule(FPS, lead_s=0.3, min_lead_s=0.01)
    now = 0
    q = np.cumsum(np.full((30, 1), 0.01), axis=0)  # 0.3 rad/s
    schedule.append(q[:15], now)
    first = schedule.plan(now)
    schedule.append(q[15:], now + 500_000_000)
    second = schedule.plan(now + 500_000_000)
    # The second message starts with the commands of the first that are still ahead, at the same moments.
    absolute_first = {first.reference_ns + t: p[0] for t, p in zip(first.times_from_start_ns, first.positions)}
    for t, p in zip(second.times_from_start_ns, second.positions):
        if second.reference_ns + t in absolute_first:
            assert absolute_first[second.reference_ns + t] == p[0]
    assert second.times_from_start_ns[0] >= 10_000_000
    assert len(second.positions) == 30 - (np.array([e.time_ns for e in schedule.entries]) < 510_000_000).sum()
    np.testing.assert_allclose(second.velocities[:-1], 0.3, rtol=1e-6)  # central differences
    assert np.all(second.velocities[-1] == 0.0)  # zero at the end, as the JTC's default requires
    assert np.all(schedule.plan(now + 500_000_000, zero_final_velocity=False).velocities[-1] > 0.29)
    # Sampling between commands interpolates.
    position, velocity = schedule.sample(300_000_000 + round(0.5e9 / FPS))
    np.testing.assert_allclose(position, 0.015, atol=1e-9)
    np.testing.assert_allclose(velocity, 0.3, rtol=1e-6)


# --- REP-155 human joint state -------------------------------------------------------------------------------------

# The human_description model (ros4hri, urdf/human-tpl.xacro): joint axes in REP-103 axes; arms and legs hang
# along -z at zero. Written from that file's axes, independently of dimgestor_ros.retarget.avatar.
ARM_AXES = {"l": [(0, 0, -1), (1, 0, 0), (0, 0, 1), (0, -1, 0)], "r": [(0, 0, 1), (-1, 0, 0), (0, 0, -1), (0, -1, 0)]}
LEG_AXES = {"l": [(0, 0, -1), (1, 0, 0), (0, -1, 0), (0, -1, 0)], "r": [(0, 0, -1), (-1, 0, 0), (0, -1, 0), (0, -1, 0)]}


def _chain(axes, angles) -> list[np.ndarray]:
    """Cumulative rotation matrices after each joint of a serial chain of revolute joints."""
    out, current = [], np.eye(3)
    for axis, angle in zip(axes, angles):
        current = current @ Rotation.from_rotvec(np.asarray(axis, float) * angle).as_matrix()
        out.append(current)
    return out


def _source_frames(pose):
    positions, quats = forward_kinematics(HUMANOID, pose[None], return_rotations=True)
    s = SKELETON_TO_ROBOT
    rotations = {n: s @ Rotation.from_quat(quats[0, i]).as_matrix() @ s.T for i, n in enumerate(HUMANOID.bone_names)}
    points = {n: s @ positions[0, i] for i, n in enumerate(HUMANOID.bone_names)}
    return rotations, points


def _unit(v):
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


@pytest.mark.parametrize("seed", range(6))
def test_human_joint_state_reproduces_the_source_limbs_on_the_human_description_model(seed):
    rng = np.random.default_rng(seed)
    pose = neutral_pose().astype(float) + rng.normal(0.0, 0.5, D)
    pose[:3] = HUMANOID.bones[0].offset
    q = dict(zip(HUMAN_JOINTS, human_joint_positions(pose[None])[0]))
    rotations, points = _source_frames(pose)
    body = rotations["Hips"]
    torso = body @ Rotation.from_rotvec([0, q["waist"], 0]).as_matrix()
    # The waist takes the chest's forward lean: the chest's up axis, seen in the hips, lies in the model's x-z plane.
    up = body.T @ rotations["Spine2"][:, 2]
    np.testing.assert_allclose(_unit(np.array([up[0], 0.0, up[2]])), body.T @ torso[:, 2], atol=1e-9)
    # Head: r_head (x), y_head (z), p_head (-y) reproduce the head's orientation relative to the model's torso.
    head = _chain([(1, 0, 0), (0, 0, 1), (0, -1, 0)], [q["r_head"], q["y_head"], q["p_head"]])[-1]
    np.testing.assert_allclose(torso @ head, rotations["Head"], atol=1e-7)
    for side, name in (("l", "Left"), ("r", "Right")):
        shoulder, _, twist, elbow = _chain(ARM_AXES[side], [q[f"{side}_y_shoulder"], q[f"{side}_p_shoulder"],
                                                            q[f"{side}_r_shoulder"], q[f"{side}_elbow"]])
        upper = _unit(points[f"{name}ForeArm"] - points[f"{name}Arm"])
        fore = _unit(points[f"{name}Hand"] - points[f"{name}ForeArm"])
        np.testing.assert_allclose(torso @ twist @ [0, 0, -1], upper, atol=1e-7)
        np.testing.assert_allclose(torso @ elbow @ [0, 0, -1], fore, atol=1e-7)
        assert q[f"{side}_elbow"] >= 0.0  # the model's elbow bends one way
        *_, hip, knee = _chain(LEG_AXES[side], [q[f"{side}_y_hip"], q[f"{side}_p_hip"], q[f"{side}_r_hip"],
                                                q[f"{side}_knee"]])
        thigh = _unit(points[f"{name}Leg"] - points[f"{name}UpLeg"])
        shin = _unit(points[f"{name}Foot"] - points[f"{name}Leg"])
        np.testing.assert_allclose(body @ hip @ [0, 0, -1], thigh, atol=1e-7)
        np.testing.assert_allclose(body @ knee @ [0, 0, -1], shin, atol=1e-7)
        assert q[f"{side}_knee"] <= 0.0


def test_human_joint_state_of_known_poses():
    pose = neutral_pose().astype(float)
    q = dict(zip(HUMAN_JOINTS, human_joint_positions(pose[None])[0]))
    assert all(abs(q[j]) < 1e-9 for j in ("waist", "r_head", "y_head", "p_head", "l_knee", "r_knee", "l_p_hip"))
    np.testing.assert_allclose([q["l_p_shoulder"], q["r_p_shoulder"]], np.pi / 2 - 1.3, atol=1e-6)  # arms hang
    np.testing.assert_allclose([q["l_elbow"], q["r_elbow"]], 0.25, atol=1e-6)
    pose[HUMANOID.dof_names.index("LeftArm_rz")] = 0.0  # left arm straight out sideways
    pose[HUMANOID.dof_names.index("LeftForeArm_ry")] = 0.0
    q = dict(zip(HUMAN_JOINTS, human_joint_positions(pose[None])[0]))
    np.testing.assert_allclose([q["l_p_shoulder"], q["l_y_shoulder"], q["l_elbow"]], [np.pi / 2, 0.0, 0.0], atol=1e-6)


# --- stick figure and BVH recording --------------------------------------------------------------------------------

def test_stick_figure_stands_upright_in_rep103_axes():
    points, segments = stick_figures(neutral_pose()[None])
    assert points.shape == (1, HUMANOID.num_bones + 5, 3) and len(segments) == HUMANOID.num_bones - 1 + 5
    z = points[0, :, 2]
    head_top = points[0, -5]
    assert head_top[2] == z.max() and 1.6 < head_top[2] < 1.9
    assert z.min() < 0.1  # feet near the floor
    left_hand = points[0, HUMANOID.bone_names.index("LeftHand")]
    assert left_hand[1] > 0.1  # REP-103: left is +y


def test_bvh_recording_reads_back_with_every_frame_and_nan_held(tmp_path):
    rng = np.random.default_rng(1)
    poses = neutral_pose().astype(float) + rng.normal(0.0, 0.3, (45, D))
    poses[:, :3] = HUMANOID.bones[0].offset
    poses[10, 5] = np.nan
    poses[20] = np.inf
    recorder = BvhRecorder(tmp_path / "rec" / "stream.bvh", FPS)
    sanitize = PoseSanitizer()
    for start in range(0, 45, 15):
        recorder.add(sanitize(poses[start:start + 15]))
    assert not (tmp_path / "rec" / "stream.bvh").exists()  # written on close
    path = recorder.close()
    assert path == tmp_path / "rec" / "stream.bvh" and not (tmp_path / "rec" / "stream.bvh.part").exists()
    motion = read_bvh(path)
    assert motion.num_frames == 45 and abs(motion.fps - FPS) < 1e-9
    assert motion.skeleton.bone_names == HUMANOID.bone_names
    assert motion.skeleton.bones[HUMANOID.bone_names.index("Head")].end_site is not None
    back, fps = load_source_poses(path)  # what `dimgestor retarget` reads
    expected = poses.copy()
    expected[10, 5] = poses[9, 5]
    expected[20] = poses[19]
    np.testing.assert_allclose(back, expected, atol=1e-6)
    assert recorder.close() == path  # idempotent


def test_recording_without_frames_writes_no_file(tmp_path):
    recorder = BvhRecorder(tmp_path / "empty.bvh", FPS)
    assert recorder.close() is None
    assert list(tmp_path.iterdir()) == []


# --- runtime limits and counters -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def robot():
    return load_robot_config("generic_humanoid")


def test_runtime_limits_may_tighten_but_never_loosen_the_urdf(robot):
    mapper = JointMapper(robot, FPS)
    lim = robot.limits
    i = robot.joint_names.index("head_yaw")
    faster = lim.velocity.copy()
    faster[i] = robot.urdf_limits.velocity[i] + 0.5
    with pytest.raises(ValueError, match=r"joint head_yaw: velocity limit 3\.5 must be > 0 and at most the URDF's 3"):
        mapper.set_limits(lim.lower, lim.upper, faster)
    wider = lim.lower.copy()
    wider[i] = -2.0
    with pytest.raises(ValueError, match="below the URDF's -1.2"):
        mapper.set_limits(wider, lim.upper, lim.velocity)
    past_home = lim.lower.copy()
    past_home[i] = 0.5
    with pytest.raises(ValueError, match="home position"):
        mapper.set_limits(past_home, lim.upper, lim.velocity)
    slower = lim.velocity.copy()
    slower[i] = 0.3
    narrow = lim.upper.copy()
    narrow[i] = 0.2
    mapper.set_limits(lim.lower, narrow, slower)
    pose = neutral_pose().astype(float)
    pose[HUMANOID.dof_names.index("Head_ry")] = 1.0  # head turned far: beyond the new upper limit
    commands = mapper.map(np.repeat(pose[None], 90, axis=0))
    assert commands[:, i].max() <= 0.2 + 1e-12
    assert np.abs(np.diff(commands[:, i])).max() <= 0.3 / FPS + 1e-12
    assert robot.limits.upper[i] == 1.2  # the loaded config is untouched


def test_mapper_counts_holds_and_clips(robot):
    mapper = JointMapper(robot, FPS)
    pose = neutral_pose().astype(float)
    mapper.map(np.repeat(pose[None], 45, axis=0))  # past the fade-in: targets now reach the robot at once
    assert mapper.counters["position_clipped"] == mapper.counters["joints_held"] == 0
    far = pose.copy()
    far[HUMANOID.dof_names.index("Head_ry")] = 3.0  # beyond head_yaw's limit
    far[HUMANOID.dof_names.index("Spine2_rx")] = np.nan  # the torso joints hold
    mapper.map(np.repeat(far[None], 30, axis=0))
    assert mapper.counters["position_clipped"] >= 30
    assert mapper.counters["joints_held"] >= 30 and mapper.counters["frames_held"] >= 30
    assert mapper.counters["velocity_clipped"] > 0
    held = mapper.counters["frames_held"]
    mapper.idle(10)
    assert mapper.counters["frames_held"] == held + 10
