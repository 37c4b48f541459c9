"""Tests for the retargeting core: robot limits come from the URDF and YAML can only tighten them; the joint
mapper never leaves the position limits nor exceeds the velocity limits, whatever it is fed and across calls;
broken robot configs are clear UserErrors naming the joint."""

from __future__ import annotations

import numpy as np
import pytest
from urdf_parser_py.urdf import URDF

from dimgestor_ros.errors import UserError
from dimgestor_ros.motion.skeleton import HUMANOID, neutral_pose
from dimgestor_ros.paths import config_dir
from dimgestor_ros.retarget.mapper import JointMapper
from dimgestor_ros.retarget.robot import load_robot_config

FPS = 30.0
SHIPPED_URDF = config_dir() / "robots" / "generic_humanoid.urdf"


@pytest.fixture(scope="module")
def robot():
    return load_robot_config("generic_humanoid")


def urdf_limits_independently(names):
    urdf = URDF.from_xml_string(SHIPPED_URDF.read_bytes())
    joints = {joint.name: joint for joint in urdf.joints}
    return (
        np.array([joints[n].limit.lower for n in names]),
        np.array([joints[n].limit.upper for n in names]),
        np.array([joints[n].limit.velocity for n in names]),
    )


def write_robot(tmp_path, body: str, urdf: str | None = None):
    """A robot YAML in tmp_path; ``urdf`` given writes that URDF beside it, else the YAML uses the shipped one."""
    if urdf is not None:
        (tmp_path / "robot.urdf").write_text(urdf)
        urdf_line = "urdf: robot.urdf"
    else:
        urdf_line = f"urdf: {SHIPPED_URDF}"
    path = tmp_path / "robot.yaml"
    path.write_text(f"name: test_robot\n{urdf_line}\n{body}")
    return path


def assert_within_limits(robot, previous: np.ndarray, commands: np.ndarray) -> None:
    lim = robot.limits
    assert np.isfinite(commands).all()
    assert (commands >= lim.lower).all() and (commands <= lim.upper).all()
    steps = np.abs(np.diff(np.vstack([previous[None], commands]), axis=0))
    assert (steps <= lim.velocity / FPS + 1e-9).all(), steps.max(axis=0) - lim.velocity / FPS


def test_generic_humanoid_limits_come_from_its_urdf(robot):
    assert robot.urdf_path == SHIPPED_URDF.resolve()
    assert len(robot.joints) == 14
    lower, upper, velocity = urdf_limits_independently(robot.joint_names)
    np.testing.assert_array_equal(robot.limits.lower, lower)
    np.testing.assert_array_equal(robot.limits.upper, upper)
    np.testing.assert_array_equal(robot.limits.velocity, velocity)
    assert (robot.home >= lower).all() and (robot.home <= upper).all()
    assert set(j.source for j in robot.joints) <= set(HUMANOID.dof_names)


def test_yaml_limits_tighten_but_never_loosen(tmp_path):
    path = write_robot(
        tmp_path,
        """joints:
  - {name: torso_yaw, source: Spine1_ry}
  - {name: head_yaw, source: Head_ry}
  - {name: l_elbow, source: LeftForeArm_ry, scale: -1.0}
limits:
  torso_yaw: {lower: -0.5, upper: 2.0, velocity: 10.0}
  head_yaw: {lower: -9.0, upper: 0.4, velocity: 1.0}
""",
    )
    robot = load_robot_config(str(path))
    lower, upper, velocity = urdf_limits_independently(robot.joint_names)  # -0.8/0.8/2, -1.2/1.2/3, -2.3/0/4
    np.testing.assert_array_equal(robot.limits.lower, [-0.5, lower[1], lower[2]])
    np.testing.assert_array_equal(robot.limits.upper, [upper[0], 0.4, upper[2]])
    np.testing.assert_array_equal(robot.limits.velocity, [velocity[0], 1.0, velocity[2]])


def test_yaml_limits_that_leave_no_range_are_a_user_error(tmp_path):
    path = write_robot(
        tmp_path,
        """joints:
  - {name: torso_yaw, source: Spine1_ry}
limits:
  torso_yaw: {lower: 0.9}
""",
    )  # the URDF's upper limit is 0.8
    with pytest.raises(UserError, match="torso_yaw"):
        load_robot_config(str(path))


def test_yaml_limits_naming_an_unmapped_joint_are_a_user_error(tmp_path):
    path = write_robot(
        tmp_path,
        """joints:
  - {name: torso_yaw, source: Spine1_ry}
limits:
  head_yaw: {upper: 0.1}
""",
    )
    with pytest.raises(UserError, match="head_yaw"):
        load_robot_config(str(path))


def test_home_outside_the_limits_is_clipped_into_them(tmp_path):
    path = write_robot(
        tmp_path,
        """joints:
  - {name: torso_yaw, source: Spine1_ry}
  - {name: l_elbow, source: LeftForeArm_ry}
home: {torso_yaw: 5.0, l_elbow: -1.0}
""",
    )
    np.testing.assert_array_equal(load_robot_config(str(path)).home, [0.8, -1.0])


def test_yaml_joint_absent_from_the_urdf_is_a_user_error_naming_it(tmp_path):
    path = write_robot(
        tmp_path, "joints:\n  - {name: torso_yaw, source: Spine1_ry}\n  - {name: tail_wag, source: Head_ry}\n"
    )
    with pytest.raises(UserError, match="tail_wag"):
        load_robot_config(str(path))


URDF_TEMPLATE = """<?xml version="1.0"?>
<robot name="tiny">
  <link name="base"/><link name="a"/><link name="b"/>
  <joint name="good" type="revolute">
    <parent link="base"/><child link="a"/><axis xyz="0 0 1"/>
    <limit lower="-1" upper="1" velocity="2" effort="1"/>
  </joint>
  <joint name="bad" type="{bad_type}">
    <parent link="a"/><child link="b"/><axis xyz="0 0 1"/>
    {bad_limit}
  </joint>
</robot>
"""


@pytest.mark.parametrize(
    "bad_type,bad_limit,match",
    [
        ("revolute", "", "no <limit"),  # no limit at all
        ("prismatic", "", "no <limit"),
        ("revolute", '<limit lower="-1" upper="1" effort="1" velocity="0"/>', "velocity"),
        ("continuous", "", "velocity"),  # continuous needs no position limits, but a velocity limit
    ],
)
def test_urdf_joint_without_limits_is_a_user_error_naming_it(tmp_path, bad_type, bad_limit, match):
    urdf = URDF_TEMPLATE.format(bad_type=bad_type, bad_limit=bad_limit)
    path = write_robot(
        tmp_path, "joints:\n  - {name: good, source: Spine1_ry}\n  - {name: bad, source: Head_ry}\n", urdf=urdf
    )
    with pytest.raises(UserError, match=match) as error:
        load_robot_config(str(path))
    assert "'bad'" in str(error.value)


def test_continuous_joint_with_velocity_limit_is_bounded_to_one_turn(tmp_path):
    urdf = URDF_TEMPLATE.format(bad_type="continuous", bad_limit='<limit effort="1" velocity="3"/>')
    path = write_robot(
        tmp_path, "joints:\n  - {name: good, source: Spine1_ry}\n  - {name: bad, source: Head_ry}\n", urdf=urdf
    )
    robot = load_robot_config(str(path))
    np.testing.assert_allclose(robot.limits.lower, [-1.0, -np.pi])
    np.testing.assert_allclose(robot.limits.upper, [1.0, np.pi])
    np.testing.assert_allclose(robot.limits.velocity, [2.0, 3.0])


@pytest.mark.parametrize(
    "text,match",
    [
        ("name: x\njoints: []\n", "'urdf'"),
        (f"urdf: {SHIPPED_URDF}\njoints:\n  - {{name: torso_yaw, source: Spine1_ry, gain: 2}}\n", "gain"),
        ("- just\n- a list\n", "mapping"),
        ("joints: [unclosed\n", "not valid YAML"),
    ],
)
def test_malformed_robot_yaml_is_a_user_error(tmp_path, text, match):
    path = tmp_path / "robot.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=match):
        load_robot_config(str(path))


def test_missing_robot_config_is_a_user_error():
    with pytest.raises(UserError, match="not found"):
        load_robot_config("no_such_robot")


def test_mapping_from_a_source_dof_the_skeleton_lacks_is_a_value_error(robot):
    names = [name for name in HUMANOID.dof_names if name != "LeftForeArm_ry"]
    with pytest.raises(ValueError, match="LeftForeArm_ry"):
        JointMapper(robot, names, FPS)


def random_poses(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    d = HUMANOID.num_dofs
    if kind == "normal":
        return rng.normal(0.0, 1.5, (n, d))
    if kind == "huge":
        return rng.choice([-1e6, 1e6], (n, d)) * rng.uniform(0.5, 1.0, (n, d))
    poses = rng.normal(0.0, 3.0, (n, d))
    poses[rng.random((n, d)) < 0.3] = np.nan
    poses[rng.random((n, d)) < 0.1] = np.inf
    poses[rng.random((n, d)) < 0.1] = -np.inf
    return poses


@pytest.mark.parametrize("seed", range(6))
def test_mapper_output_stays_within_position_and_velocity_limits_across_calls(robot, seed):
    rng = np.random.default_rng(seed)
    mapper = JointMapper(robot, HUMANOID.dof_names, FPS)
    previous = mapper.last_command.copy()
    np.testing.assert_array_equal(previous, robot.home)
    for _ in range(12):
        kind = ["normal", "huge", "invalid"][rng.integers(3)]
        poses = random_poses(rng, kind, int(rng.integers(1, 40)))
        commands = mapper.map(poses)
        assert commands.shape == (len(poses), len(robot.joints))
        assert_within_limits(robot, previous, commands)  # includes the step from the previous call's last frame
        previous = commands[-1]
        np.testing.assert_array_equal(mapper.last_command, previous)


def test_mapper_reaches_a_reachable_target_and_applies_scale_and_offset(robot):
    mapper = JointMapper(robot, HUMANOID.dof_names, FPS)
    pose = neutral_pose()
    commands = mapper.map(np.repeat(pose[None].astype(float), 90, axis=0))  # 3 s, ample for any joint
    index = [HUMANOID.dof_names.index(j.source) for j in robot.joints]
    expected = np.clip(
        pose[index] * np.array([j.scale for j in robot.joints]) + np.array([j.offset for j in robot.joints]),
        robot.limits.lower,
        robot.limits.upper,
    )
    np.testing.assert_allclose(commands[-1], expected, atol=1e-6)
    assert_within_limits(robot, robot.home, commands)


def test_mapper_holds_the_previous_command_on_nan_input(robot):
    mapper = JointMapper(robot, HUMANOID.dof_names, FPS)
    rng = np.random.default_rng(0)
    mapper.map(rng.normal(0.0, 0.5, (20, HUMANOID.num_dofs)))
    held = mapper.last_command.copy()
    commands = mapper.map(np.full((5, HUMANOID.num_dofs), np.nan))
    np.testing.assert_array_equal(commands, np.broadcast_to(held, commands.shape))
    # NaN in one source DoF holds only the joint it drives; the others keep moving.
    pose = np.zeros((1, HUMANOID.num_dofs))
    pose[0, HUMANOID.dof_names.index(robot.joints[0].source)] = np.nan
    step = mapper.map(pose)[0]
    assert step[0] == held[0]
    assert not np.allclose(step[1:], held[1:])


def test_reset_returns_to_home_or_a_given_command(robot):
    mapper = JointMapper(robot, HUMANOID.dof_names, FPS)
    mapper.map(np.full((30, HUMANOID.num_dofs), 0.7))
    mapper.reset()
    np.testing.assert_array_equal(mapper.last_command, robot.home)
    mid = (robot.limits.lower + robot.limits.upper) / 2
    mapper.reset(mid)
    commands = mapper.map(np.full((3, HUMANOID.num_dofs), 1e6))
    assert_within_limits(robot, mid, commands)
