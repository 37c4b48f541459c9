"""Parameters of the running gesture node, set from another process over the real ROS 2 parameter services:
range, type and read-only checks, and an in-range update taking effect within one hop."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import rclpy
import rclpy.executors
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import DescribeParameters, SetParameters

pytestmark = pytest.mark.timeout(120)


def _value(kind: str, value) -> ParameterValue:
    if kind == "double":
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    if kind == "integer":
        return ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    if kind == "bool":
        return ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)


def _client_node(name: str):
    """(context, node, executor) of a client node in its own rclpy context, so tests do not share global state."""
    context = rclpy.context.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(name, context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    return context, node, executor


@pytest.fixture(scope="module")
def gesture_node_client():
    process = subprocess.Popen(
        [sys.executable, "-m", "dimgestor_ros.nodes.gesture_node", "--ros-args", "-r", "__node:=param_test_node",
         "-p", "audio_source:=file", "-p", "wait_for_subscribers:=0.0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    context, node, executor = _client_node("param_test_client")
    clients = {
        "set": node.create_client(SetParameters, "/param_test_node/set_parameters"),
        "describe": node.create_client(DescribeParameters, "/param_test_node/describe_parameters"),
    }
    deadline = time.monotonic() + 60
    while not all(c.service_is_ready() for c in clients.values()) and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.1)
    assert process.poll() is None, process.stderr.read().decode()[-2000:]

    def call(name: str, request):
        future = clients[name].call_async(request)
        end = time.monotonic() + 10
        while not future.done() and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        return future.result()

    yield call
    process.terminate()
    process.wait(timeout=20)
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)


@pytest.mark.reliability(
    "bad input",
    "out-of-range, wrong-type and read-only parameter updates on the running gesture node",
    "rejected with the reason (range, type, read-only); in-range updates accepted",
)
@pytest.mark.parametrize(
    "name, kind, value, accepted, reason",
    [
        ("amplitude", "double", 5.0, False, "out of range"),
        ("amplitude", "double", 1.5, True, ""),
        ("sampling_steps", "integer", 0, False, "out of range"),
        ("sampling_steps", "integer", 4, True, ""),
        ("style_blend", "double", 1.5, False, "out of range"),
        ("window_frames", "integer", 90, False, "read-only"),
        ("amplitude", "string", "big", False, "type"),
        ("smoothing", "double", 20.0, False, "out of range"),
        ("silence_threshold_db", "double", -30.0, True, ""),
        ("lookahead_frames", "integer", 2, False, "read-only"),
        ("autostart", "bool", False, False, "read-only"),
        ("overload_policy", "bool", False, False, "read-only"),
        ("min_sampling_steps", "integer", 0, False, "out of range"),
        ("min_sampling_steps", "integer", 3, True, ""),
        ("max_backlog", "double", 100.0, False, "out of range"),
        ("skip_backlog", "double", 0.25, True, ""),
        ("fade_time", "double", 0.5, True, ""),
    ],
)
def test_parameter_updates_are_checked_by_range_type_and_read_only(gesture_node_client, name, kind, value, accepted,
                                                                   reason):
    request = SetParameters.Request(parameters=[Parameter(name=name, value=_value(kind, value))])
    result = gesture_node_client("set", request).results[0]
    assert result.successful is accepted, result.reason
    assert reason.lower() in result.reason.lower()


def test_every_parameter_has_a_description(gesture_node_client):
    import yaml

    from conftest import REPO

    names = list(yaml.safe_load((REPO / "config" / "gesture.yaml").read_text())["gesture_node"]["ros__parameters"])
    described = gesture_node_client("describe", DescribeParameters.Request(names=names)).descriptors
    assert [d.name for d in described] == names
    assert all(len(d.description) > 10 for d in described)


@pytest.mark.timeout(180)
def test_in_range_update_takes_effect_within_one_hop(collector_factory):
    """amplitude 1 -> 0 -> 1 on a streaming node: every hop whose audio starts after the set-parameters response
    (stream time; its header.stamp) and that arrived before the next update is exactly the mean pose, every hop
    after the update back to 1 moves, and the hop received before the first update moved. The first hop at the
    mean starts at most one hop (15 frames, 0.5 s) after the response."""
    from trajectory_msgs.msg import JointTrajectory

    from ros_checks import stamp_s

    from dimgestor_ros.model.gesture_model import DiMGestor
    from dimgestor_ros.paths import default_weights_dir

    mean = DiMGestor.load(default_weights_dir()).pose_mean.numpy().astype(float)  # amplitude 0 publishes exactly this
    topic = "/amplitude_test/gesture_joints"  # not /gesture_joints: the module's other node publishes there
    collector = collector_factory({topic: JointTrajectory})
    process = subprocess.Popen(
        [sys.executable, "-m", "dimgestor_ros.nodes.gesture_node", "--ros-args", "-r", "__node:=amplitude_test_node",
         "-r", f"gesture_joints:={topic}",
         "-p", "audio_source:=file", "-p", "sampling_steps:=2",
         "-p", "num_threads:=1", "-p", "wait_for_subscribers:=10.0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    context, node, executor = _client_node("amplitude_test_client")
    client = node.create_client(SetParameters, "/amplitude_test_node/set_parameters")
    joints = collector.messages[topic]

    def wait_for(condition, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not condition() and time.monotonic() < end:
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            executor.spin_once(timeout_sec=0.05)
        assert condition(), f"timed out after {seconds} s; {len(joints)} hops received"

    def set_amplitude(value: float) -> tuple[float, float]:
        """(wall clock, monotonic) when the response arrived."""
        request = SetParameters.Request(parameters=[Parameter(name="amplitude", value=_value("double", value))])
        future = client.call_async(request)
        wait_for(future.done, 10)
        assert future.result().results[0].successful, future.result().results[0].reason
        return time.time(), time.monotonic()

    def last_stamp_end() -> float:
        return stamp_s(joints[-1].header.stamp) + (len(joints[-1].points) - 1) / 30.0 if joints else 0.0

    try:
        wait_for(client.service_is_ready, 60)
        wait_for(lambda: len(joints) >= 3, 60)
        moved_before = len(joints)
        zero_wall, zero_mono = set_amplitude(0.0)
        wait_for(lambda: last_stamp_end() >= zero_wall + 1.5, 30)
        one_wall, one_mono = set_amplitude(1.0)
        wait_for(lambda: stamp_s(joints[-1].header.stamp) >= one_wall + 1.0, 30)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)

    hops = [(stamp_s(msg.header.stamp), arrival, np.array([p.positions for p in msg.points]))
            for msg, arrival in zip(list(joints), collector.arrival[topic])]
    assert all(np.isfinite(poses).all() for _, _, poses in hops)

    def at_mean(poses) -> bool:
        return bool(np.all(poses == mean))

    assert not any(at_mean(poses) for _, _, poses in hops[:moved_before])
    zeroed = [(stamp, poses) for stamp, arrival, poses in hops if stamp >= zero_wall and arrival < one_mono]
    assert len(zeroed) >= 2 and all(at_mean(poses) for _, poses in zeroed)
    first_at_mean = min(stamp for stamp, _, poses in hops if at_mean(poses))
    assert first_at_mean - zero_wall <= 15 / 30.0 + 1e-3, first_at_mean - zero_wall
    restored = [poses for stamp, _, poses in hops if stamp >= one_wall]
    assert restored and not any(at_mean(poses) for poses in restored)
