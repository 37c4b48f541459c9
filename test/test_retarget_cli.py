"""`dimgestor retarget IN.bvh --robot NAME -o OUT.csv|.json [--plot OUT.png]`: the files have a time column in
seconds and one column per robot joint named as in its URDF, hold the same commands as the JointMapper, start and
end at the robot's home pose, stay within the limits; a bad robot name or output is a one-line error with a
non-zero exit."""

from __future__ import annotations

import csv
import json
import subprocess

import numpy as np
import pytest
from urdf_parser_py.urdf import URDF

from dimgestor_ros.cli import main
from dimgestor_ros.motion.bvh import BvhMotion, write_bvh
from dimgestor_ros.motion.skeleton import HUMANOID, neutral_pose
from dimgestor_ros.retarget.robot import load_robot_config

from conftest import VENV_BIN

FPS = 30.0


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """2 s on the humanoid in centimetres, as `dimgestor generate` writes: a waving left arm, a nodding head."""
    t = np.arange(int(2 * FPS)) / FPS
    poses = np.repeat(neutral_pose()[None].astype(float), len(t), axis=0)
    names = HUMANOID.dof_names
    poses[:, names.index("LeftArm_rz")] += 0.8 * np.sin(2 * np.pi * t)
    poses[:, names.index("Head_rx")] += 0.2 * np.sin(np.pi * t)
    path = tmp_path_factory.mktemp("clip") / "wave.bvh"
    write_bvh(BvhMotion.from_poses(HUMANOID, poses, 1.0 / FPS), path)
    return path, len(t)


def urdf_movable_joints(robot) -> set[str]:
    urdf = URDF.from_xml_string(robot.urdf_path.read_bytes())
    return {joint.name for joint in urdf.joints if joint.type != "fixed"}


@pytest.mark.parametrize("robot_name", ["generic_humanoid", "nao", "unitree_g1"])
def test_csv_has_time_then_the_robots_urdf_joints(tmp_path, clip, robot_name, capsys):
    bvh, frames = clip
    out = tmp_path / "out.csv"
    assert main(["retarget", str(bvh), "--robot", robot_name, "-o", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    robot = load_robot_config(robot_name)
    with out.open() as handle:
        rows = list(csv.reader(handle))
    header, values = rows[0], np.array(rows[1:], dtype=float)
    assert header == ["time", *robot.joint_names]
    assert set(header[1:]) <= urdf_movable_joints(robot)
    assert len(values) > frames  # the clip, then the fade back to home
    np.testing.assert_allclose(values[:, 0], np.arange(len(values)) / FPS, atol=1e-6)
    positions = values[:, 1:]
    lim = robot.limits
    assert (positions >= lim.lower - 1e-6).all() and (positions <= lim.upper + 1e-6).all()
    assert (np.abs(np.diff(positions, axis=0)) <= lim.velocity / FPS + 2e-6).all()
    np.testing.assert_allclose(positions[-1], robot.home, atol=1e-5)
    assert np.abs(positions[0] - robot.home).max() < 0.02
    assert np.ptp(positions, axis=0).max() > 0.3  # the wave reaches the robot


def test_json_holds_the_same_columns_with_units_and_limits(tmp_path, clip):
    bvh, _ = clip
    csv_path, json_path, plot = tmp_path / "out.csv", tmp_path / "out.json", tmp_path / "curves.png"
    assert main(["retarget", str(bvh), "--robot", "nao", "-o", str(csv_path)]) == 0
    assert main(["retarget", str(bvh), "--robot", "nao", "-o", str(json_path), "--plot", str(plot)]) == 0
    data = json.loads(json_path.read_text())
    robot = load_robot_config("nao")
    assert data["robot"] == "nao" and data["frame_rate"] == FPS
    assert data["joint_names"] == robot.joint_names == list(data["positions"])
    assert set(data["units"].values()) == {"rad"}
    assert data["limits"]["LElbowRoll"] == {"lower": -1.54462, "upper": -0.0349066, "velocity": 7.19407}
    with csv_path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(data["time"])
    for name in robot.joint_names:
        np.testing.assert_allclose([float(r[name]) for r in rows], data["positions"][name], atol=2e-6)
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.reliability(
    "bad input",
    "dimgestor retarget with an unknown robot, a wrong output or plot suffix",
    "exit 2, one line, no output written",
)
@pytest.mark.parametrize("args,match", [
    (["--robot", "pepper", "-o", "OUT.csv"], "robot config not found.*generic_humanoid, nao, unitree_g1"),
    (["--robot", "nao", "-o", "OUT.txt"], "must end in .csv or .json"),
    (["--robot", "nao", "-o", "OUT.csv", "--plot", "OUT.gif"], "must end in .png"),
], ids=["unknown robot", "output not csv or json", "plot not png"])
def test_bad_arguments_are_one_line_errors_with_exit_code_2(tmp_path, clip, capsys, args, match):
    bvh, _ = clip
    args = [a.replace("OUT", str(tmp_path / "out")) for a in args]
    assert main(["retarget", str(bvh), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dimgestor: error:") and "\n" not in err
    assert __import__("re").search(match, err), err
    assert not list(tmp_path.glob("out.*"))


@pytest.mark.reliability(
    "bad input",
    "dimgestor retarget given a BVH of another skeleton",
    "exit 2 naming the skeleton",
)
def test_bvh_on_another_skeleton_is_a_user_error(tmp_path, clip, capsys):
    bvh, _ = clip
    other = tmp_path / "other.bvh"
    other.write_text(bvh.read_text().replace("LeftForeArm", "LeftElbow"))
    assert main(["retarget", str(other), "--robot", "nao", "-o", str(tmp_path / "x.csv")]) == 2
    assert "is not 'dimgestor_humanoid'" in capsys.readouterr().err


def test_console_script_exits_non_zero_on_a_bad_robot(tmp_path, clip):
    bvh, _ = clip
    result = subprocess.run([str(VENV_BIN / "dimgestor"), "retarget", str(bvh), "--robot", "no_such_robot",
                             "-o", str(tmp_path / "x.csv")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "robot config not found" in result.stderr and "Traceback" not in result.stderr
