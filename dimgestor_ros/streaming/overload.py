"""Overload policy: what streaming does when inference falls behind real time.

A live stream cannot wait: if sampling a window takes longer than the hop it produces, the audio that keeps
arriving piles up and every later pose is published later. The policy degrades in three stages, none of which
ever blocks the audio path or makes the published motion jump:

1. **Fewer sampling steps** (``degraded_steps``): the steps of the next windows are cut to what fits the hop
   (down to ``min_steps``), from the measured time per step, and are given back one at a time once the hops
   have fitted with room to spare for a while.
2. **Skipped windows** (``skipping``): when even the step floor cannot keep up and audio has piled up beyond
   ``skip_backlog_s``, windows are not sampled at all: their frames hold the published motion and fade it
   toward the rest (mean) pose with a critically damped spring, which starts at the published position and
   velocity (so no jump, no kink) and settles without overshooting. Sampling resumes at the floor once the
   backlog is below half of ``skip_backlog_s``, and fades back in: each window's new frames cross-fade from
   the held continuation of the published frames into the sampled motion over ``fade_time_s``, window after
   window, until less than 10 % of the gap is held (about 4 hops of 0.5 s with a 1 s fade). Without it the
   model, asked to gesture to speech from a pose at rest, reached its gesture within the generator's 12-frame
   seam blend, faster than the motion ever moves (measured up to 2 x its largest frame-to-frame change);
   fading in within one fade_time still gave 1.3 x.
3. **Dropped audio**: beyond ``max_backlog_s`` the oldest waiting audio is thrown away (down to half of
   ``skip_backlog_s``) rather than queued; the stream covers it with silence in skipped windows, so frames keep
   their audio-time stamps and the motion fades through the gap.

The decisions (``OverloadPolicy``) and the fade (``hold_and_fade``) are plain Python and numpy, testable without
ROS or a model. ``OverloadGuard`` applies them: it stands in for the model the ``StreamingGestureGenerator`` samples,
so a skipped window passes through the generator's own bookkeeping, smoothing and seam blending exactly like a
sampled one, and the generator needs no change.

The same hold, fade and fade back in also answer two faults that are not overload: a window whose sampled motion
is not finite (NaN or inf from inside the model) is replaced by the hold, so nothing non-finite is ever published
and the motion settles at rest until the model gives finite output again; and while the node's audio device is
lost it sets ``hold``, so its silent windows hold and fade without being sampled.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


class OverloadState(str, Enum):
    OK = "ok"  # every window sampled with the requested steps
    DEGRADED_STEPS = "degraded_steps"  # windows sampled with fewer steps than requested
    SKIPPING = "skipping"  # windows not sampled: the motion holds and fades toward rest


@dataclass
class OverloadConfig:
    enabled: bool = True  # off: every window sampled with the requested steps, however late (offline, benchmarks)
    min_steps: int = 2  # floor of the sampling steps (the requested steps, if fewer)
    skip_backlog_s: float = 0.5  # at the step floor, skip windows while more audio than this waits to be read
    max_backlog_s: float = 2.0  # beyond this much waiting audio, drop the oldest
    fade_time_s: float = 1.0  # a skipped stretch settles at the rest pose (to within 10 %) in about this time
    # After cutting steps, a window's sampling should take at most this fraction of the hop; the rest of the hop
    # pays for the speech features and drains the audio that piled up meanwhile.
    target_load: float = 0.8
    # A step is given back when the window would still take less than this fraction of the hop with it, for
    # ``recover_hops`` sampled hops in a row: the gap to target_load keeps the steps from flapping.
    recover_load: float = 0.5
    recover_hops: int = 4
    cost_smoothing: float = 0.5  # weight of the newest measurement in the running time per step

    def __post_init__(self) -> None:
        if self.min_steps < 1:
            raise ValueError(f"min_steps must be >= 1, got {self.min_steps}")
        if self.skip_backlog_s <= 0 or self.max_backlog_s <= 0:
            raise ValueError(f"backlog bounds must be > 0 s, got skip {self.skip_backlog_s}, max {self.max_backlog_s}")
        if self.fade_time_s <= 0:
            raise ValueError(f"fade_time_s must be > 0, got {self.fade_time_s}")
        if not 0 < self.recover_load < self.target_load <= 1:
            raise ValueError(f"need 0 < recover_load ({self.recover_load}) < target_load ({self.target_load}) <= 1")
        if self.recover_hops < 1 or not 0 < self.cost_smoothing <= 1:
            raise ValueError("recover_hops must be >= 1 and cost_smoothing in (0, 1]")


@dataclass(frozen=True)
class HopPlan:
    steps: int  # sampling steps for this window (ignored when skip)
    skip: bool  # hold and fade instead of sampling


class OverloadPolicy:
    """Decides, window by window, how many steps to sample with or whether to skip, and when to drop audio.

    Call ``plan`` before each window with the audio waiting to be read, ``record_sampled`` after each sampled
    window with its sampling time, and ``drop_target`` / ``record_drop`` to bound the backlog. The counters
    (``hops_skipped``, ``hops_degraded``, ``audio_dropped_s``) and ``state`` / ``steps`` are what /diagnostics reports.
    """

    def __init__(self, config: OverloadConfig, hop_seconds: float) -> None:
        if hop_seconds <= 0:
            raise ValueError(f"hop_seconds must be > 0, got {hop_seconds}")
        self.config = config
        self.hop_seconds = hop_seconds
        self.state = OverloadState.OK
        self.steps: int | None = None  # steps of the latest plan; None before the first
        self.step_seconds: float | None = None  # running estimate of the sampling time per step
        self.hops_sampled = 0
        self.hops_degraded = 0  # sampled with fewer steps than requested
        self.hops_skipped = 0
        self.audio_dropped_s = 0.0
        self._requested: int | None = None
        self._good_hops = 0  # sampled hops in a row that would have fitted one more step

    def plan(self, backlog_s: float, requested_steps: int, force_skip: bool = False) -> HopPlan:
        """The plan for the next window. ``backlog_s``: audio captured but not yet read; ``force_skip``: the window
        covers audio that was dropped (silence standing in for it), so sampling it would only add delay."""
        c = self.config
        requested = max(1, int(requested_steps))
        floor = min(c.min_steps, requested)
        if not c.enabled:
            self.steps, self._requested, self.state = requested, requested, OverloadState.OK
            return HopPlan(requested, False)
        if self.steps is None or self.state is OverloadState.OK or self.steps > requested:
            self.steps = requested  # follow the requested steps while not degraded, and never exceed them
        self.steps = max(self.steps, floor)  # a raised floor applies at once
        self._requested = requested

        if force_skip:
            return self._skip()
        if self.state is OverloadState.SKIPPING:
            if backlog_s > c.skip_backlog_s / 2:
                return self._skip()
            self.steps, self._good_hops = floor, 0  # caught up: sample again from the floor and climb back
            return self._sample()
        predicted = self.steps * self.step_seconds if self.step_seconds is not None else 0.0
        if backlog_s > c.skip_backlog_s or predicted > self.hop_seconds:  # behind real time
            self._good_hops = 0
            if self.steps <= floor:
                # Steps are already at the floor: skip if audio piled up, else sample (slow, but within bounds).
                return self._skip() if backlog_s > c.skip_backlog_s else self._sample()
            # The budget of this window also pays back the audio that piled up beyond the bound.
            budget = c.target_load * self.hop_seconds - max(0.0, backlog_s - c.skip_backlog_s)
            # (the epsilon: 0.4 s at 0.1 s per step is 4 steps, not the 3 of floating-point 0.4 // 0.1)
            fit = math.floor(budget / self.step_seconds + 1e-9) if self.step_seconds else self.steps // 2
            self.steps = max(floor, min(self.steps - 1, fit))
            return self._sample()
        if self.steps < requested:  # keeping up: give steps back one at a time, with room to spare
            roomy = self.step_seconds is not None and (
                (self.steps + 1) * self.step_seconds <= c.recover_load * self.hop_seconds
            )
            self._good_hops = self._good_hops + 1 if roomy and backlog_s <= c.skip_backlog_s / 2 else 0
            if self._good_hops >= c.recover_hops:
                self.steps, self._good_hops = self.steps + 1, 0
        return self._sample()

    def record_sampled(self, seconds: float, steps: int) -> None:
        """A window was sampled with ``steps`` steps in ``seconds``: update the time per step."""
        per_step = max(0.0, seconds) / max(1, steps)
        w = self.config.cost_smoothing
        self.step_seconds = per_step if self.step_seconds is None else (1 - w) * self.step_seconds + w * per_step

    def drop_target(self, backlog_s: float) -> float | None:
        """Seconds of waiting audio to keep (the newest) when the backlog is beyond its bound, else None."""
        c = self.config
        if not c.enabled or backlog_s <= c.max_backlog_s:
            return None
        return min(c.skip_backlog_s, c.max_backlog_s) / 2

    def record_drop(self, seconds: float) -> None:
        self.audio_dropped_s += max(0.0, seconds)

    def _skip(self) -> HopPlan:
        self.state = OverloadState.SKIPPING
        self.hops_skipped += 1
        self._good_hops = 0
        return HopPlan(self.steps, True)

    def _sample(self) -> HopPlan:
        self.hops_sampled += 1
        if self.steps < self._requested:
            self.state = OverloadState.DEGRADED_STEPS
            self.hops_degraded += 1
        else:
            self.state = OverloadState.OK
        return HopPlan(self.steps, False)


def fade_in_weights(frames: int, ramp_frames: float) -> np.ndarray:
    """(frames,) weight of the held continuation in a window's new frames while sampling fades back in: 1 at
    the first new frame (so the window continues the published motion), 0 from ``ramp_frames`` on, a smoothstep
    between; its slope, at most 1.5 / ramp_frames, bounds how fast the cross-fade moves the pose per unit of gap."""
    u = np.clip(np.arange(frames) / max(ramp_frames, 1e-6), 0.0, 1.0)
    return (1.0 - u * u * (3.0 - 2.0 * u)).astype(np.float32)


def hold_and_fade(history: np.ndarray, frames: int, fade_frames: float) -> np.ndarray:
    """(frames, D) continuation of ``history`` (K, D) that holds the motion and fades it to zero.

    A critically damped spring toward zero (in normalised pose space, zero is the mean pose): it starts at the
    last frame's position with the last frame-to-frame velocity, so the first new frame continues the motion
    without a jump or a kink, then settles without overshooting or oscillating. ``fade_frames`` is the time in
    frames to settle within 10 % of the start (the spring rate is 4 / fade_frames: (1 + 4) e^-4 < 0.1). From rest it
    holds first (zero initial slope) and then fades; consecutive calls on the growing history join seamlessly.
    """
    history = np.asarray(history, dtype=np.float64)
    if history.ndim != 2:
        raise ValueError(f"history must be (frames, dims), got shape {history.shape}")
    if frames <= 0:
        return np.zeros((0, history.shape[1]), np.float32)
    if not len(history):
        return np.zeros((frames, history.shape[1]), np.float32)
    x0 = history[-1]
    v0 = history[-1] - history[-2] if len(history) > 1 else np.zeros_like(x0)
    omega = 4.0 / max(fade_frames, 1e-6)
    t = np.arange(1, frames + 1, dtype=np.float64)[:, None]
    return ((x0 + (v0 + omega * x0) * t) * np.exp(-omega * t)).astype(np.float32)


FADE_IN_DONE = 0.1  # fading back in ends when less than this part of the gap to the sampled motion is held


class OverloadGuard:
    """The model as the StreamingGestureGenerator sees it, with an OverloadPolicy in front of its sampler.

    Every attribute but ``sample`` is the wrapped model's. ``sample`` asks the policy first: a skipped window
    returns the known (published) frames followed by ``hold_and_fade`` of them, with no network evaluation; a
    sampled one runs the model with the policy's steps and reports the time it took, and for ``fade_time_s``
    after a skip its new frames are cross-faded from the held continuation (``fade_in_weights``). ``backlog``
    says how much audio is waiting (seconds); set ``force_skip`` while pushing silence that stands in for
    dropped audio.

    Faults: while ``hold`` is set (the node's audio device is lost) every window is held like a skipped one but
    without asking the policy, so it is not counted as overload (``hops_held``); a sampled window with a NaN or
    infinite value is replaced by the hold (``non_finite_windows``; ``non_finite`` tells
    whether the latest sampled window was), and the next finite windows fade back in as after a skip.
    """

    def __init__(
        self,
        model: Any,
        policy: OverloadPolicy,
        backlog: Callable[[], float] = lambda: 0.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._model = model
        self.policy = policy
        self.backlog = backlog
        self.force_skip = False
        self.hold = False  # set while the audio input is lost: hold and fade every window, sample none
        self.hops_held = 0  # windows held for ``hold``
        self.non_finite_windows = 0  # sampled windows whose new frames were not finite, replaced by the hold
        self.non_finite = False  # the latest sampled window was not finite
        self._clock = clock
        self._held: float | None = None  # while fading back in: the part of the gap to the samples still held

    def __getattr__(self, name: str) -> Any:
        if name == "_model":  # not set yet (copying, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self._model, name)

    def eval(self) -> OverloadGuard:
        self._model.eval()
        return self

    def sample(
        self,
        local: torch.Tensor,
        style: torch.Tensor,
        steps: int = 10,
        known: torch.Tensor | None = None,
        known_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Normalised window (1, L, pose_dim), like the model's ``sample``; see the class docstring."""
        import torch

        length = local.shape[1]
        count = int(known_mask[0, :, 0].sum()) if known_mask is not None else 0
        history = known[0, :count].numpy() if count else np.zeros((0, self._model.config.pose_dim), np.float32)
        fps = self._model.config.motion_fps
        fade_frames = self.policy.config.fade_time_s * fps

        def held() -> torch.Tensor:
            """The published frames, then their hold-and-fade; what follows fades back in from it."""
            self._held = 1.0
            faded = torch.from_numpy(hold_and_fade(history, length - count, fade_frames))
            return torch.cat([torch.from_numpy(history.astype(np.float32)), faded])[None]

        if self.hold:
            self.hops_held += 1
            return held()
        plan = self.policy.plan(self.backlog(), steps, self.force_skip)
        if plan.skip:
            return held()
        started = self._clock()
        window = self._model.sample(local, style, steps=plan.steps, known=known, known_mask=known_mask, **kwargs)
        self.policy.record_sampled(self._clock() - started, plan.steps)
        # The whole window: the generator smooths the new frames with the window's copy of the published ones.
        self.non_finite = not bool(torch.isfinite(window).all())
        if self.non_finite:
            self.non_finite_windows += 1
            return held()
        if self._held is not None:
            hop = round(self.policy.hop_seconds * fps)  # frames published per window (the lookahead is not)
            weights = fade_in_weights(length - count, fade_frames)
            weight = torch.from_numpy(weights)[:, None]
            held = torch.from_numpy(hold_and_fade(history, length - count, fade_frames))
            window = window.clone()
            window[0, count:] = weight * held + (1.0 - weight) * window[0, count:]
            self._held *= float(weights[min(hop, len(weights) - 1)])
            if self._held < FADE_IN_DONE:
                self._held = None
        return window

