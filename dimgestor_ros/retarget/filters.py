"""The per-frame stages between a joint target and a robot command: smoothing, fades and the limiter.

Why in this order (see :class:`dimgestor_ros.retarget.mapper.JointMapper`): targets are first made finite and
clipped, then blended with a home or held pose (fades), smoothed (IK solutions and model output jitter a little,
and a One-Euro filter removes jitter at rest without lagging fast strokes), and last limited. The limiter is last
so that nothing after it can break what it guarantees: every command inside the position limits and every step
at most velocity x dt, whatever came in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SmoothingConfig:
    """One-Euro filter (Casiez et al., CHI 2012): a low-pass whose cutoff rises with speed.

    At rest the cutoff is ``min_cutoff`` Hz (removes jitter); moving at v rad/s it is min_cutoff + beta * v, so a
    fast stroke is barely delayed. ``filter: none`` passes targets through.
    """

    filter: str = "one_euro"  # "one_euro" or "none"
    min_cutoff: float = 2.0  # Hz, cutoff at rest
    beta: float = 0.5  # Hz per rad/s: how fast the cutoff rises with speed
    d_cutoff: float = 1.0  # Hz, cutoff of the speed estimate

    def __post_init__(self) -> None:
        if self.filter not in ("one_euro", "none"):
            raise ValueError(f"filter must be 'one_euro' or 'none', got {self.filter!r}")
        for name in ("min_cutoff", "d_cutoff"):
            if not (isinstance(getattr(self, name), (int, float)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be a positive number of Hz, got {getattr(self, name)!r}")
        if not (isinstance(self.beta, (int, float)) and self.beta >= 0):
            raise ValueError(f"beta must be >= 0, got {self.beta!r}")


@dataclass(frozen=True)
class FadeConfig:
    """Fades between the motion and a home or held pose, so a robot never jumps when streaming starts or resumes.

    Input that stops (a stale stream, whole frames of NaN) first holds the last target for ``hold`` seconds, then
    fades to home over ``fade_out``; when input comes back the robot fades from where it is to the motion over
    ``fade_in``.
    """

    fade_in: float = 1.0  # seconds from home (or the held pose) to the motion
    fade_out: float = 1.5  # seconds from the motion to home
    hold: float = 1.0  # seconds without input holding the last target before fading to home

    def __post_init__(self) -> None:
        for name in ("fade_in", "fade_out", "hold"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")


def smoothstep(weight: float) -> float:
    """0 -> 0, 1 -> 1 with zero slope at both ends: fades start and end without a velocity step."""
    weight = min(max(weight, 0.0), 1.0)
    return weight * weight * (3.0 - 2.0 * weight)


class OneEuroFilter:
    """Vectorised One-Euro filter over J joints at a fixed frame rate."""

    def __init__(self, config: SmoothingConfig, frame_rate: float, initial: np.ndarray) -> None:
        self.config = config
        self.dt = 1.0 / frame_rate
        self.reset(initial)

    def reset(self, value: np.ndarray) -> None:
        self.value = np.asarray(value, dtype=float).copy()  # (J,)
        self.speed = np.zeros_like(self.value)  # (J,) filtered derivative

    def _alpha(self, cutoff: np.ndarray | float) -> np.ndarray:
        tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff))
        return 1.0 / (1.0 + tau / self.dt)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Filter one frame (J,) -> (J,)."""
        if self.config.filter == "none":
            self.value = np.asarray(x, dtype=float).copy()
            return self.value.copy()
        speed = (x - self.value) / self.dt
        self.speed = self.speed + self._alpha(self.config.d_cutoff) * (speed - self.speed)
        cutoff = self.config.min_cutoff + self.config.beta * np.abs(self.speed)
        self.value = self.value + self._alpha(cutoff) * (x - self.value)
        return self.value.copy()


class JointLimiter:
    """Turns targets into commands that respect position, velocity and (where given) acceleration limits.

    Guarantees, for any input including NaN and inf: every command lies in [lower, upper] and differs from the
    previous one by at most velocity * dt. The acceleration limit is kept while approaching targets (the joint
    brakes in time, sqrt(2 a d)); it yields only where the hard limits need it (a target jumping while the joint
    moves fast towards a position limit).
    """

    def __init__(self, lower: np.ndarray, upper: np.ndarray, velocity: np.ndarray, acceleration: np.ndarray,
                 frame_rate: float, initial: np.ndarray) -> None:
        self.lower, self.upper = np.asarray(lower, float), np.asarray(upper, float)  # (J,)
        self.max_velocity = np.asarray(velocity, float)  # (J,)
        self.acceleration = np.asarray(acceleration, float)  # (J,), inf where unlimited
        self.dt = 1.0 / frame_rate
        self.reset(initial)

    def reset(self, position: np.ndarray) -> None:
        self.position = np.clip(np.asarray(position, dtype=float), self.lower, self.upper)  # (J,)
        self.velocity = np.zeros_like(self.position)  # (J,)

    def _brake(self, distance: np.ndarray) -> np.ndarray:
        """Largest speed from which the joint can still stop within ``distance`` (>= 0) at its acceleration."""
        limited = np.isfinite(self.acceleration)
        return np.where(limited, np.sqrt(2.0 * np.where(limited, self.acceleration, 0.0) * distance), np.inf)

    def step(self, target: np.ndarray) -> np.ndarray:
        """One frame: target (J,) -> command (J,)."""
        q = self.position
        target = np.clip(np.where(np.isfinite(target), target, q), self.lower, self.upper)
        error = target - q
        wanted = error / self.dt  # reach the target in one frame if allowed
        wanted = np.sign(error) * np.minimum(np.abs(wanted), self._brake(np.abs(error)))  # arrive without overshoot
        change = np.where(np.isfinite(self.acceleration), self.acceleration * self.dt, np.inf)
        wanted = np.clip(wanted, self.velocity - change, self.velocity + change)
        # Never so fast that the joint could not stop before a position limit.
        wanted = np.clip(wanted, -self._brake(q - self.lower), self._brake(self.upper - q))
        wanted = np.clip(wanted, -self.max_velocity, self.max_velocity)
        new = np.clip(q + wanted * self.dt, self.lower, self.upper)  # clipping towards q only shortens the step
        self.velocity = (new - q) / self.dt
        self.position = new
        return new.copy()
