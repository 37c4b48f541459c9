"""Parameters of the running gesture node, set from another process over the real ROS 2 parameter services."""

from __future__ import annotations

import subprocess
import sys
import time

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
    return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)


@pytest.fixture(scope="module")
def gesture_node_client():
    process = subprocess.Popen(
        [sys.executable, "-m", "dimgestor_ros.nodes.gesture_node", "--ros-args", "-r", "__node:=param_test_node",
         "-p", "audio_source:=file", "-p", "wait_for_subscribers:=0.0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    context = rclpy.context.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("param_test_client", context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
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
