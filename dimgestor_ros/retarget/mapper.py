"""Maps source skeleton motion onto robot joints, never outside the robot's position and velocity limits.

The mapper is stateful: it remembers the last command it gave, so velocity limits hold across chunk boundaries
and invalid input (NaN, missing DoF) holds the last safe command instead of passing through.
"""

from __future__ import annotations

import numpy as np

from .robot import RobotConfig


class JointMapper:
    def __init__(self, robot: RobotConfig, source_dof_names: list[str], frame_rate: float) -> None:
        missing = [joint.source for joint in robot.joints if joint.source not in source_dof_names]
        if missing:
            raise ValueError(f"robot {robot.name!r} maps source DoF {missing} that the skeleton does not have")
        self.robot = robot
        self.frame_rate = frame_rate
        self._source_index = np.array([source_dof_names.index(joint.source) for joint in robot.joints])
        self._scale = np.array([joint.scale for joint in robot.joints])
        self._offset = np.array([joint.offset for joint in robot.joints])
        self.last_command: np.ndarray = robot.home.copy()  # (J,)

    def reset(self, command: np.ndarray | None = None) -> None:
        self.last_command = self.robot.home.copy() if command is None else np.asarray(command, dtype=float).copy()

    def map(self, poses: np.ndarray) -> np.ndarray:
        """Source poses (N, D) -> robot joint positions (N, J), clamped and rate-limited frame by frame."""
        limits = self.robot.limits
        targets = poses[:, self._source_index] * self._scale + self._offset  # (N, J)
        max_step = limits.velocity / self.frame_rate
        out = np.empty_like(targets, dtype=float)
        command = self.last_command
        for i, target in enumerate(targets):
            target = np.where(np.isfinite(target), target, command)  # hold on invalid input
            target = np.clip(target, limits.lower, limits.upper)
            command = command + np.clip(target - command, -max_step, max_step)
            out[i] = command
        self.last_command = command
        return out
