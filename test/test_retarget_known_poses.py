"""Known source poses map to the robot joint angles worked out by hand from each URDF (issue 7, third acceptance
point).

The pose, built on the HUMANOID skeleton bone by bone (skeleton axes: X left, Y up, Z forward; robot axes,
REP-103: x forward, y left, z up):
- left arm raised forward: LeftArm rotated -pi/2 about Y takes its rest direction +X (sideways) to +Z (forward);
  the elbow bent by BEND = 1.0 rad upwards: LeftForeArm rotated +BEND about its Z (which is still the world's
  left-right-forward frame turned, so its +Y is up), so the forearm points cos(BEND) forward + sin(BEND) up.
  Robot directions: upper arm u = (1, 0, 0), forearm f = (cos BEND, 0, sin BEND).
- right arm hanging, elbow bent forward: RightArm rotated +pi/2 about Z takes -X to -Y (down); RightForeArm rotated
  +BEND about Y takes its -X (down now) towards +Z (forward): u = (0, 0, -1), f = (sin BEND, 0, -cos BEND).
- chest turned left: Spine1 yaw +0.2 about Y (robot: +0.2 about z, to the left).
- head turned left 0.3 and pitched down 0.2: Head = Ry(0.3) Rx(0.2) (yaw, then pitch); pitching about +X (left)
  takes the face (+Z) down, as pitching about the robot's +y takes x down: both +0.2.
The arm directions are measured in the chest's frame, so the chest's yaw does not change the arm angles.

The commands are checked after 5 s of the held pose (fade-in, smoothing and acceleration limits have settled).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from urdf_parser_py.urdf import URDF

from dimgestor_ros.motion.skeleton import HUMANOID
from dimgestor_ros.retarget.mapper import JointMapper
from dimgestor_ros.retarget.robot import load_robot_config

FPS = 30.0
BEND = 1.0
HALF_PI = np.pi / 2


def known_pose() -> np.ndarray:
    names = HUMANOID.dof_names
    pose = np.zeros(HUMANOID.num_dofs)
    pose[names.index("LeftArm_ry")] = -HALF_PI
    pose[names.index("LeftForeArm_rz")] = BEND
    pose[names.index("RightArm_rz")] = HALF_PI
    pose[names.index("RightForeArm_ry")] = BEND
    pose[names.index("Spine1_ry")] = 0.2
    head = 3 + 3 * HUMANOID.bone_names.index("Head")
    pose[head:head + 3] = Rotation.from_euler("YX", [0.3, 0.2]).as_euler(HUMANOID.bones[5].rotation_order)
    return pose


def settled_commands(robot_name: str) -> tuple[dict[str, float], object]:
    robot = load_robot_config(robot_name)
    commands = JointMapper(robot, FPS).map(np.repeat(known_pose()[None], int(5 * FPS), axis=0))
    return dict(zip(robot.joint_names, commands[-1])), robot


def check(got: dict[str, float], expected: dict[str, float], tolerance: float) -> None:
    wrong = {name: (round(got[name], 4), round(value, 4)) for name, value in expected.items()
             if abs(got[name] - value) > tolerance}
    assert not wrong, f"(got, expected) beyond {tolerance} rad: {wrong}"


def test_generic_humanoid():
    """Arms: pitch about y, roll about x, yaw about z, elbow about y; at zero the arm and forearm hang (-z).

    Upper arm u = Ry(pitch) Rx(roll) (0, 0, -1) = (-cos(roll) sin(pitch), sin(roll), -cos(roll) cos(pitch)).
    Left u = (1, 0, 0): roll 0, pitch -pi/2. Forearm f = Ry(-pi/2) Rz(yaw) Ry(elbow) (0, 0, -1)
    = (cos elbow, -sin elbow sin yaw, -sin elbow cos yaw) = (cos BEND, 0, sin BEND): elbow -BEND (its range is
    [-2.3, 0]), yaw 0. Right u = (0, 0, -1): pitch 0, roll 0; f = (-sin e cos y, -sin e sin y, -cos e)
    = (sin BEND, 0, -cos BEND): elbow -BEND, yaw 0. Torso and head take the bone angles with their signs.
    The 0.05 pull towards home and the solver leave < 0.01 rad.
    """
    got, _ = settled_commands("generic_humanoid")
    check(got, {"torso_yaw": 0.2, "torso_pitch": 0.0, "head_yaw": 0.3, "head_pitch": 0.2,
                "l_shoulder_pitch": -HALF_PI, "l_shoulder_roll": 0.0, "l_shoulder_yaw": 0.0, "l_elbow": -BEND,
                "r_shoulder_pitch": 0.0, "r_shoulder_roll": 0.0, "r_shoulder_yaw": 0.0, "r_elbow": -BEND,
                "l_wrist_yaw": 0.0, "r_wrist_yaw": 0.0}, 0.01)


def test_nao():
    """NAO: ShoulderPitch about y, ShoulderRoll about z, ElbowYaw about x, ElbowRoll about z; at zero the arm
    points forward (+x). Its elbow sits 15 mm beside the upper arm's axis (LElbowYaw origin (0.105, +-0.015, 0)),
    so the shoulder-to-elbow vector leans A = atan2(0.015, 0.105) = 0.1419 rad outwards at zero.

    Left u = Ry(p) Rz(r) (cos A, sin A, 0) = (1, 0, 0): p = 0, r = -A. Then the forearm in the elbow frame must be
    Rz(A) f = (cos A cos BEND, sin A cos BEND, sin BEND) = Rx(ey) Rz(er) (1, 0, 0)
    = (cos er, sin er cos ey, sin er sin ey): er = -acos(cos A cos BEND) (LElbowRoll bends negative),
    ey = atan2(sin BEND / sin er, sin A cos BEND / sin er).
    Right: u = Ry(p) Rz(r) (cos A, -sin A, 0) = (0, 0, -1): r = +A, p = +pi/2 (pitching down);
    the forearm in the elbow frame is Rz(-A) Ry(-pi/2) f = (cos A cos BEND, -sin A cos BEND, sin BEND):
    er = +acos(cos A cos BEND), ey = atan2(sin BEND / sin er, -sin A cos BEND / sin er).
    Head: HeadYaw about z, HeadPitch about y, the bone angles unchanged. Tolerance 0.01 rad.
    """
    a = np.arctan2(0.015, 0.105)
    roll = np.arccos(np.cos(a) * np.cos(BEND))
    left_er, right_er = -roll, roll
    left_ey = np.arctan2(np.sin(BEND) / np.sin(left_er), np.sin(a) * np.cos(BEND) / np.sin(left_er))
    right_ey = np.arctan2(np.sin(BEND) / np.sin(right_er), -np.sin(a) * np.cos(BEND) / np.sin(right_er))
    got, _ = settled_commands("nao")
    check(got, {"HeadYaw": 0.3, "HeadPitch": 0.2,
                "LShoulderPitch": 0.0, "LShoulderRoll": -a, "LElbowYaw": left_ey, "LElbowRoll": left_er,
                "RShoulderPitch": HALF_PI, "RShoulderRoll": a, "RElbowYaw": right_ey, "RElbowRoll": right_er}, 0.01)


def test_unitree_g1():
    """G1: shoulder pitch about y in a frame rolled by T = 0.27931 rad (the left shoulder's axis tilts up and out),
    roll about x in a frame rolled back by -0.27925, yaw about z, elbow about y; at zero the upper arm hangs and
    the forearm points forward (elbow pi/2 is a straight arm).

    Ideal geometry (elbow on the upper arm's axis, wrist on the forearm's): left u = Rx(T) Ry(p) Rx(r - T)
    (0, 0, -1) = (1, 0, 0) gives r = T, p = -pi/2; f = Rx(T) Ry(-pi/2) Rz(y) Ry(e) (1, 0, 0) = (cos BEND, 0,
    sin BEND) gives e = pi/2 - BEND and y = T (the yaw undoes the tilt). Right (tilt -T, undone by +T): u = (0, 0,
    -1) gives p = 0, r = 0; f = (sin BEND, 0, -cos BEND) gives e = pi/2 - BEND, y = 0.
    First-order corrections for the published offsets: the elbow sits 15.8 mm ahead of the shoulder over 183.7 mm
    (upper arm leans F = 0.0857 rad forward at zero: pitch +F) and 6.2 mm outwards (leans O = 0.034 rad out:
    left roll -O, right roll +O); the wrist sits 10 mm below the forearm's axis over 100 mm (W = 0.0997 rad down),
    so e = pi/2 - BEND - F - W. The remaining second-order coupling is < 0.03 rad, hence a 0.04 rad tolerance;
    the FK check below confirms the directions exactly.
    Waist: yaw about z from the chest's yaw, roll and pitch 0.
    """
    t, f, o, w = 0.27931, np.arctan2(0.015783, 0.1032 + 0.080518), np.arctan2(0.00624, 0.1837), np.arctan2(0.01, 0.1)
    elbow = HALF_PI - BEND - f - w
    got, _ = settled_commands("unitree_g1")
    check(got, {"waist_yaw_joint": 0.2, "waist_roll_joint": 0.0, "waist_pitch_joint": 0.0}, 0.01)
    check(got, {"left_shoulder_pitch_joint": -HALF_PI + f, "left_shoulder_roll_joint": t - o,
                "left_shoulder_yaw_joint": t, "left_elbow_joint": elbow,
                "right_shoulder_pitch_joint": f, "right_shoulder_roll_joint": o,
                "right_shoulder_yaw_joint": 0.0, "right_elbow_joint": elbow}, 0.04)


def _fk_points(urdf: URDF, values: dict[str, float], base: str, links: list[str]) -> list[np.ndarray]:
    """Positions of ``links`` in ``base``'s frame, by a forward kinematics written here from the URDF's numbers."""
    def transform(link: str) -> np.ndarray:
        if link == base:
            return np.eye(4)
        joint_name, parent = urdf.parent_map[link]
        joint = urdf.joint_map[joint_name]
        local = np.eye(4)
        local[:3, :3] = Rotation.from_euler("xyz", joint.origin.rpy).as_matrix()  # URDF rpy: fixed-axis x, y, z
        local[:3, 3] = joint.origin.xyz
        motion = np.eye(4)
        if joint.type != "fixed":
            motion[:3, :3] = Rotation.from_rotvec(np.asarray(joint.axis) * values.get(joint_name, 0.0)).as_matrix()
        return transform(parent) @ local @ motion
    return [transform(link)[:3, 3] for link in links]


@pytest.mark.parametrize("robot_name", ["generic_humanoid", "nao", "unitree_g1"])
def test_robot_arms_point_along_the_source_arms(robot_name):
    """Independent of the hand derivations: with the settled commands, the robot's own upper arms and forearms
    (from the URDF by the FK above) point along the source directions listed in the module docstring, within
    0.02 rad (except where a joint limit stops the arm, which this pose avoids)."""
    got, robot = settled_commands(robot_name)
    urdf = URDF.from_xml_string(robot.urdf_path.read_bytes())
    wanted = {"left_arm": ((1, 0, 0), (np.cos(BEND), 0, np.sin(BEND))),
              "right_arm": ((0, 0, -1), (np.sin(BEND), 0, -np.cos(BEND)))}
    for name, chain in robot.ik.items():
        s, e, w = _fk_points(urdf, got, chain.base_link, [chain.shoulder_link, chain.elbow_link, chain.wrist_link])
        for vector, target in zip((e - s, w - e), wanted[name]):
            angle = np.arccos(np.clip(vector @ np.asarray(target) / np.linalg.norm(vector), -1, 1))
            assert angle < 0.02, f"{robot_name} {name}: {angle:.3f} rad off"
