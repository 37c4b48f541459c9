"""A colcon build of the repository (msg/ and the ament_python package) with the pip-installed ROS 2."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from trajectory_msgs.msg import JointTrajectory

from conftest import REPO, VENV_BIN

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def colcon_install(tmp_path_factory):
    base = tmp_path_factory.mktemp("colcon")
    venv = str(VENV_BIN.parent)
    env = dict(os.environ, AMENT_PREFIX_PATH=venv, CMAKE_PREFIX_PATH=venv, PATH=f"{VENV_BIN}:{os.environ['PATH']}")
    # In a workspace the same build is: colcon build --base-paths src src/dimgestor_ros/msg
    result = subprocess.run(
        [str(VENV_BIN / "colcon"), "--log-base", str(base / "log"), "build", "--base-paths", str(REPO),
         str(REPO / "msg"), "--build-base", str(base / "build"), "--install-base", str(base / "install")],
        cwd=base, env=env, capture_output=True, text=True, timeout=200,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 packages finished" in result.stdout
    return base / "install"


def test_colcon_installs_what_ros2_launch_looks_for(colcon_install):
    share = colcon_install / "dimgestor_ros" / "share" / "dimgestor_ros"
    for relative in ("package.xml", "launch/gesture.launch.py", "config/gesture.yaml",
                     "config/robots/generic_humanoid.yaml", "config/robots/generic_humanoid.urdf",
                     "weights/dimgestor_default/model.safetensors", "weights/dimgestor_default/config.json"):
        assert (share / relative).is_file(), relative
    index = colcon_install / "dimgestor_ros" / "share" / "ament_index" / "resource_index" / "packages"
    assert (index / "dimgestor_ros").is_file()
    for executable in ("gesture_node", "retarget_node"):
        path = colcon_install / "dimgestor_ros" / "lib" / "dimgestor_ros" / executable
        assert path.is_file() and os.access(path, os.X_OK), executable
    assert (colcon_install / "dimgestor_msgs" / "share" / "dimgestor_msgs" / "msg" / "SkeletonChunk.msg").is_file()


def test_colcon_installed_gesture_node_runs_from_its_share_directory(colcon_install, collector_factory, tmp_path):
    """The installed executable finds config and weights through the ament index (not the source checkout)."""
    install = colcon_install / "dimgestor_ros"
    site = next((install / "lib").glob("python3*/site-packages"))
    env = dict(
        os.environ,
        AMENT_PREFIX_PATH=f"{install}{os.pathsep}{VENV_BIN.parent}",
        PYTHONPATH=str(site),
    )
    collector = collector_factory({"/gesture_joints": JointTrajectory})
    probe = subprocess.run(
        [sys.executable, "-c", "import dimgestor_ros.paths as p; print(p.share_dir()); print(p.__file__)"],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    share, module_file = probe.stdout.split()
    assert share == str(install / "share" / "dimgestor_ros")
    assert module_file.startswith(str(install))
    result = subprocess.run(
        [str(install / "lib" / "dimgestor_ros" / "gesture_node"), "--ros-args", "-p", "audio_source:=file",
         "-p", "duration:=2.0", "-p", "realtime:=false"],
        env=env, capture_output=True, text=True, timeout=90, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    time.sleep(1.0)
    assert sum(len(m.points) for m in collector.messages["/gesture_joints"]) >= 0.9 * 60
