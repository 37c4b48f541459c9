"""Shared plumbing of the ROS nodes: parameter declaration with ranges, QoS, and a clean process lifecycle."""

from __future__ import annotations

import sys
from collections.abc import Callable

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from ..errors import UserError

# Joint topics are RELIABLE: a best-effort publisher reaches no reliable subscriber (JointTrajectoryController).
JOINTS_QOS = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)


def parameter_descriptor(
    description: str,
    default,
    value_range: tuple[float, float] | None = None,
    read_only: bool = False,
    choices: tuple[str, ...] | None = None,
) -> ParameterDescriptor:
    """A descriptor with the description (and the choices, if any) and an integer or floating-point range."""
    if choices:
        description = f"{description} One of: {', '.join(choices)}."
    descriptor = ParameterDescriptor(description=description, read_only=read_only)
    if value_range is not None:
        lo, hi = value_range
        if isinstance(default, bool):
            raise TypeError("a bool parameter takes no range")
        if isinstance(default, int):
            descriptor.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
        else:
            descriptor.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
    return descriptor


def declare(
    node: Node,
    name: str,
    default,
    description: str,
    value_range: tuple[float, float] | None = None,
    read_only: bool = False,
    choices: tuple[str, ...] | None = None,
):
    """Declare a parameter with its description and range, so bad values are refused by ROS itself; a bad value
    from a parameters file is a UserError (one line) naming the parameter."""
    descriptor = parameter_descriptor(description, default, value_range, read_only, choices)
    try:
        value = node.declare_parameter(name, default, descriptor).value
    except ParameterException as error:
        raise UserError(f"parameter {name}: {' '.join(str(error).split())}") from None
    if choices and value not in choices:
        raise UserError(f"parameter {name}={value!r} is not one of {', '.join(choices)}")
    return value


def run_node(make_node: Callable[[], Node], args: list[str] | None = None) -> int:
    """Create and spin a node until it finishes or is interrupted; user errors end it with one line and code 2."""
    rclpy.init(args=args if args is not None else sys.argv)
    node = None
    code = 0
    try:
        node = make_node()
        # A node that sets `finished` (the gesture node at the end of its clip) ends the process.
        while rclpy.ok() and not getattr(node, "finished", False):
            rclpy.spin_once(node, timeout_sec=0.1)
        code = getattr(node, "exit_code", 0)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        code = 0
    except _rclpy.RCLError:
        # SIGINT/SIGTERM shut the context down between rclpy.ok() and the executor's wait: rclpy then raises
        # RCLError ("the given context is not valid") instead of ExternalShutdownException (seen about once in ten
        # SIGTERMs). The same clean shutdown; any other RCLError is a real failure.
        if rclpy.ok():
            raise
        code = getattr(node, "exit_code", 0) if node is not None else 0
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return code
