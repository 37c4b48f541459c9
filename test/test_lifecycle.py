"""The gesture node as a ROS 2 managed (lifecycle) node, driven from another process through the real
lifecycle_msgs services (what `ros2 lifecycle set` and lifecycle managers call)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from trajectory_msgs.msg import JointTrajectory

from dimgestor_ros.motion.skeleton import HUMANOID
from ros_checks import assert_valid_trajectories, stamp_s

pytestmark = pytest.mark.timeout(180)

FPS = 30.0


def _skeleton_chunk():
    from dimgestor_msgs.msg import SkeletonChunk

    return SkeletonChunk


GESTURE_NODE = ("-m", "dimgestor_ros.nodes.gesture_node")


def start_gesture_node(name: str, log: Path, *params: str, env: dict[str, str] | None = None,
                       program: Sequence[str] = GESTURE_NODE) -> subprocess.Popen:
    """gesture_node as its own process, its topics under /<name>/ so no other node of this domain is heard.

    ``env``: the process's environment (e.g. one pointing at a PulseAudio daemon); ``program``: the Python
    arguments that run the node (test_faults.py runs it through a script that injects a fault into its model)."""
    remaps = [f"{topic}:=/{name}/{topic.lstrip('/')}" for topic in ("gesture_joints", "gesture_skeleton",
                                                                   "/diagnostics")]
    command = [sys.executable, *program, "--ros-args", "-r", f"__node:={name}"]
    for remap in remaps:
        command += ["-r", remap]
    for param in ("num_threads:=1", "sampling_steps:=2", *params):
        command += ["-p", param]
    with open(log, "w") as log_file:
        return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)


class Lifecycle:
    """Clients of a node's lifecycle services on the collector's node (spun by the collector's thread)."""

    def __init__(self, collector, node_name: str, process: subprocess.Popen, log: Path) -> None:
        self.process, self.log = process, log
        self.change_state = collector.node.create_client(ChangeState, f"/{node_name}/change_state")
        self.get_state = collector.node.create_client(GetState, f"/{node_name}/get_state")
        self.wait(lambda: self.change_state.service_is_ready() and self.get_state.service_is_ready(), 60)
        # "Ready" means the request reached the server; the reply goes back on a route DDS discovers on its own,
        # and a reply sent before that route exists is lost. A second lets discovery finish.
        time.sleep(1.0)

    def wait(self, condition, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not condition() and time.monotonic() < end:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            time.sleep(0.02)
        assert condition(), f"timed out after {seconds} s: {self.log.read_text()[-2000:]}"

    def call(self, client, request, seconds: float = 30):
        future = client.call_async(request)
        self.wait(future.done, seconds)
        return future.result()

    def state(self) -> str:
        for _ in range(3):  # idempotent: a lost reply is simply asked again
            future = self.get_state.call_async(GetState.Request())
            end = time.monotonic() + 5
            while not future.done() and time.monotonic() < end:
                time.sleep(0.02)
            if future.done():
                return future.result().current_state.label
        raise AssertionError(f"no reply from get_state: {self.log.read_text()[-2000:]}")

    def set(self, transition_id: int) -> bool:
        """One transition; True on SUCCESS."""
        return self.call(self.change_state, ChangeState.Request(transition=Transition(id=transition_id))).success


def _values(message) -> dict[str, str]:
    return {kv.key: kv.value for kv in message.status[0].values}


def _poses(messages) -> np.ndarray:
    return np.array([point.positions for msg in messages for point in msg.points])


def test_managed_node_publishes_only_while_active_and_releases_on_cleanup(tmp_path, collector_factory):
    """autostart false: nothing on /gesture_joints or /gesture_skeleton while unconfigured or inactive; motion
    after activate; nothing after deactivate; a second activate continues the motion from its last pose, stamped
    after the pause; cleanup releases model and audio (reported on /diagnostics) and a new configure works;
    shutdown ends the process with 0."""
    name = "lifecycle_test"
    joints, skeleton, diagnostics = (f"/{name}/{t}" for t in ("gesture_joints", "gesture_skeleton", "diagnostics"))
    collector = collector_factory({joints: JointTrajectory, skeleton: _skeleton_chunk(), diagnostics: DiagnosticArray})
    log = tmp_path / "node.log"
    process = start_gesture_node(name, log, "audio_source:=file", "autostart:=false", "wait_for_subscribers:=10.0")
    received, chunks, reports = (collector.messages[t] for t in (joints, skeleton, diagnostics))
    try:
        node = Lifecycle(collector, name, process, log)
        assert node.state() == "unconfigured"
        node.wait(lambda: len(reports) >= 2, 10)
        assert _values(reports[-1])["lifecycle_state"] == "unconfigured" and _values(reports[-1])["weights"] == "none"
        assert received == [] and chunks == []

        assert node.set(Transition.TRANSITION_CONFIGURE) and node.state() == "inactive"
        time.sleep(1.5)
        assert received == [] and chunks == []  # configured, not active: silent
        assert _values(reports[-1])["lifecycle_state"] == "inactive" and _values(reports[-1])["weights"] != "none"

        assert node.set(Transition.TRANSITION_ACTIVATE) and node.state() == "active"
        node.wait(lambda: len(received) >= 4, 30)
        assert node.set(Transition.TRANSITION_DEACTIVATE) and node.state() == "inactive"
        time.sleep(0.5)  # what was published before the response may still be on its way
        first_run = len(received)
        assert len(chunks) == first_run
        time.sleep(2.0)
        assert len(received) == first_run and len(chunks) == first_run  # deactivated: silent

        assert node.set(Transition.TRANSITION_ACTIVATE)
        node.wait(lambda: len(received) >= first_run + 3, 30)
        assert node.set(Transition.TRANSITION_DEACTIVATE)
        assert node.set(Transition.TRANSITION_CLEANUP) and node.state() == "unconfigured"
        cleaned_up = len(reports)
        node.wait(lambda: len(reports) > cleaned_up, 10)
        assert {k: _values(reports[-1])[k] for k in ("lifecycle_state", "weights", "audio_source")} == {
            "lifecycle_state": "unconfigured", "weights": "none", "audio_source": "none"}

        second_run = len(received)
        assert node.set(Transition.TRANSITION_CONFIGURE) and node.set(Transition.TRANSITION_ACTIVATE)
        node.wait(lambda: len(received) >= second_run + 2, 30)  # reconfigured after cleanup: a new stream
        shutdown = node.change_state.call_async(
            ChangeState.Request(transition=Transition(id=Transition.TRANSITION_ACTIVE_SHUTDOWN)))
        assert process.wait(timeout=30) == 0, log.read_text()[-3000:]
        assert not shutdown.done() or shutdown.result().success
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    before, after = list(received[:first_run]), list(received[first_run:second_run])
    assert_valid_trajectories(before, HUMANOID.dof_names, FPS)  # each activation: contiguous stamps
    assert_valid_trajectories(after, HUMANOID.dof_names, FPS)
    assert_valid_trajectories(received[second_run:], HUMANOID.dof_names, FPS)
    pause = stamp_s(after[0].header.stamp) - (stamp_s(before[-1].header.stamp) + (len(before[-1].points) - 1) / FPS)
    assert pause > 1.0, pause  # stamps are audio time: the motion after the pause is stamped after it
    # The second activation continues the motion: the step across the pause is no larger than the largest step
    # inside any published hop.
    inside = max(np.abs(np.diff(_poses([msg]), axis=0)).max() for msg in before + after)
    across = np.abs(_poses(after)[0] - _poses(before)[-1]).max()
    assert across <= inside, (across, inside)
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize(
    "params, reason",
    [
        (["weights:={missing}"], "weights folder not found: {missing}"),
        (["audio_source:=mic", "mic_device:=no_such_microphone"], "(no audio input device found|PortAudio library)"),
    ],
    ids=["nonexistent weights folder", "no such microphone"],
)
@pytest.mark.reliability("bad input", "configure with a missing weights folder or microphone name", "one logged "
                         "line naming the reason, FAILURE, the process stays up for the next attempt")
def test_configure_failure_is_one_logged_line_and_the_node_stays_alive(tmp_path, collector_factory, params, reason):
    import re

    missing = str(tmp_path / "no_such_weights")
    name = "failing_configure_test"
    collector = collector_factory({f"/{name}/gesture_joints": JointTrajectory})
    log = tmp_path / "node.log"
    process = start_gesture_node(name, log, "autostart:=false", *[p.format(missing=missing) for p in params])
    try:
        node = Lifecycle(collector, name, process, log)
        for _ in range(2):  # a manager may retry: each attempt fails the same way, the process lives on
            assert node.set(Transition.TRANSITION_CONFIGURE) is False
            assert node.state() == "unconfigured"
            assert process.poll() is None
        time.sleep(0.5)  # the log line reaches the file
        errors = [line for line in log.read_text().splitlines() if "configure failed" in line]
        assert len(errors) == 2, log.read_text()
        expected = r"\[ERROR\].*configure failed: " + reason.format(missing=re.escape(missing))
        assert re.search(expected, errors[0]), errors
        assert "Traceback" not in log.read_text()
        node.change_state.call_async(  # shutdown ends the process, maybe before its response arrives
            ChangeState.Request(transition=Transition(id=Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)))
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_autostart_node_is_active_at_once_and_publishes(tmp_path, collector_factory):
    """The default (autostart true) needs no lifecycle manager: active and publishing by itself, as before."""
    name = "autostart_test"
    joints = f"/{name}/gesture_joints"
    collector = collector_factory({joints: JointTrajectory})
    log = tmp_path / "node.log"
    process = start_gesture_node(name, log, "audio_source:=file", "wait_for_subscribers:=10.0")
    try:
        node = Lifecycle(collector, name, process, log)
        assert node.state() == "active"
        node.wait(lambda: len(collector.messages[joints]) >= 3, 30)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert_valid_trajectories(collector.messages[joints], HUMANOID.dof_names, FPS)
