"""Property test (issue 7, first acceptance point): whatever source motion comes in, random, adversarial or
invalid, and however it is chunked or interrupted, every command sent to every shipped robot is finite, inside the
URDF position limits (as tightened by its config) and moves each joint by at most velocity_limit x dt per frame,
starting from the robot's home pose and across chunk boundaries.

Hypothesis draws the structure (robot, sequence of chunk kinds and lengths, pauses, and adversarial single values:
NaN, +-inf, huge, subnormal, negative zero); a seeded numpy generator fills the rest of each chunk. Example
counts are modest so that the whole file runs in well under 30 s on two cores."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dimgestor_ros.motion.skeleton import HUMANOID, neutral_pose
from dimgestor_ros.retarget.mapper import JointMapper
from dimgestor_ros.retarget.robot import load_robot_config

FPS = 30.0
ROBOTS = ("generic_humanoid", "nao", "unitree_g1")
KINDS = ("smooth", "huge", "sign_flips", "jumps", "nan", "pause")
D = HUMANOID.num_dofs


@pytest.fixture(scope="module")
def mappers():
    """One mapper per shipped robot, built once (IK chains take a moment) and reset per example."""
    return {name: JointMapper(load_robot_config(name), FPS) for name in ROBOTS}


def chunk(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, D) source poses of one adversarial kind."""
    base = neutral_pose().astype(float)
    if kind == "smooth":  # a plausible gesture: a random walk around the rest pose
        return base + np.cumsum(rng.normal(0.0, 0.15, (n, D)), axis=0)
    if kind == "huge":  # far beyond any angle, both signs, up to the float range
        return rng.choice([-1.0, 1.0], (n, D)) * 10.0 ** rng.uniform(3, 300, (n, D))
    if kind == "sign_flips":  # every DoF flips sign each frame: the largest possible frame-to-frame jumps
        values = rng.uniform(1.0, np.pi, D) * rng.choice([-1.0, 1.0], D)
        return values * (-1.0) ** np.arange(n)[:, None]
    if kind == "jumps":  # held poses with sudden jumps to unrelated poses
        poses = np.repeat(rng.uniform(-np.pi, np.pi, (1, D)), n, axis=0)
        for start in rng.integers(0, n, 2):
            poses[start:] = rng.uniform(-np.pi, np.pi, D)
        return poses
    poses = rng.normal(0.0, 2.0, (n, D))  # "nan": invalid values scattered, sometimes whole frames
    poses[rng.random((n, D)) < 0.2] = np.nan
    poses[rng.random((n, D)) < 0.05] = np.inf
    poses[rng.random((n, D)) < 0.05] = -np.inf
    poses[rng.random(n) < 0.2] = np.nan
    return poses


adversarial_values = st.sampled_from([np.nan, np.inf, -np.inf, 1e308, -1e308, 5e-324, -0.0, 1e9, -7.5])
motion = st.fixed_dictionaries({
    "robot": st.sampled_from(ROBOTS),
    "seed": st.integers(0, 2**32 - 1),
    "chunks": st.lists(st.tuples(st.sampled_from(KINDS), st.integers(1, 12)), min_size=1, max_size=4),
    "pokes": st.lists(st.tuples(st.integers(0, 47), st.integers(0, D - 1), adversarial_values), max_size=6),
})


@settings(max_examples=60, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=motion)
def test_every_command_is_within_position_and_velocity_limits(mappers, case):
    mapper = mappers[case["robot"]]
    robot = mapper.robot
    lim = robot.limits
    mapper.reset()
    rng = np.random.default_rng(case["seed"])
    commands = [robot.home[None]]  # the robot stands at home before the first command
    frame = 0
    for kind, n in case["chunks"]:
        if kind == "pause":  # the stream stops (stale input): hold, then fade home
            commands.append(mapper.idle(n * 4))
            continue
        poses = chunk(kind, n, rng)
        for at, dof, value in case["pokes"]:
            if frame <= at < frame + n:
                poses[at - frame, dof] = value
        frame += n
        out = mapper.map(poses)
        assert out.shape == (n, len(robot.joints))
        commands.append(out)
    commands.append(mapper.fade_out(max_seconds=1.0))
    path = np.concatenate(commands)  # (frames + 1, J)
    assert np.isfinite(path).all()
    assert (path >= lim.lower).all() and (path <= lim.upper).all(), "a command left the position limits"
    steps = np.abs(np.diff(path, axis=0))
    assert (steps <= lim.velocity / FPS + 1e-9).all(), f"a step beyond velocity x dt: {steps.max(axis=0)}"
