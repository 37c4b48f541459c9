"""ros2 launch dimgestor_ros gesture.launch.py [audio_source:=...] [audio_file:=...] [robot:=...]
[params_file:=...] [duration:=...] [autostart:=true|false]

The node set comes from dimgestor_ros.launch_spec, the same description dimgestor-launch uses on pip-only
installs, so both start the same nodes with the same parameters.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from dimgestor_ros.launch_spec import LAUNCH_ARGUMENTS, PACKAGE, node_set, resolve_arguments


def _nodes(context):
    given = {argument.name: LaunchConfiguration(argument.name).perform(context) for argument in LAUNCH_ARGUMENTS}
    actions = []
    for spec in node_set(resolve_arguments(given)):
        node = Node(
            package=PACKAGE,
            executable=spec.executable,
            name=spec.name,
            parameters=[str(spec.params_file), spec.overrides],
            output="screen",
        )
        actions.append(node)
        if spec.ends_launch:
            actions.append(RegisterEventHandler(OnProcessExit(target_action=node, on_exit=[EmitEvent(event=Shutdown())])))
    return actions


def generate_launch_description():
    arguments = [
        DeclareLaunchArgument(
            argument.name,
            default_value=argument.default,
            description=argument.description,
            **({"choices": list(argument.choices)} if argument.choices else {}),
        )
        for argument in LAUNCH_ARGUMENTS
    ]
    return LaunchDescription(arguments + [OpaqueFunction(function=_nodes)])
