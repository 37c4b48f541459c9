"""Maps source skeleton motion onto robot joints, never outside the robot's position and velocity limits.

Per frame: targets (bone components and arm IK, see :mod:`.sources` and :mod:`.ik`) -> non-finite targets hold
the joint's last valid target -> clip to the position limits -> blend with the fade anchor (home at start, the held
pose after a gap) -> One-Euro smoothing -> limiter (position, velocity, acceleration). The mapper is stateful so
that limits, smoothing and fades carry across chunk boundaries: a stream cut into chunks gives the same commands
as one call with the whole motion.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..motion.skeleton import HUMANOID, Skeleton
from .filters import FadeConfig, JointLimiter, OneEuroFilter, SmoothingConfig, smoothstep
from .robot import JointLimits, RobotConfig
from .sources import SourceFrames, arm_directions, bone_component


class JointMapper:
    def __init__(self, robot: RobotConfig, frame_rate: float, skeleton: Skeleton = HUMANOID) -> None:
        if not frame_rate > 0:
            raise ValueError(f"frame_rate must be positive, got {frame_rate}")
        missing = sorted({j.bone.bone for j in robot.joints if j.bone} - set(skeleton.bone_names))
        if missing:
            raise ValueError(f"robot {robot.name!r} maps bones {missing} that skeleton {skeleton.name!r} does not have")
        self.robot = robot
        self.skeleton = skeleton
        self.frame_rate = float(frame_rate)
        self.dt = 1.0 / self.frame_rate
        names = robot.joint_names
        lim = robot.limits
        self._solvers = []  # (IK solver, indices of its joints in the robot's joint order)
        for group, chain in robot.ik.items():
            from .ik import ArmIK  # imports torch and pytorch-kinematics: only for robots with IK

            index = [i for i, joint in enumerate(robot.joints) if joint.ik == group]
            solver = ArmIK(robot.urdf_path, chain, [names[i] for i in index], lim.lower[index], lim.upper[index],
                           robot.home[index])
            self._solvers.append((solver, chain, np.array(index)))
        self.limiter = JointLimiter(lim.lower, lim.upper, lim.velocity, lim.acceleration, self.frame_rate, robot.home)
        self.smoother = OneEuroFilter(robot.smoothing, self.frame_rate, robot.home)
        # What the limits and the hold did, for diagnostics; reset() leaves them counting.
        self.counters = {
            "frames_held": 0,  # frames without any usable input (idle, fade) or holding some joints' last target
            "joints_held": 0,  # joint-frames holding their last target because their input was NaN or infinite
            "position_clipped": 0,  # joint-frames whose target lay outside the position limits
            "velocity_clipped": 0,  # joint-frames whose step to the target was cut to the velocity limit
        }
        self.reset()

    # -- state -------------------------------------------------------------------------------------------------
    def reset(self, command: np.ndarray | None = None) -> None:
        """Start over at ``command`` (default: home), standing still, fading in to the next motion."""
        start = self.robot.home if command is None else np.asarray(command, dtype=float)
        start = np.clip(np.where(np.isfinite(start), start, self.robot.home), self.robot.limits.lower,
                        self.robot.limits.upper)
        self.limiter.reset(start)
        self.smoother.reset(start)
        self._held = start.copy()  # (J,) last valid target per joint
        self._blended = start.copy()  # (J,) last fade-blended target
        self._anchor = start.copy()  # (J,) what a fade starts from (fade in) or goes to (fade out: home)
        self._goal = start.copy()  # (J,) what a fade goes to
        self._weight = 0.0  # fade position: 0 = anchor, 1 = goal
        self._fading_out = False
        self._idle_frames = 1  # > 0: the next motion frame starts a fade in

    @property
    def last_command(self) -> np.ndarray:
        return self.limiter.position.copy()

    @property
    def velocity(self) -> np.ndarray:
        return self.limiter.velocity.copy()

    @property
    def fading_out(self) -> bool:
        """Whether input stopped long enough (``fade.hold``) that the commands are fading to home."""
        return self._fading_out

    @property
    def at_home(self) -> bool:
        """Faded out completely: standing still at home (what :meth:`fade_out` ends with)."""
        return (self._fading_out and self._weight <= 0.0
                and np.allclose(self.limiter.position, self.robot.home, atol=1e-6)
                and np.allclose(self.limiter.velocity, 0.0, atol=1e-6))

    # -- runtime tuning ----------------------------------------------------------------------------------------
    def set_gains(self, smoothing: SmoothingConfig | None = None, fade: FadeConfig | None = None) -> None:
        """Replace the smoothing filter's or the fades' settings from the next frame on (state carries over)."""
        changes = {}
        if smoothing is not None:
            changes["smoothing"] = smoothing
            self.smoother.config = smoothing
        if fade is not None:
            changes["fade"] = fade
        if changes:
            self.robot = dataclasses.replace(self.robot, **changes)

    def set_limits(self, lower: np.ndarray, upper: np.ndarray, velocity: np.ndarray) -> None:
        """New position and velocity limits (J,) each, from the next frame on; never looser than the URDF.

        Raises ValueError naming the joint when a limit is looser than the URDF's, leaves no range, or would put
        the home pose or the current command outside (the joint could only get back inside by a jump).
        """
        lower, upper, velocity = (np.array(a, dtype=float).reshape(-1) for a in (lower, upper, velocity))
        names, old = self.robot.joint_names, self.robot.limits
        bound = self.robot.urdf_limits or old
        position = self.limiter.position
        for i, name in enumerate(names):
            checks = (
                (lower[i] >= bound.lower[i] - 1e-12,
                 f"lower limit {lower[i]:g} is below the URDF's {bound.lower[i]:g}"),
                (upper[i] <= bound.upper[i] + 1e-12,
                 f"upper limit {upper[i]:g} is above the URDF's {bound.upper[i]:g}"),
                (0 < velocity[i] <= bound.velocity[i] + 1e-12,
                 f"velocity limit {velocity[i]:g} must be > 0 and at most the URDF's {bound.velocity[i]:g}"),
                (lower[i] < upper[i], f"lower limit {lower[i]:g} must stay below upper limit {upper[i]:g}"),
                (lower[i] <= self.robot.home[i] <= upper[i],
                 f"the home position {self.robot.home[i]:g} would be outside [{lower[i]:g}, {upper[i]:g}]"),
                (lower[i] <= position[i] <= upper[i],
                 f"the current command {position[i]:g} would be outside [{lower[i]:g}, {upper[i]:g}]; change it "
                 "when the joint is inside the new range"),
            )
            for ok, reason in checks:
                if not (ok and np.isfinite([lower[i], upper[i], velocity[i]]).all()):
                    raise ValueError(f"joint {name}: {reason}")
        limits = JointLimits(lower, upper, velocity, old.acceleration)
        self.robot = dataclasses.replace(self.robot, limits=limits)
        self.limiter.lower, self.limiter.upper, self.limiter.max_velocity = lower.copy(), upper.copy(), velocity.copy()
        for solver, _, index in self._solvers:
            solver.set_bounds(lower[index], upper[index])

    # -- mapping -----------------------------------------------------------------------------------------------
    def targets(self, poses: np.ndarray) -> np.ndarray:
        """Source poses (N, D) -> raw robot joint targets (N, J): no limits, no state; NaN where input is invalid."""
        poses = np.asarray(poses, dtype=np.float64)
        if poses.ndim != 2 or poses.shape[1] != self.skeleton.num_dofs:
            raise ValueError(f"poses must be (frames, {self.skeleton.num_dofs}), got {poses.shape}")
        out = np.full((len(poses), len(self.robot.joints)), np.nan)
        if not len(poses):
            return out
        frames = SourceFrames(self.skeleton, poses)
        for i, joint in enumerate(self.robot.joints):
            if joint.bone is not None:
                out[:, i] = bone_component(frames, joint.bone)
        for solver, chain, index in self._solvers:
            upper, fore, _ = arm_directions(frames, chain)
            out[:, index] = solver.solve(upper, fore)
        return out

    def map(self, poses: np.ndarray) -> np.ndarray:
        """Source poses (N, D) -> robot commands (N, J), one per frame, within every limit."""
        targets = self.targets(poses)
        out = np.empty_like(targets)
        lim = self.robot.limits
        for i, target in enumerate(targets):
            valid = np.isfinite(target)
            if not valid.any():  # nothing usable in this frame: as if no input came
                out[i] = self._idle_step()
                continue
            if not valid.all():
                self.counters["frames_held"] += 1
                self.counters["joints_held"] += int((~valid).sum())
            self.counters["position_clipped"] += int((valid & ((target < lim.lower) | (target > lim.upper))).sum())
            self._held = np.where(valid, np.clip(target, lim.lower, lim.upper), self._held)
            if self._idle_frames > 0 or self._fading_out:  # resuming: fade from where we are to the motion
                self._anchor, self._weight, self._fading_out = self._blended.copy(), 0.0, False
            self._idle_frames = 0
            fade = self.robot.fade.fade_in
            self._weight = 1.0 if fade <= 0 else min(1.0, self._weight + self.dt / fade)
            self._blended = self._anchor + smoothstep(self._weight) * (self._held - self._anchor)
            out[i] = self._command(self._blended)
        return out

    def idle(self, frames: int) -> np.ndarray:
        """Commands (frames, J) for frames without input: hold the last target, then fade to home."""
        return np.array([self._idle_step() for _ in range(int(frames))]).reshape(-1, len(self.robot.joints))

    def fade_out(self, max_seconds: float = 10.0) -> np.ndarray:
        """Commands (M, J) fading to home now, until the robot stands still at home (or ``max_seconds``)."""
        self._start_fade_out()
        out = []
        for _ in range(int(np.ceil(max_seconds * self.frame_rate))):
            out.append(self._idle_step())
            if (self._weight <= 0.0 and np.allclose(out[-1], self.robot.home, atol=1e-6)
                    and np.allclose(self.limiter.velocity, 0.0, atol=1e-6)):
                break
        return np.array(out).reshape(-1, len(self.robot.joints))

    # -- internals ---------------------------------------------------------------------------------------------
    def _start_fade_out(self) -> None:
        if not self._fading_out:
            self._anchor, self._goal = self.robot.home.copy(), self._blended.copy()
            self._weight, self._fading_out = 1.0, True

    def _idle_step(self) -> np.ndarray:
        self._idle_frames += 1
        self.counters["frames_held"] += 1
        if self._fading_out or self._idle_frames * self.dt > self.robot.fade.hold:
            self._start_fade_out()
            fade = self.robot.fade.fade_out
            self._weight = 0.0 if fade <= 0 else max(0.0, self._weight - self.dt / fade)
            self._blended = self._anchor + smoothstep(self._weight) * (self._goal - self._anchor)
        return self._command(self._blended)  # while holding, _blended stays: the joints settle on it

    def _command(self, target: np.ndarray) -> np.ndarray:
        smoothed = self.smoother(target)
        limiter = self.limiter
        reach = np.clip(smoothed, limiter.lower, limiter.upper) - limiter.position
        self.counters["velocity_clipped"] += int((np.abs(reach) > limiter.max_velocity * self.dt * (1 + 1e-9)).sum())
        return limiter.step(smoothed)
