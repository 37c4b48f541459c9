"""Tests for the retargeting core: robot limits come from the URDF and YAML can only tighten them (looser is an
error); broken robot configs are one-line UserErrors naming the file, the joint and the fix; the joint mapper
holds, fades and rate-limits as documented and gives the same commands however a stream is chunked.

The property test over random and adversarial motion for every shipped robot is test_retarget_property.py; the
known poses are test_retarget_known_poses.py; the command line is test_retarget_cli.py."""

from __future__ import annotations

import numpy as np
import pytest
from urdf_parser_py.urdf import URDF

from dimgestor_ros.errors import UserError
from dimgestor_ros.motion.skeleton import HUMANOID, neutral_pose
from dimgestor_ros.paths import config_dir
from dimgestor_ros.retarget.mapper import JointMapper
from dimgestor_ros.retarget.robot import load_robot_config, shipped_robots

FPS = 30.0
SHIPPED_URDF = config_dir() / "robots" / "generic_humanoid.urdf"


@pytest.fixture(scope="module")
def robot():
    return load_robot_config("generic_humanoid")


@pytest.fixture(scope="module")
def mapper(robot):
    return JointMapper(robot, FPS)


def urdf_limits_independently(urdf_path, names):
    urdf = URDF.from_xml_string(urdf_path.read_bytes())
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


def user_error(path, match: str) -> str:
    """Load ``path``, expect a one-line UserError naming the file and matching ``match``; return its text."""
    with pytest.raises(UserError, match=match) as error:
        load_robot_config(str(path))
    text = str(error.value)
    assert "\n" not in text, text
    assert str(path) in text, text
    return text


def assert_within_limits(robot, previous: np.ndarray, commands: np.ndarray) -> None:
    lim = robot.limits
    assert np.isfinite(commands).all()
    assert (commands >= lim.lower).all() and (commands <= lim.upper).all()
    steps = np.abs(np.diff(np.vstack([previous[None], commands]), axis=0))
    assert (steps <= lim.velocity / FPS + 1e-9).all(), steps.max(axis=0) - lim.velocity / FPS


def test_three_robots_ship():
    assert {"generic_humanoid", "nao", "unitree_g1"} <= set(shipped_robots())


@pytest.mark.parametrize("name", ["generic_humanoid", "nao", "unitree_g1"])
def test_shipped_limits_come_from_the_urdf_and_are_never_looser(name):
    robot = load_robot_config(name)
    assert robot.urdf_path.parent == (config_dir() / "robots").resolve()
    lower, upper, velocity = urdf_limits_independently(robot.urdf_path, robot.joint_names)
    assert (robot.limits.lower >= lower).all() and (robot.limits.upper <= upper).all()
    assert (robot.limits.velocity <= velocity).all() and (robot.limits.velocity > 0).all()
    assert (robot.limits.acceleration > 0).all()
    assert (robot.home >= robot.limits.lower).all() and (robot.home <= robot.limits.upper).all()
    assert robot.units == ["rad"] * len(robot.joints)
    assert all((j.bone is None) != (j.ik is None) for j in robot.joints)


def test_generic_humanoid_limits_equal_its_urdf(robot):
    assert robot.urdf_path == SHIPPED_URDF.resolve()
    assert len(robot.joints) == 14
    lower, upper, velocity = urdf_limits_independently(SHIPPED_URDF, robot.joint_names)
    np.testing.assert_array_equal(robot.limits.lower, lower)
    np.testing.assert_array_equal(robot.limits.upper, upper)
    np.testing.assert_array_equal(robot.limits.velocity, velocity)
    np.testing.assert_array_equal(robot.limits.acceleration, np.full(14, 20.0))


TWO_JOINTS = """joints:
  - {name: torso_yaw, bone: Spine1, axis: y}
  - {name: head_yaw, bone: Head, axis: y}
  - {name: l_elbow, bone: LeftForeArm, axis: y, sign: -1}
"""


def test_yaml_limits_tighten_and_add_acceleration(tmp_path):
    path = write_robot(tmp_path, TWO_JOINTS + """acceleration: 12
limits:
  torso_yaw: {lower: -0.5, acceleration: 3.0}
  head_yaw: {upper: 0.4, velocity: 1.0}
""")
    robot = load_robot_config(str(path))
    lower, upper, velocity = urdf_limits_independently(SHIPPED_URDF, robot.joint_names)  # -0.8/0.8/2, -1.2/1.2/3, ...
    np.testing.assert_array_equal(robot.limits.lower, [-0.5, lower[1], lower[2]])
    np.testing.assert_array_equal(robot.limits.upper, [upper[0], 0.4, upper[2]])
    np.testing.assert_array_equal(robot.limits.velocity, [velocity[0], 1.0, velocity[2]])
    np.testing.assert_array_equal(robot.limits.acceleration, [3.0, 12.0, 12.0])


@pytest.mark.reliability(
    "bad input",
    "robot config limits looser than the URDF",
    "UserError naming joint, limit and URDF value",
)
@pytest.mark.parametrize("limit,urdf_value", [
    ("{lower: -0.9}", "-0.8"),  # the URDF's torso_yaw range is -0.8 .. 0.8 at 2 rad/s
    ("{upper: 2.0}", "0.8"),
    ("{velocity: 10.0}", "2"),
])
def test_yaml_limits_looser_than_the_urdf_are_a_user_error(tmp_path, limit, urdf_value):
    path = write_robot(tmp_path, TWO_JOINTS + f"limits:\n  torso_yaw: {limit}\n")
    text = user_error(path, "looser than the URDF")
    assert "torso_yaw" in text and urdf_value in text and "only tighten" in text


@pytest.mark.reliability("bad input", "robot config limits that leave no range", "UserError naming the joint")
def test_yaml_limits_that_leave_no_range_are_a_user_error(tmp_path):
    path = write_robot(tmp_path, TWO_JOINTS + "limits:\n  torso_yaw: {lower: 0.5, upper: 0.4}\n")
    user_error(path, "torso_yaw")


@pytest.mark.reliability("bad input", "robot config limits for a joint it does not map", "UserError naming the joint")
def test_yaml_limits_naming_an_unmapped_joint_are_a_user_error(tmp_path):
    path = write_robot(tmp_path, TWO_JOINTS + "limits:\n  r_elbow: {upper: -0.1}\n")
    user_error(path, "r_elbow")


@pytest.mark.reliability("bad input", "robot home pose outside the limits", "UserError naming the joint")
def test_home_outside_the_limits_is_a_user_error_and_unlisted_joints_start_inside(tmp_path):
    path = write_robot(tmp_path, TWO_JOINTS + "home: {torso_yaw: 5.0}\n")
    user_error(path, "home.torso_yaw")
    path = write_robot(tmp_path, TWO_JOINTS + "home: {torso_yaw: 0.3}\n")
    np.testing.assert_array_equal(load_robot_config(str(path)).home, [0.3, 0.0, 0.0])  # l_elbow: 0 is its upper limit


@pytest.mark.reliability(
    "bad input",
    "robot config naming a joint absent from its URDF",
    "UserError naming the joint and the fix",
)
def test_yaml_joint_absent_from_the_urdf_is_a_user_error_naming_it_and_the_fix(tmp_path):
    path = write_robot(tmp_path, TWO_JOINTS + "  - {name: tail_wag, bone: Head, axis: y}\n")
    text = user_error(path, "tail_wag")
    assert "use one of its joints" in text and "l_elbow" in text


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
TINY_JOINTS = "joints:\n  - {name: good, bone: Spine1, axis: y}\n  - {name: bad, bone: Head, axis: y}\n"


@pytest.mark.reliability("bad input", "URDF joint without limits", "UserError naming the joint")
@pytest.mark.parametrize(
    "bad_type,bad_limit,match",
    [
        ("revolute", "", "no <limit"),  # no limit at all
        ("prismatic", "", "no <limit"),
        ("revolute", '<limit lower="-1" upper="1" effort="1" velocity="0"/>', "velocity"),
        ("continuous", "", "velocity"),  # continuous needs no position limits, but a velocity limit
        ("fixed", "", "not a movable joint"),
    ],
)
def test_urdf_joint_without_limits_is_a_user_error_naming_it(tmp_path, bad_type, bad_limit, match):
    urdf = URDF_TEMPLATE.format(bad_type=bad_type, bad_limit=bad_limit)
    text = user_error(write_robot(tmp_path, TINY_JOINTS, urdf=urdf), match)
    assert "'bad'" in text and "URDF" in text


def test_continuous_joint_with_velocity_limit_is_bounded_to_one_turn(tmp_path):
    urdf = URDF_TEMPLATE.format(bad_type="continuous", bad_limit='<limit effort="1" velocity="3"/>')
    robot = load_robot_config(str(write_robot(tmp_path, TINY_JOINTS, urdf=urdf)))
    np.testing.assert_allclose(robot.limits.lower, [-1.0, -np.pi])
    np.testing.assert_allclose(robot.limits.upper, [1.0, np.pi])
    np.testing.assert_allclose(robot.limits.velocity, [2.0, 3.0])


@pytest.mark.reliability(
    "bad input",
    "malformed robot config (missing or wrong-typed fields)",
    "one-line UserError naming the field",
)
@pytest.mark.parametrize(
    "body,match",
    [
        ("joints:\n  - {name: torso_yaw, bone: Spine1, axis: y, gain: 2}\n", "unknown keys.*gain"),
        ("joints:\n  - {name: torso_yaw, source: Spine1_ry}\n", "needs either 'ik: <group>' or 'bone' and 'axis'"),
        ("joints:\n  - {name: torso_yaw, bone: Tail, axis: y}\n", "bone 'Tail'"),
        ("joints:\n  - {name: torso_yaw, bone: Head, relative_to: LeftArm, axis: y}\n", "ancestor"),
        ("joints:\n  - {name: torso_yaw, bone: Head, axis: w}\n", "axis must be x, y or z"),
        ("joints:\n  - {name: torso_yaw, bone: Head, axis: y, order: XXY}\n", "permutation"),
        ("joints:\n  - {name: torso_yaw, bone: Head, axis: y, scale: -1}\n", "sign: -1"),
        ("joints:\n  - {name: torso_yaw, bone: Head, axis: y, sign: 2}\n", "sign must be 1 or -1"),
        ("joints:\n  - {name: torso_yaw, bone: Head, axis: y}\n  - {name: torso_yaw, bone: Head, axis: x}\n",
         "listed twice"),
        ("joints:\n  - {name: l_elbow, ik: left_arm}\n", "no such group"),
        ("joints:\n  - {name: torso_yaw, ik: arm}\nik:\n  arm: {base_link: torso_link, shoulder_link: l_shoulder_link,"
         " elbow_link: l_forearm_link, wrist_link: l_hand_link, bones: [LeftArm, LeftForeArm, LeftHand]}\n",
         "not on the URDF chain"),
        ("joints:\n  - {name: l_elbow, ik: arm}\nik:\n  arm: {base_link: torso_link, shoulder_link: l_shoulder_link,"
         " elbow_link: r_forearm_link, wrist_link: l_hand_link, bones: [LeftArm, LeftForeArm, LeftHand]}\n",
         "'r_forearm_link' is not on the URDF chain"),
        ("joints:\n  - {name: l_elbow, ik: arm}\nik:\n  arm: {base_link: torso_link, shoulder_link: l_shoulder_link,"
         " elbow_link: l_forearm_link, wrist_link: l_hand_link, bones: [LeftForeArm, LeftArm, LeftHand]}\n",
         "ancestor"),
        ("joints:\n  - {name: torso_yaw, bone: Head, axis: y}\nsmoothing: {filter: kalman}\n", "one_euro"),
        ("joints:\n  - {name: torso_yaw, bone: Head, axis: y}\nfade: {fade_in: -1}\n", "fade_in"),
        ("joints:\n  - {name: torso_yaw, bone: Head, axis: y}\nspeed: 3\n", "unknown keys"),
    ],
)
def test_malformed_robot_config_is_a_one_line_user_error(tmp_path, body, match):
    user_error(write_robot(tmp_path, body), match)


@pytest.mark.reliability("bad input", "robot YAML that does not parse", "UserError naming the file")
@pytest.mark.parametrize(
    "text,match",
    [
        ("name: x\njoints: []\n", "'urdf'"),
        ("- just\n- a list\n", "mapping"),
        ("joints: [unclosed\n", "not valid YAML"),
    ],
)
def test_unreadable_robot_yaml_is_a_user_error(tmp_path, text, match):
    path = tmp_path / "robot.yaml"
    path.write_text(text)
    user_error(path, match)


@pytest.mark.reliability("bad input", "unknown robot name", "UserError listing the shipped robots")
def test_missing_robot_config_is_a_user_error_listing_the_shipped_robots():
    with pytest.raises(UserError, match="not found.*generic_humanoid, nao, unitree_g1"):
        load_robot_config("no_such_robot")


def test_mapping_bones_the_skeleton_lacks_is_a_value_error(robot):
    from dimgestor_ros.motion.skeleton import Bone, Skeleton

    tiny = Skeleton("tiny", (Bone("Hips", -1, (0, 1, 0)), Bone("Spine", 0, (0, 0.1, 0))))
    with pytest.raises(ValueError, match="Head"):
        JointMapper(robot, FPS, skeleton=tiny)


def test_mapper_reaches_a_held_target_after_the_fade_in(robot, mapper):
    mapper.reset()
    pose = neutral_pose().astype(float)
    commands = mapper.map(np.repeat(pose[None], 120, axis=0))  # 4 s: fade-in 1 s, then ample time to settle
    expected = np.clip(mapper.targets(pose[None])[0], robot.limits.lower, robot.limits.upper)
    np.testing.assert_allclose(commands[-1], expected, atol=1e-4)
    assert_within_limits(robot, robot.home, commands)
    # The fade starts from home: the first commands barely move.
    assert np.abs(commands[0] - robot.home).max() < 0.01


def test_chunked_stream_equals_one_call(mapper):
    rng = np.random.default_rng(3)
    poses = neutral_pose().astype(float) + np.cumsum(rng.normal(0, 0.05, (45, HUMANOID.num_dofs)), axis=0)
    mapper.reset()
    whole = mapper.map(poses)
    mapper.reset()
    chunks = np.concatenate([mapper.map(poses[a:b]) for a, b in ((0, 7), (7, 22), (22, 23), (23, 45))])
    np.testing.assert_allclose(chunks, whole, atol=1e-5)  # the IK stops at 1e-6 rad steps, batch by batch


@pytest.mark.reliability(
    "bad input",
    "NaN in the source motion",
    "the affected joints hold their last target; limits kept",
)
def test_nan_holds_the_last_target_of_the_joints_it_feeds(robot, mapper):
    mapper.reset()
    rng = np.random.default_rng(0)
    pose = neutral_pose().astype(float) + rng.normal(0.0, 0.2, HUMANOID.num_dofs)
    mapper.map(np.repeat(pose[None], 90, axis=0))
    target = np.clip(mapper.targets(pose[None])[0], robot.limits.lower, robot.limits.upper)
    # Whole frames of NaN: the robot stays on the last target (a hold shorter than fade.hold).
    held = mapper.map(np.full((10, HUMANOID.num_dofs), np.nan))
    np.testing.assert_allclose(held, np.broadcast_to(target, held.shape), atol=1e-3)
    # NaN in the head's rotation holds only the head joints; the arms follow the new pose.
    moved = pose.copy()
    moved[HUMANOID.dof_names.index("LeftForeArm_rz")] += 0.8
    moved[HUMANOID.dof_names.index("Head_ry")] = np.nan
    commands = mapper.map(np.repeat(moved[None], 60, axis=0))
    head = [robot.joint_names.index("head_yaw"), robot.joint_names.index("head_pitch")]
    np.testing.assert_allclose(commands[:, head], np.broadcast_to(target[head], (60, 2)), atol=1e-3)
    assert np.abs(commands[-1] - target).max() > 0.3


def test_idle_holds_then_fades_home_and_input_fades_back_in(robot, mapper):
    mapper.reset()
    pose = neutral_pose().astype(float)
    pose[HUMANOID.dof_names.index("LeftArm_rz")] = 0.0  # left arm out sideways
    mapper.map(np.repeat(pose[None], 90, axis=0))
    settled = mapper.last_command
    held = mapper.idle(int(robot.fade.hold * FPS))
    np.testing.assert_allclose(held, np.broadcast_to(settled, held.shape), atol=1e-6)
    going_home = mapper.idle(int((robot.fade.fade_out + 1.0) * FPS))
    np.testing.assert_allclose(going_home[-1], robot.home, atol=1e-6)
    assert_within_limits(robot, settled, np.concatenate([held, going_home]))
    back = mapper.map(np.repeat(pose[None], 90, axis=0))
    assert_within_limits(robot, robot.home, back)
    assert np.abs(back[0] - robot.home).max() < 0.01  # a fade in, not a jump
    np.testing.assert_allclose(back[-1], settled, atol=1e-4)


def test_fade_out_ends_still_at_home(robot, mapper):
    mapper.reset()
    mapper.map(np.repeat(neutral_pose()[None].astype(float), 60, axis=0))
    start = mapper.last_command
    tail = mapper.fade_out()
    assert_within_limits(robot, start, tail)
    np.testing.assert_allclose(tail[-1], robot.home, atol=1e-6)
    np.testing.assert_allclose(mapper.velocity, 0.0, atol=1e-6)


@pytest.mark.reliability(
    "bad input",
    "huge source motion after a reset",
    "every command within position and velocity limits",
)
def test_reset_to_a_given_command_then_huge_input_stays_within_limits(robot, mapper):
    mid = (robot.limits.lower + robot.limits.upper) / 2
    mapper.reset(mid)
    np.testing.assert_array_equal(mapper.last_command, mid)
    commands = mapper.map(np.full((20, HUMANOID.num_dofs), 1e6))
    assert_within_limits(robot, mid, commands)
