"""BVH reading/writing, forward kinematics, resampling and mirroring, on hand-made files and a real capture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dimgestor_ros.errors import UserError
from dimgestor_ros.motion.bvh import BvhMotion, read_bvh, write_bvh
from dimgestor_ros.motion.kinematics import forward_kinematics, mirror, mirror_partners, resample
from dimgestor_ros.motion.skeleton import HUMANOID, neutral_pose

REAL = Path(__file__).parent / "data" / "bvhtools_test2_60frames.bvh"

# A 3-bone arm: root with translation, an elbow with two rotations, a wrist that carries a Y translation channel
# (non-root position channel) and an End Site.
ARM = """HIERARCHY
ROOT Shoulder
{
  OFFSET 5 5 5
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Elbow
  {
    OFFSET 1 0 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    JOINT Wrist
    {
      OFFSET 0 0 1
      CHANNELS 4 Yposition Xrotation Yrotation Zrotation
      End Site
      {
        OFFSET 0 0.5 0
      }
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.0083333
0 2 0 90 0 0 90 0 90 0 90 0 0
1.5 -2 0.25 0 0 0 0 0 0 0.75 0 0 0
"""


def write_text(tmp_path: Path, text: str, name: str = "clip.bvh") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_read_keeps_hierarchy_channel_order_and_end_sites(tmp_path):
    motion = read_bvh(write_text(tmp_path, ARM))
    bones = motion.skeleton.bones
    assert [b.name for b in bones] == ["Shoulder", "Elbow", "Wrist"]
    assert [b.parent for b in bones] == [-1, 0, 1]
    assert bones[1].offset == (1.0, 0.0, 0.0)
    assert motion.skeleton.bone_channels[2] == ("Yposition", "Xrotation", "Yrotation", "Zrotation")
    assert bones[2].end_site == (0.0, 0.5, 0.0) and bones[0].end_site is None
    assert motion.frame_time == pytest.approx(0.0083333)
    assert motion.values.shape == (2, 13)
    assert motion.channel_names[:4] == ["Shoulder_tx", "Shoulder_ty", "Shoulder_tz", "Shoulder_rz"]
    assert not motion.fits_pose_layout()  # the wrist translates


def test_arm_forward_kinematics_matches_hand_computed_positions(tmp_path):
    motion = read_bvh(write_text(tmp_path, ARM))
    positions, quats = forward_kinematics(motion.skeleton, motion.values, degrees=True, return_rotations=True)
    # Frame 0: root translation (0, 2, 0) replaces its offset; root Rz90 turns +x into +y, so the elbow is at
    # (0, 2, 0) + (0, 1, 0). Elbow global = Rz90 * (Rz90 Rx0 Ry90) = Rz180 Ry90; Ry90 takes the wrist offset
    # (0, 0, 1) to (1, 0, 0) and Rz180 to (-1, 0, 0). (Extrinsic order would give (0, 0, 1) instead.)
    np.testing.assert_allclose(positions[0], [[0, 2, 0], [0, 3, 0], [-1, 3, 0]], atol=1e-12)
    # Wrist global = Rz180 Ry90 Rx90: local +y -> Rx90 -> +z -> Ry90 -> +x -> Rz180 -> -x.
    np.testing.assert_allclose(Rotation.from_quat(quats[0, 2]).apply([0, 1, 0]), [-1, 0, 0], atol=1e-12)
    # Frame 1: no rotation; the wrist's Yposition 0.75 replaces the y of its offset (0, 0, 1).
    np.testing.assert_allclose(positions[1], [[1.5, -2, 0.25], [2.5, -2, 0.25], [2.5, -1.25, 1.25]], atol=1e-12)


def test_forward_kinematics_in_radians_equals_degrees(tmp_path):
    motion = read_bvh(write_text(tmp_path, ARM))
    radians = motion.values.copy()
    is_rotation = np.array([name.split("_")[-1].startswith("r") for name in motion.channel_names])
    radians[:, is_rotation] = np.radians(radians[:, is_rotation])
    np.testing.assert_allclose(
        forward_kinematics(motion.skeleton, radians), forward_kinematics(motion.skeleton, motion.values, degrees=True)
    )


def test_humanoid_zero_rotations_put_the_hands_at_the_sum_of_offsets():
    pose = np.zeros((1, HUMANOID.num_dofs))
    pose[0, :3] = HUMANOID.bones[0].offset  # the root translation replaces the Hips offset
    positions = forward_kinematics(HUMANOID, pose)
    names = HUMANOID.bone_names
    # Hips (0, .95, 0) + Spine (0, .10, 0) + Spine1 (0, .14, 0) + Spine2 (0, .14, 0) + Shoulder (.04, .09, 0)
    # + Arm (.14, 0, 0) + ForeArm (.27, 0, 0) + Hand (.24, 0, 0); the right side mirrors x.
    np.testing.assert_allclose(positions[0, names.index("LeftHand")], [0.69, 1.42, 0.0], atol=1e-6)
    np.testing.assert_allclose(positions[0, names.index("RightHand")], [-0.69, 1.42, 0.0], atol=1e-6)


def test_neutral_pose_hangs_the_hands_below_the_shoulders():
    names = HUMANOID.bone_names
    positions = forward_kinematics(HUMANOID, neutral_pose()[None])[0]
    for side in ("Left", "Right"):
        assert positions[names.index(f"{side}Hand"), 1] < positions[names.index(f"{side}Shoulder"), 1] - 0.4
        # the elbows bend forward (the character faces +Z): the hand is in front of the elbow
        assert positions[names.index(f"{side}Hand"), 2] > positions[names.index(f"{side}ForeArm"), 2] + 0.03


def test_round_trip_is_lossless_for_non_root_translation_and_end_sites(tmp_path):
    first = read_bvh(write_text(tmp_path, ARM))
    write_bvh(first, tmp_path / "again.bvh")
    second = read_bvh(tmp_path / "again.bvh")
    assert second.skeleton.bones == first.skeleton.bones
    assert second.frame_time == first.frame_time
    assert np.abs(second.values - first.values).max() <= 1e-6


def test_real_capture_reads_with_expected_shape():
    motion = read_bvh(REAL)
    assert motion.skeleton.num_bones == 22
    assert motion.skeleton.bone_names[:2] == ["Hips", "LeftUpLeg"]
    assert motion.num_frames == 60
    assert motion.frame_time == pytest.approx(1 / 30, abs=1e-6)
    assert motion.values.shape == (60, 6 + 21 * 3)
    assert motion.values[0, :3].tolist() == [193.614899, 90.217430, 358.243408]


def test_real_capture_round_trip_is_lossless_and_stable(tmp_path):
    first = read_bvh(REAL)  # CRLF line endings, trailing spaces
    write_bvh(first, tmp_path / "a.bvh")
    second = read_bvh(tmp_path / "a.bvh")
    assert second.skeleton.bones == first.skeleton.bones
    assert second.skeleton.bone_channels == first.skeleton.bone_channels
    assert second.frame_time == first.frame_time
    assert np.abs(second.values - first.values).max() <= 1e-6
    write_bvh(second, tmp_path / "b.bvh")
    assert (tmp_path / "b.bvh").read_text() == (tmp_path / "a.bvh").read_text()


def test_real_capture_forward_kinematics_gives_a_person_sized_skeleton():
    motion = read_bvh(REAL)
    positions = forward_kinematics(motion.skeleton, motion.values, degrees=True)  # (F, B, 3) centimetres
    assert np.isfinite(positions).all()
    names = motion.skeleton.bone_names
    toes = [names.index("LeftToe"), names.index("RightToe")]
    height = positions[:, names.index("Head"), 1] - positions[:, toes, 1].min(axis=1)
    assert ((height > 140) & (height < 200)).all(), height  # Y up, head joint above toes: 1.4-2.0 m
    for child, parent, length in (("LeftForeArm", "LeftArm", 33.000046), ("LeftHand", "LeftForeArm", 25.200014)):
        bone = np.linalg.norm(positions[:, names.index(child)] - positions[:, names.index(parent)], axis=-1)
        np.testing.assert_allclose(bone, length, rtol=1e-6)  # rotations keep each bone's length


def test_pose_vectors_from_a_capture_drive_the_same_kinematics_in_metres():
    motion = read_bvh(REAL)
    poses = motion.to_poses(unit_scale=0.01)
    skeleton = motion.project_skeleton(unit_scale=0.01)
    assert poses.shape == (60, skeleton.num_dofs)
    assert skeleton.dof_names[:4] == ["Hips_tx", "Hips_ty", "Hips_tz", "Hips_rz"]
    np.testing.assert_allclose(
        forward_kinematics(skeleton, poses),
        forward_kinematics(motion.skeleton, motion.values, degrees=True) * 0.01,
        atol=1e-5,
    )


def test_pose_vectors_written_as_bvh_read_back_to_the_same_poses(tmp_path):
    poses = np.stack([neutral_pose(), neutral_pose() * 0.5])
    write_bvh(BvhMotion.from_poses(HUMANOID, poses, frame_time=1 / 30), tmp_path / "gesture.bvh")
    motion = read_bvh(tmp_path / "gesture.bvh")
    assert motion.frame_time == 1 / 30
    assert motion.project_skeleton(0.01).dof_names == HUMANOID.dof_names
    np.testing.assert_allclose(motion.to_poses(0.01), poses, atol=1e-6)


@pytest.mark.reliability(
    "bad input",
    "BVH with translation channels on a non-root joint",
    "UserError when converting to pose vectors",
)
def test_pose_conversion_rejects_a_translating_non_root_joint(tmp_path):
    motion = read_bvh(write_text(tmp_path, ARM))
    with pytest.raises(UserError, match="do not fit the pose layout"):
        motion.to_poses(0.01)


@pytest.mark.reliability(
    "bad input",
    "malformed BVH (not BVH, no MOTION, unknown channel, truncated, extra lines, zero frames, non-numeric, "
    "short rows, bad OFFSET, stray brace)",
    "UserError naming the file, the line and the problem",
)
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("just some text\n", r"not a BVH file \(it does not start with HIERARCHY\)"),
        (ARM.split("MOTION")[0], "no MOTION section"),
        (
            ARM.replace("CHANNELS 3 Zrotation Xrotation Yrotation", "CHANNELS 3 Zrotation Xrotation Wiggle"),
            r"line 9: unknown channel name 'Wiggle'",
        ),
        (ARM.replace("Frames: 2", "Frames: 3"), r"'Frames: 3' but 2 frame lines follow \(the file is truncated\)"),
        (ARM.replace("Frames: 2", "Frames: 1"), r"'Frames: 1' but 2 frame lines follow \(the file has extra lines\)"),
        (ARM.split("Frames")[0] + "Frames: 0\nFrame Time: 0.01\n", "line 22: the file has zero frames"),
        (ARM.replace("1.5 -2", "1.5 abc"), r"line 25: non-numeric value 'abc'"),
        (ARM.replace("0 0 0.75 0 0 0\n", "0 0 0.75\n"), "line 25: 10 values but the hierarchy declares 13 channels"),
        (ARM.replace("    OFFSET 0 0 1\n", "    OFFSET 0 zero 1\n"), "line 12: an OFFSET value must be a number"),
        (ARM.replace("MOTION", "}\nMOTION"), "line 21: unexpected '}' after the root joint"),
    ],
    ids=["not BVH", "no MOTION", "unknown channel", "truncated", "extra lines", "zero frames", "non-numeric value",
         "short frame row", "non-numeric OFFSET", "stray brace"],
)
def test_malformed_files_raise_user_errors_naming_file_and_line(tmp_path, text, message):
    path = write_text(tmp_path, text)
    with pytest.raises(UserError, match=message) as caught:
        read_bvh(path)
    assert str(path) in str(caught.value)


@pytest.mark.reliability("bad input", "missing BVH file", "UserError 'no such BVH file'")
def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such BVH file"):
        read_bvh(tmp_path / "nope.bvh")


def test_resampling_at_a_divisor_rate_keeps_every_nth_frame():
    motion = read_bvh(REAL)
    motion = BvhMotion(motion.skeleton, 1 / 30, motion.values)  # the file rounds 1/30 to 0.033333
    slow = resample(motion, 10)
    assert slow.num_frames == 20 and slow.frame_time == pytest.approx(0.1)
    np.testing.assert_allclose(
        forward_kinematics(slow.skeleton, slow.values, degrees=True),
        forward_kinematics(motion.skeleton, motion.values[::3], degrees=True),
        atol=1e-6,
    )


def test_resampling_slerps_across_the_180_degree_wrap(tmp_path):
    # Rz goes from 170 to -170 degrees: 20 degrees through 180. Interpolating the numbers would pass through 0.
    text = "HIERARCHY\nROOT A\n{\nOFFSET 0 0 0\nCHANNELS 3 Zrotation Xrotation Yrotation\n}\n" \
           "MOTION\nFrames: 2\nFrame Time: 0.1\n170 0 0\n-170 0 0\n"
    fast = resample(read_bvh(write_text(tmp_path, text)), 20)
    assert fast.num_frames == 3
    assert np.abs(fast.values[1, 0]) == pytest.approx(180.0)
    assert fast.values[2, 0] == pytest.approx(190.0)  # unwrapped, so the curve stays continuous


def test_mirrored_motion_is_the_reflection_with_left_and_right_swapped():
    motion = read_bvh(REAL)
    partners = mirror_partners(motion.skeleton)
    assert motion.skeleton.bone_names[partners[motion.skeleton.bone_names.index("LeftHand")]] == "RightHand"
    mirrored = mirror(motion, axis="x")
    expected = forward_kinematics(motion.skeleton, motion.values, degrees=True)[:, partners] * [-1, 1, 1]
    actual = forward_kinematics(mirrored.skeleton, mirrored.values, degrees=True)
    np.testing.assert_allclose(actual, expected, atol=1e-6)
    twice = mirror(mirrored, axis="x")
    assert twice.skeleton.bones == motion.skeleton.bones
    np.testing.assert_array_equal(twice.values, motion.values)


def test_mirroring_a_symmetric_pose_returns_it():
    pose = neutral_pose()
    motion = BvhMotion.from_poses(HUMANOID, pose[None], frame_time=1 / 30)
    np.testing.assert_allclose(mirror(motion).to_poses(0.01)[0], pose, atol=1e-6)


def test_mirroring_needs_left_right_pairs(tmp_path):
    text = ARM.replace("JOINT Elbow", "JOINT LeftElbow")
    with pytest.raises(UserError, match="no counterpart 'RightElbow'"):
        mirror(read_bvh(write_text(tmp_path, text)))
