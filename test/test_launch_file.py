"""launch/gesture.launch.py and dimgestor-launch describe the same nodes.

ROS 2's `launch` and `launch_ros` are not on PyPI (the PyPI package named `launch` is an unrelated project), so
they cannot be installed on these machines. This test therefore runs the real launch file against minimal
stand-ins of the few launch classes it uses, which record what the file asks for; on a full ROS 2 install,
`ros2 launch dimgestor_ros gesture.launch.py` evaluates the same code with the real classes.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import sys
import types

import pytest

from dimgestor_ros.errors import UserError
from dimgestor_ros.launch_spec import LAUNCH_ARGUMENTS, node_set, resolve_arguments
from dimgestor_ros.launcher import node_command, parse_launch_arguments

from conftest import REPO

LAUNCH_FILE = REPO / "launch" / "gesture.launch.py"


class _Recorder:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration:
    values: dict[str, str] = {}

    def __init__(self, name: str):
        self.name = name

    def perform(self, context) -> str:
        return context[self.name]


def _stand_in_modules() -> dict[str, types.ModuleType]:
    modules = {}
    for name in ("launch", "launch.actions", "launch.event_handlers", "launch.events", "launch.substitutions",
                 "launch_ros", "launch_ros.actions"):
        modules[name] = types.ModuleType(name)
    modules["launch"].LaunchDescription = lambda entities: list(entities)
    for cls in ("DeclareLaunchArgument", "EmitEvent", "OpaqueFunction", "RegisterEventHandler"):
        setattr(modules["launch.actions"], cls, type(cls, (_Recorder,), {}))
    modules["launch.event_handlers"].OnProcessExit = type("OnProcessExit", (_Recorder,), {})
    modules["launch.events"].Shutdown = type("Shutdown", (_Recorder,), {})
    modules["launch.substitutions"].LaunchConfiguration = _LaunchConfiguration
    modules["launch_ros.actions"].Node = type("Node", (_Recorder,), {})
    return modules


@pytest.fixture
def launch_description(monkeypatch):
    for name, module in _stand_in_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("gesture_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def _nodes_of(description, given: dict[str, str]):
    opaque = [e for e in description if type(e).__name__ == "OpaqueFunction"]
    assert len(opaque) == 1
    context = {a.name: given.get(a.name, a.default) for a in LAUNCH_ARGUMENTS}
    return opaque[0].kwargs["function"](context)


def test_launch_file_is_valid_python():
    ast.parse(LAUNCH_FILE.read_text())


def test_launch_file_declares_every_launch_argument_with_its_default(launch_description):
    declared = {e.args[0]: e.kwargs for e in launch_description if type(e).__name__ == "DeclareLaunchArgument"}
    assert list(declared) == [a.name for a in LAUNCH_ARGUMENTS]
    for argument in LAUNCH_ARGUMENTS:
        assert declared[argument.name]["default_value"] == argument.default
        assert declared[argument.name].get("choices") == (list(argument.choices) if argument.choices else None)
    assert {"audio_source", "audio_file", "robot", "params_file", "duration"} <= set(declared)


@pytest.mark.parametrize(
    "given",
    [{}, {"robot": "none", "duration": "5"}, {"audio_source": "file", "audio_file": "/tmp/x.wav", "duration": "2.5"},
     {"autostart": "false"}],
)
def test_launch_file_starts_the_same_nodes_as_dimgestor_launch(launch_description, given, tmp_path):
    actions = _nodes_of(launch_description, given)
    launch_nodes = [a.kwargs for a in actions if type(a).__name__ == "Node"]
    specs = node_set(resolve_arguments(parse_launch_arguments([f"{k}:={v}" for k, v in given.items()])))
    assert [n["name"] for n in launch_nodes] == [s.name for s in specs]
    for node, spec in zip(launch_nodes, specs):
        assert node["package"] == "dimgestor_ros"
        assert node["executable"] == spec.executable
        assert node["parameters"] == [str(spec.params_file), spec.overrides]
    # The launch ends when the gesture node ends, in both launchers.
    enders = [a for a in actions if type(a).__name__ == "RegisterEventHandler"]
    assert len(enders) == sum(spec.ends_launch for spec in specs) == 1


def test_launcher_runs_the_module_behind_each_installed_executable(tmp_path):
    """launch_ros runs lib/dimgestor_ros/<executable>; dimgestor-launch runs `python -m <module>`: the
    console-script entry points tie the two to the same code."""
    scripts = {
        ep.name: ep.value
        for ep in importlib.metadata.distribution("dimgestor_ros").entry_points
        if ep.group == "console_scripts"
    }
    for spec in node_set(resolve_arguments({})):
        assert scripts[spec.executable] == f"{spec.module}:main"
        command = node_command(spec, tmp_path / "overrides.yaml")
        assert command[1:3] == ["-m", spec.module]
        assert command[3:] == ["--ros-args", "-r", f"__node:={spec.name}", "--params-file", str(spec.params_file),
                               "--params-file", str(tmp_path / "overrides.yaml")]


def test_default_params_file_matches_the_parameters_the_nodes_declare():
    """config/gesture.yaml lists every declared parameter of each node and nothing else.

    Only names written as literals count: the retarget node's robot-config parameters pass through a helper
    (their defaults come from the robot YAML, so they are not in config/gesture.yaml).
    """
    import yaml

    params = yaml.safe_load((REPO / "config" / "gesture.yaml").read_text())
    for node_name in ("gesture_node", "retarget_node"):
        source = (REPO / "dimgestor_ros" / "nodes" / f"{node_name}.py").read_text()
        declared = {
            call.args[1].value
            for call in ast.walk(ast.parse(source))
            if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "declare"
            and isinstance(call.args[1], ast.Constant)
        }
        assert set(params[node_name]["ros__parameters"]) == declared, node_name



def test_autostart_argument_overrides_the_params_file_only_when_given():
    assert "autostart" not in node_set(resolve_arguments({}))[0].overrides  # the params file decides
    assert node_set(resolve_arguments({"autostart": "false"}))[0].overrides["autostart"] is False
    assert node_set(resolve_arguments({"autostart": "true"}))[0].overrides["autostart"] is True
    with pytest.raises(UserError, match="autostart:=maybe is not one of"):
        resolve_arguments({"autostart": "maybe"})
