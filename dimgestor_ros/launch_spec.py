"""The one description of the node set, read by launch/gesture.launch.py and by dimgestor-launch.

Keeping it here (plain Python, no launch imports) means the ROS 2 launch file and the pip-only launcher cannot
drift apart: both turn the same arguments into the same nodes, parameters files and overrides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from .audio.sources import AUDIO_SOURCE_KINDS
from .errors import UserError
from .paths import default_params_file, robot_config_file

PACKAGE = "dimgestor_ros"


@dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: str
    description: str
    choices: tuple[str, ...] | None = None


LAUNCH_ARGUMENTS: tuple[LaunchArgument, ...] = (
    LaunchArgument("audio_source", "auto", "Speech input: mic, file, topic, or auto (mic if present, else file).",
                   AUDIO_SOURCE_KINDS),
    LaunchArgument("audio_file", "", "Speech file for audio_source file; empty: the shipped demo clip."),
    LaunchArgument("robot", "generic_humanoid", "Robot config under config/robots/ (or a YAML path); 'none': no "
                   "retargeting node."),
    LaunchArgument("params_file", "", "Parameters YAML for all nodes; empty: the package's config/gesture.yaml."),
    LaunchArgument("duration", "0", "Seconds of audio to stream before stopping; 0: until the clip ends or Ctrl-C."),
    LaunchArgument("autostart", "", "true: the gesture node configures and activates itself; false: it waits "
                   "unconfigured for a lifecycle manager or 'ros2 lifecycle set'; empty: the params file's value "
                   "(true in config/gesture.yaml).", ("", "true", "false")),
)


@dataclass(frozen=True)
class NodeSpec:
    name: str  # node name, also the executable and the module under dimgestor_ros.nodes
    params_file: Path
    overrides: dict[str, object] = field(default_factory=dict)
    ends_launch: bool = False  # when this node exits, the whole launch stops

    @property
    def executable(self) -> str:
        return self.name

    @property
    def module(self) -> str:
        return f"{PACKAGE}.nodes.{self.name}"


def _shown(value: str) -> str:
    """An argument's value as typed, or repr() of it when it holds a newline or other unprintable character, so
    that the error stays one line."""
    return value if value.isprintable() else repr(value)


def _is_file(path: Path) -> bool:
    """Path.is_file(), False rather than OSError for a name the OS refuses (longer than 255 bytes, say)."""
    try:
        return path.is_file()
    except OSError:
        return False


def resolve_arguments(given: dict[str, str]) -> dict[str, str]:
    """Check launch arguments and fill in defaults; UserError names the bad one and the valid choices."""
    known = {argument.name: argument for argument in LAUNCH_ARGUMENTS}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise UserError(f"unknown launch argument(s) {', '.join(map(_shown, unknown))}; known: {', '.join(known)}")
    values = {name: given.get(name, argument.default) for name, argument in known.items()}
    for name, argument in known.items():
        if argument.choices and values[name] not in argument.choices:
            raise UserError(f"{name}:={_shown(values[name])} is not one of {', '.join(argument.choices)}")
    try:
        duration = float(values["duration"])
    except ValueError:
        duration = math.nan
    if not (duration >= 0 and math.isfinite(duration)):  # nan, inf and 1e999 parse as floats
        raise UserError(f"duration:={_shown(values['duration'])} must be a finite number of seconds >= 0")
    params = Path(values["params_file"]) if values["params_file"] else default_params_file()
    if not _is_file(params):
        raise UserError(f"params_file {_shown(str(params))} does not exist; give an existing YAML or leave it empty")
    values["params_file"] = str(params)
    robot = values["robot"]
    if robot != "none" and not _is_file(robot_config_file(robot)):
        raise UserError(f"robot {robot!r}: no config at {_shown(str(robot_config_file(robot)))}; use a name under "
                        "config/robots/ or none")
    return values


def node_set(arguments: dict[str, str]) -> list[NodeSpec]:
    """The nodes to start for resolved launch arguments."""
    params = Path(arguments["params_file"])
    gesture_overrides: dict[str, object] = {
        "audio_source": arguments["audio_source"],
        "duration": float(arguments["duration"]),
    }
    if arguments["autostart"]:
        gesture_overrides["autostart"] = arguments["autostart"] == "true"
    if arguments["audio_file"]:
        gesture_overrides["audio_file"] = arguments["audio_file"]
    nodes = [NodeSpec("gesture_node", params, gesture_overrides, ends_launch=True)]
    if arguments["robot"] != "none":
        nodes.append(NodeSpec("retarget_node", params, {"robot": arguments["robot"]}))
    return nodes
