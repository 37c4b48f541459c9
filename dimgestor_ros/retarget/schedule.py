"""When each robot command is due, and the trajectory a JointTrajectoryController is sent at a given moment.

Why a schedule: ros2_control's JointTrajectoryController (JTC) does not splice trajectories. A new message
replaces the running trajectory at once; the JTC then interpolates from the joints' current state to the new
message's first point (reached at its ``time_from_start``) and follows the points after it. Streaming motion in
chunks therefore needs every message to carry the commands still to come, not only the new chunk: each message
holds every scheduled command that is due at least one control period from now (the ones the previous message
also held, then the new ones), so that replacing the old trajectory by the new one changes nothing the robot is
about to do.

Timeline: commands are one frame apart (1 / frame_rate). When a stream starts, or input comes so late that the
next command would be due less than ``min_lead`` from now, the timeline is anchored again ``lead`` from now; a
chunk that arrives in time continues it, so jitter in the arrival of chunks up to ``lead`` changes nothing.
Times are integer nanoseconds of the node's clock (ROS time), so a timeline does not drift.

Velocities are consistent with the positions: central differences between neighbouring commands of the same
timeline (one-sided at its ends), which is what the JTC's cubic spline (positions + velocities) interpolates
best. The last point of a message gets zero velocity when asked (the JTC's default
``allow_nonzero_velocity_at_trajectory_end: false`` rejects anything else); the robot only reaches that point if
the stream stalls, because the next message replaces the trajectory about ``lead`` before it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass
class Entry:
    time_ns: int  # when the command is due, node clock
    segment: int  # timeline it belongs to (a new one at each anchor)
    command: np.ndarray  # (J,) robot joint positions
    payload: object = None  # what came with it (the node: its source frame's avatar data); None without input


@dataclass
class TrajectoryPlan:
    """What to send: times relative to ``reference_ns`` (the moment of sending), positions and velocities."""

    reference_ns: int
    times_from_start_ns: list[int]
    positions: np.ndarray  # (P, J)
    velocities: np.ndarray  # (P, J)


class CommandSchedule:
    def __init__(self, frame_rate: float, lead_s: float, min_lead_s: float, keep_past_s: float = 2.0) -> None:
        if not frame_rate > 0:
            raise ValueError(f"frame_rate must be positive, got {frame_rate}")
        self.frame_rate = float(frame_rate)
        self.lead_ns = 0
        self.min_lead_ns = 0
        self.set_lead(lead_s, min_lead_s)
        self.keep_past_ns = int(keep_past_s * 1e9)
        self.entries: deque[Entry] = deque()
        self._anchor_ns = 0  # time of frame 0 of the current timeline
        self._frames = 0  # frames on the current timeline so far
        self._segment = 0
        self.anchors = 0  # timelines started (the first start included)

    def set_lead(self, lead_s: float, min_lead_s: float) -> None:
        if not 0 < min_lead_s <= lead_s:
            raise ValueError(f"need 0 < min_lead ({min_lead_s}) <= lead ({lead_s})")
        self.lead_ns, self.min_lead_ns = int(round(lead_s * 1e9)), int(round(min_lead_s * 1e9))

    def _frame_time(self, k: int) -> int:
        return self._anchor_ns + int(round(k * 1e9 / self.frame_rate))

    @property
    def next_time_ns(self) -> int | None:
        """When a command appended now would be due, if the current timeline continues; None before any."""
        return self._frame_time(self._frames) if self.entries else None

    @property
    def end_ns(self) -> int | None:
        return self.entries[-1].time_ns if self.entries else None

    def append(self, commands: np.ndarray, now_ns: int, payloads: list | None = None) -> bool:
        """Schedule commands (N, J), one frame apart, after the last, each with its payload; True if the timeline
        was anchored anew (first commands, or the next would have been due less than ``min_lead`` from now)."""
        commands = np.asarray(commands, dtype=float)
        anchored = False
        upcoming = self.next_time_ns
        if upcoming is None or upcoming < now_ns + self.min_lead_ns:
            self._anchor_ns, self._frames = now_ns + self.lead_ns, 0
            self._segment += 1
            self.anchors += 1
            anchored = True
        for k, command in enumerate(commands):
            payload = None if payloads is None else payloads[k]
            self.entries.append(Entry(self._frame_time(self._frames), self._segment, command.copy(), payload))
            self._frames += 1
        return anchored

    def prune(self, now_ns: int) -> None:
        """Forget commands more than ``keep_past`` before now (keeping at least the last one)."""
        while len(self.entries) > 1 and self.entries[0].time_ns < now_ns - self.keep_past_ns:
            self.entries.popleft()

    def plan(self, now_ns: int, zero_final_velocity: bool = True) -> TrajectoryPlan | None:
        """Every command due at least ``min_lead`` after now, with velocities; None if there is none."""
        items = list(self.entries)
        first = next((i for i, e in enumerate(items) if e.time_ns >= now_ns + self.min_lead_ns), None)
        if first is None:
            return None
        velocities = [self._velocity(items, i) for i in range(first, len(items))]
        if zero_final_velocity:
            velocities[-1] = np.zeros_like(velocities[-1])
        return TrajectoryPlan(
            reference_ns=now_ns,
            times_from_start_ns=[items[i].time_ns - now_ns for i in range(first, len(items))],
            positions=np.array([items[i].command for i in range(first, len(items))]),
            velocities=np.array(velocities),
        )

    @staticmethod
    def _velocity(items: list[Entry], i: int) -> np.ndarray:
        """Central difference within the entry's timeline; one-sided at its ends; zero for a lone entry."""
        entry = items[i]
        before = items[i - 1] if i > 0 and items[i - 1].segment == entry.segment else entry
        after = items[i + 1] if i + 1 < len(items) and items[i + 1].segment == entry.segment else entry
        if after is before:
            return np.zeros_like(entry.command)
        return (after.command - before.command) / ((after.time_ns - before.time_ns) * 1e-9)

    def sample(self, now_ns: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(position, velocity) the robot is commanded to have now: linear between commands, held at the ends."""
        items = self.entries
        if not items:
            return None
        if now_ns <= items[0].time_ns:
            return items[0].command.copy(), np.zeros_like(items[0].command)
        if now_ns >= items[-1].time_ns:
            return items[-1].command.copy(), np.zeros_like(items[-1].command)
        for a, b in zip(items, list(items)[1:]):
            if a.time_ns <= now_ns < b.time_ns:
                span = (b.time_ns - a.time_ns) * 1e-9
                w = (now_ns - a.time_ns) * 1e-9 / span
                return a.command + w * (b.command - a.command), (b.command - a.command) / span
        return items[-1].command.copy(), np.zeros_like(items[-1].command)

    def latest_payload(self, now_ns: int) -> tuple[int, object] | None:
        """(due time, payload) of the last entry with a payload due at or before now."""
        for entry in reversed(self.entries):
            if entry.payload is not None and entry.time_ns <= now_ns:
                return entry.time_ns, entry.payload
        return None


__all__ = ["CommandSchedule", "Entry", "TrajectoryPlan"]
