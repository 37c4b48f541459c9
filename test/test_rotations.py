"""Rotation representations: each converts pose vectors both ways to the same rotations, and 6D/expmap have the
known values of textbook rotations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dimgestor_ros.motion.kinematics import forward_kinematics
from dimgestor_ros.motion.rotations import WIDTHS, matrix_from_6d, matrix_to_6d, poses_from, poses_to
from dimgestor_ros.motion.skeleton import HUMANOID, neutral_pose


def random_poses(frames: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    poses = np.repeat(neutral_pose()[None], frames, axis=0).astype(np.float64)
    poses[:, :3] += rng.normal(0, 0.1, (frames, 3))
    poses[:, 3:] = rng.uniform(-np.pi, np.pi, (frames, poses.shape[1] - 3))  # whole range, wraps included
    return poses


@pytest.mark.parametrize("representation", sorted(WIDTHS))
def test_round_trip_gives_the_same_joint_positions(representation):
    poses = random_poses()
    features = poses_to(HUMANOID, poses, representation)
    assert features.shape == (50, 3 + HUMANOID.num_bones * WIDTHS[representation])
    back = poses_from(HUMANOID, features, representation)
    # Euler numbers may differ past a singularity; the rotations, hence the joint positions, may not.
    np.testing.assert_allclose(forward_kinematics(HUMANOID, back), forward_kinematics(HUMANOID, poses), atol=1e-9)
    np.testing.assert_array_equal(back[:, :3], poses[:, :3])


def test_expmap_of_a_quarter_turn_about_z_is_half_pi_along_z():
    poses = np.zeros((1, HUMANOID.num_dofs))
    poses[0, 3 + 3 * 5] = np.pi / 2  # bone 5's first channel; every HUMANOID bone is ZXY, so that is Z
    expmap = poses_to(HUMANOID, poses, "expmap")[0, 3:].reshape(HUMANOID.num_bones, 3)
    np.testing.assert_allclose(expmap[5], [0, 0, np.pi / 2], atol=1e-12)
    np.testing.assert_allclose(np.delete(expmap, 5, axis=0), 0.0, atol=1e-12)


def test_6d_of_the_identity_is_the_first_two_unit_vectors():
    six = poses_to(HUMANOID, np.zeros((1, HUMANOID.num_dofs)), "6d")[0, 3:].reshape(HUMANOID.num_bones, 6)
    np.testing.assert_allclose(six, np.tile([1, 0, 0, 0, 1, 0], (HUMANOID.num_bones, 1)), atol=1e-12)


def test_6d_from_any_numbers_is_a_proper_rotation_and_keeps_an_exact_one():
    rng = np.random.default_rng(1)
    matrices = matrix_from_6d(rng.normal(size=(100, 6)))
    np.testing.assert_allclose(matrices @ np.swapaxes(matrices, 1, 2), np.broadcast_to(np.eye(3), (100, 3, 3)),
                               atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(matrices), 1.0, atol=1e-12)
    exact = Rotation.random(20, random_state=2).as_matrix()
    np.testing.assert_allclose(matrix_from_6d(matrix_to_6d(exact)), exact, atol=1e-12)


def test_wrong_shapes_and_names_are_refused():
    with pytest.raises(ValueError, match="representation must be one of"):
        poses_to(HUMANOID, np.zeros((1, HUMANOID.num_dofs)), "axis-angle")
    with pytest.raises(ValueError, match=r"poses must be \(frames, 63\)"):
        poses_to(HUMANOID, np.zeros((1, 60)), "6d")
    with pytest.raises(ValueError, match=r"6d features must be \(frames, 123\)"):
        poses_from(HUMANOID, np.zeros((1, 63)), "6d")
