"""Robot commands against the robot's URDF limits: the one check the soak's monitor and the tests both use.

A robot must never be sent a position outside its URDF limits, a velocity beyond its velocity limit, or two
consecutive points further apart than that velocity allows in the time between them, whatever the input (the
retargeting node's limiter guarantees this; :class:`LimitCheck` is the independent witness). It reads
``trajectory_msgs/JointTrajectory`` messages, or anything shaped like them (``joint_names``; ``points[k]`` with
``positions``, ``velocities``, ``time_from_start.sec`` / ``.nanosec``), so it needs neither rclpy nor a ROS graph,
and it checks messages one at a time, keeping running counts: the soak checks an hour of them as they arrive.

The limits are the URDF's own (``RobotConfig.urdf_limits``), not the robot YAML's possibly tighter ones: the YAML
limits are what the limiter aims for, the URDF's what the robot must never leave.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .robot import RobotConfig

# Positions are compared with an absolute 1e-9 (rad or m): the retargeter clips in float64 and the message carries
# float64, so a command at a limit arrives exactly at it. Velocities and position steps get a relative 1e-6 on top:
# time_from_start is in whole nanoseconds, so one frame of 1/30 s is rounded by up to 0.5 ns (1.5e-8 of it), and
# the velocities sent are central differences of the positions on that grid. The node's JTC rules (jtc.py) use the
# same two.
LIMIT_ABS_TOLERANCE = 1e-9
LIMIT_REL_TOLERANCE = 1e-6
MAX_LINES = 100  # description lines kept by default (all violations are counted): an hour's stream stays small


def _seconds(duration) -> float:
    return duration.sec + duration.nanosec * 1e-9


@dataclass
class LimitCheck:
    """Running counts of robot commands outside the URDF limits, with a description line per violation.

    Kinds: ``position`` (a non-finite position or one outside [lower, upper], per joint and point),
    ``velocity_sent`` (a non-finite velocity or one beyond the limit), ``speed`` (a step between consecutive points
    larger than the velocity limit allows in their time), ``wrong_joints`` (a message whose joint set is not the
    robot's; its points are not checked) and ``time_not_increasing`` (a time_from_start not after the previous
    point's; the JTC rejects such a message). Joint names may come in any order: each message is mapped by name.
    """

    joint_names: list[str]
    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray
    max_lines: int | None = MAX_LINES  # None: keep every line
    messages: int = 0
    points: int = 0
    commands: int = 0  # joint positions checked (points x joints)
    position: int = 0
    velocity_sent: int = 0
    speed: int = 0
    wrong_joints: int = 0
    time_not_increasing: int = 0
    worst: dict[str, float] = field(default_factory=dict)  # largest ratio to the velocity limit (1.0: at it)
    lines: list[str] = field(default_factory=list)

    @classmethod
    def for_robot(cls, robot: str | RobotConfig, max_lines: int | None = MAX_LINES) -> LimitCheck:
        """The check for a robot config name or a RobotConfig (read by load_robot_config), on its URDF limits."""
        from .robot import load_robot_config

        config = load_robot_config(robot) if isinstance(robot, str) else robot
        hard = config.urdf_limits or config.limits
        return cls(list(config.joint_names), np.asarray(hard.lower, float), np.asarray(hard.upper, float),
                   np.asarray(hard.velocity, float), max_lines=max_lines)

    @property
    def violations(self) -> int:
        return self.position + self.velocity_sent + self.speed + self.wrong_joints + self.time_not_increasing

    def check(self, msg) -> int:
        """Check one JointTrajectory and add it to the counts; returns the number of violations found in it."""
        m = self.messages
        self.messages += 1
        names = list(msg.joint_names)
        if Counter(names) != Counter(self.joint_names):
            missing = [name for name in self.joint_names if name not in names]
            unknown = [name for name in names if name not in self.joint_names]
            repeated = sorted(name for name, count in Counter(names).items() if count > 1)
            return self._count("wrong_joints", [()], lambda: f"message {m}: joints {names} are not the robot's "
                                                             f"(missing {missing}, unknown {unknown}, "
                                                             f"repeated {repeated})")
        n = len(names)
        order = [names.index(name) for name in self.joint_names]
        q, q_sent = self._columns([point.positions for point in msg.points], order)
        v, v_sent = self._columns([point.velocities for point in msg.points], order)
        t = np.array([_seconds(point.time_from_start) for point in msg.points], dtype=float)
        self.points += len(q)
        self.commands += q.size
        where = f"message {m} point"
        found = 0

        # the lists themselves: one position per joint, velocities empty or one per joint (as the JTC requires)
        found += self._count("position", [(k,) for k in np.flatnonzero(q_sent != n)],
                             lambda k: f"{where} {k}: {q_sent[k]} positions for {n} joints")
        found += self._count("velocity_sent", [(k,) for k in np.flatnonzero((v_sent != n) & (v_sent != 0))],
                             lambda k: f"{where} {k}: {v_sent[k]} velocities for {n} joints")

        full = (q_sent == n)[:, None]
        outside = (q < self.lower - LIMIT_ABS_TOLERANCE) | (q > self.upper + LIMIT_ABS_TOLERANCE)
        bad_q = full & (~np.isfinite(q) | outside)
        found += self._count("position", np.argwhere(bad_q),
                             lambda k, j: f"{where} {k}: {self.joint_names[j]} at {q[k, j]:.6f} outside "
                                          f"[{self.lower[j]:.6f}, {self.upper[j]:.6f}]")

        sent = (v_sent == n)[:, None]
        bound = self.velocity * (1 + LIMIT_REL_TOLERANCE) + LIMIT_ABS_TOLERANCE
        found += self._count("velocity_sent", np.argwhere(sent & (~np.isfinite(v) | (np.abs(v) > bound))),
                             lambda k, j: f"{where} {k}: {self.joint_names[j]} velocity {v[k, j]:.6f} beyond "
                                          f"{self.velocity[j]:.6f}")
        ratio = np.abs(v[sent[:, 0]]) / self.velocity
        self._worst("velocity_sent_over_limit", ratio)

        if len(q) > 1:
            dt = np.diff(t)
            found += self._count("time_not_increasing", [(k + 1,) for k in np.flatnonzero(~(dt > 0))],
                                 lambda k: f"{where} {k}: time_from_start does not increase "
                                           f"({t[k - 1]:.9f} -> {t[k]:.9f} s)")
            increasing = (dt > 0)[:, None]
            allowed = self.velocity * np.where(increasing, dt[:, None], 0.0)
            step = np.abs(np.diff(q, axis=0))
            bad_s = increasing & (step > allowed * (1 + LIMIT_REL_TOLERANCE) + LIMIT_ABS_TOLERANCE)
            found += self._count("speed", np.argwhere(bad_s),
                                 lambda k, j: f"{where} {k + 1}: {self.joint_names[j]} moved {step[k, j]:.6f} in "
                                              f"{dt[k]:.4f} s, more than its velocity limit "
                                              f"{self.velocity[j]:.6f}/s allows")
            self._worst("speed_between_points_over_limit",
                        (step / np.maximum(allowed, 1e-12))[increasing[:, 0]])
        return found

    def summary(self) -> dict:
        """The counts as the soak's summary JSON writes them (``robot_limits``; its keys are the soak's schema)."""
        return {"points_checked": self.points, "commands_checked": self.commands, "out_of_limits": self.violations,
                "position": self.position, "velocity_sent": self.velocity_sent, "speed_between_points": self.speed,
                "wrong_joint_names": self.wrong_joints, "largest_ratio_to_velocity_limit": dict(self.worst)}

    @staticmethod
    def _columns(rows: Sequence[Sequence[float]], order: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """(points, joints) in the robot's joint order, NaN where a point's list is not one value per joint; and
        each point's list length."""
        lengths = np.array([len(row) for row in rows], dtype=int)
        out = np.full((len(rows), len(order)), np.nan)
        for k, row in enumerate(rows):
            if lengths[k] == len(order):
                out[k] = np.asarray(row, dtype=float)[order]
        return out, lengths

    def _count(self, kind: str, indices, describe: Callable[..., str]) -> int:
        """Add len(indices) violations of ``kind``; describe them while there is room for lines."""
        setattr(self, kind, getattr(self, kind) + len(indices))
        self._add(indices, describe)
        return len(indices)

    def _add(self, indices, describe: Callable[..., str]) -> None:
        """Lines for the first violations; formatted only while there is room (a broken stream has many)."""
        room = len(indices) if self.max_lines is None else max(0, self.max_lines - len(self.lines))
        self.lines.extend(describe(*(int(i) for i in index)) for index in list(indices)[:room])

    def _worst(self, key: str, ratios: np.ndarray) -> None:
        """The largest ratio to the velocity limit seen, over finite values (NaN is counted as a violation)."""
        ratios = ratios[np.isfinite(ratios)]
        if ratios.size:
            self.worst[key] = max(self.worst.get(key, 0.0), float(ratios.max()))
