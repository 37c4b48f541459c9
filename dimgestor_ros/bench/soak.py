"""`dimgestor bench soak`: an hour of speech through the running nodes, with memory, CPU, latency and drift logged.

The gesture node and the retargeting node run as real processes, each started with the command line
``dimgestor-launch`` gives it (``python -m dimgestor_ros.nodes.<node> --ros-args -r __node:=<node> --params-file
...``, from the same launch description), with a parameters file of our own and ``autostart: false``, so the stream
starts only once both nodes and this monitor are connected. The speech (``--minutes`` of it, default 60) is built
from the speech files in the repository: the shipped clip and, in a checkout, the recorded LibriVox clip of the
tests, as excerpts at varied speed and level with varied pauses (some long) over a low noise floor. Every
``--sample-interval`` seconds each node's resident memory and CPU time are read from /proc/PID/status and
/proc/PID/stat; every message on /gesture_joints, /retarget/joint_trajectory and /diagnostics is checked as it
arrives (timestamp drift, URDF limits); both nodes' output is captured and searched for tracebacks and error lines.
Outputs: a summary JSON (report head, figures, the verdict on each acceptance criterion), a JSONL log with one row
per sample, the nodes' log, and the markdown report.

Time compression (the default): the gesture node streams the file unpaced (``realtime: false``, as fast as it can
generate), on the wall clock; the retargeting node runs on ROS simulated time (``use_sim_time``) from a /clock this
monitor publishes, and takes its input from this monitor (``-r gesture_joints:=/soak/gesture_joints``), which
passes each hop on, unchanged, at the simulated moment a paced run would deliver it. That moment is a replay of
the stream as paced: a hop's audio (its frames and its lookahead) arrives in 50 ms chunks, and it is published
once that audio is complete and its compute is done, queued behind the previous hop; its compute is the measured
gap between its publication and the previous hop's (DDS source timestamps; the first hop's, since activation).
The clock starts when the first hop is passed on, advances in frame steps (1/30 s, at most ``--clock-rate`` times
real time, so the retargeting node's 30 Hz timer runs per frame) to each hop's moment, passes the hop on, and
holds until the retargeting node has answered it with a robot trajectory; while the next hop is still being
generated it runs on up to the earliest moment that hop can arrive. So the retargeting node gets every hop, at
its paced moment, and its schedule, stale timeout, timer and command timeline run as in a paced run, only faster.
With ``--paced`` the file is streamed in real time, both nodes on the wall clock and connected directly (an hour
takes an hour).

Figures. Memory drift per node: the median resident memory over the last window of the audio it has handled (5
min, or a fifth of a shorter run) against the median over the first window after a warm-up (5 min, or a fifth), in
percent of the latter; the least-squares slope after the warm-up (MB per hour of audio) is given beside it. CPU:
mean percent of one core while the node works (time-compressed: several times a paced run's) and CPU seconds per
second of audio (the paced-equivalent load). Latency beyond the hop (as docs/benchmarks.md and the node define it:
from the moment the audio completing a hop's own frames has arrived to the hop's publication, so it includes the
lookahead): paced, the publication's DDS source timestamp against the hop's audio time; time-compressed, the paced
replay above (an upper bound: a hop's compute includes the feature extraction of its 10 audio chunks, and the
cores are shared with a retargeting node working several times faster than in a paced run). Timestamp drift, in
frames: on /gesture_joints, each hop's header stamp against the frames published before it (stamp - first stamp,
x 30, minus the frame index), and the frames published at the end against the audio's length; on
/retarget/joint_trajectory, the moment the robot is commanded each hop's last frame against that frame's audio
time, relative to the first hop (the retargeting node runs with ``stamp: now`` here so that its commands have
absolute times; a robot that waited for a late chunk, or a hop lost or answered twice, shows as drift). Limits:
every point of every robot trajectory against the URDF's position limits and velocity limit: the positions, the
velocities sent (with the 1e-6 relative tolerance of dimgestor_ros/retarget/jtc.py: they are central differences
on a nanosecond time grid, which puts them up to 1.5e-8 relative beyond a limit the positions keep exactly), and
the speed between consecutive points. Exceptions: "Traceback (most recent call last)" in the nodes' output, and
[ERROR] / [FATAL] log lines, counted separately.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ..errors import UserError
from ..paths import default_params_file, demo_audio_file
from ..retarget.limit_check import LimitCheck  # the URDF-limit check of every robot trajectory (the tests' too)

SCHEMA = 1
SAMPLE_RATE = 16000
FPS = 30.0
CHUNK_SECONDS = 0.05  # the gesture node reads files in 50 ms chunks
FRAME_NS = 1e9 / FPS
CLOCK_KEEPALIVE_S = 0.05  # before the stream, the held /clock is published again this often (late subscribers)
GATE_TIMEOUT_S = 10.0  # the clock waits this long (wall) for the retargeting node's answer, then goes on (counted)
STALL_TIMEOUT_S = 180.0  # no progress for this long (wall) while streaming: the run is stopped as failed
RELAY_TOPIC = "/soak/gesture_joints"  # time-compressed: the retargeting node's input, fed by this monitor
SETTLE_S = 6.0  # after the last hop: stale_timeout (1 s) + hold (1 s) + fade_out (1.5 s) of the shipped robots, and
# a diagnostics period, with room to spare
MEMORY_LIMIT_PERCENT = 2.0  # acceptance: memory drift over the hour
DRIFT_LIMIT_FRAMES = 1.0  # acceptance: timestamp drift
TRACEBACK = "Traceback (most recent call last)"
ERROR_LINE = re.compile(r"^\[(ERROR|FATAL)\]|\[(ERROR|FATAL)\] \[")
NODES = ("gesture_node", "retarget_node")
PROGRESS = {"gesture_node": "audio_s", "retarget_node": "robot_audio_s"}  # the audio each node has handled
SAMPLED_DIAGNOSTICS = {  # the /diagnostics values each sample keeps (the summary has the last message whole)
    "gesture_node": ("lifecycle_state", "real_time_factor", "latency_p50_ms", "latency_p95_ms", "overruns",
                     "dropped_audio_chunks", "frames_published", "overload_state"),
    "retarget_node": ("state", "frames_in", "late_chunks", "commands_clipped", "trajectories_invalid",
                      "scheduled_ahead_s"),
}


@dataclass
class SoakSettings:
    """What the soak ran with (the report's ``settings``)."""

    minutes: float = 60.0
    robot: str = "generic_humanoid"
    paced: bool = False
    threads: int = 2  # the gesture node's num_threads (its default)
    sample_interval_s: float = 5.0
    clock_rate: float = 8.0  # time-compressed: the simulated clock runs at most this many times real time
    seed: int = 0
    weights: str = ""
    warmup_minutes: float = 0.0  # filled in: min(5, minutes / 5)
    window_minutes: float = 0.0  # filled in: min(5, minutes / 5)


# ---------------------------------------------------------------------------------------------------------------
# The speech


def speech_sources() -> list[Path]:
    """The speech files in the repository: the shipped clip (synthetic, eSpeak NG), and in a checkout the recorded
    LibriVox clip of the tests (real speech)."""
    sources = [demo_audio_file()]
    recorded = Path(__file__).resolve().parents[2] / "test" / "data" / "librivox_sense_and_sensibility_0870.wav"
    if recorded.is_file():
        sources.append(recorded)
    return sources


def build_speech(path: Path, minutes: float, seed: int = 0) -> dict:
    """Write ``minutes`` of 16 kHz mono speech to ``path`` (16-bit WAV): excerpts of the repository's speech files
    (2 s to whole clips) at 0.9-1.1x speed and -18 to +6 dB, separated by pauses (70 % 0.2-1.5 s, 25 % 1.5-6 s,
    5 % 10-40 s: the robot rests), over a noise floor at -70 to -55 dBFS. Why varied: a loop of one clip would
    exercise one path; levels, pauses and the real recording move the loudness gating, idle smoothing and the
    feature extractor's style memory through their range. Returns what was built."""
    import soundfile
    import soxr

    from ..audio.io import load_audio

    rng = np.random.default_rng(seed)
    clips = [load_audio(source, SAMPLE_RATE) for source in speech_sources()]
    total = int(round(minutes * 60 * SAMPLE_RATE))
    fade = np.linspace(0.0, 1.0, int(0.02 * SAMPLE_RATE), dtype=np.float32)
    written = speech_samples = segments = long_pauses = clipped = 0
    gains_db: list[float] = []
    with soundfile.SoundFile(str(path), "w", samplerate=SAMPLE_RATE, channels=1, subtype="PCM_16") as out:
        while written < total:
            clip = clips[int(rng.integers(len(clips)))]
            length = int(rng.uniform(2.0, len(clip) / SAMPLE_RATE) * SAMPLE_RATE)
            start = int(rng.integers(0, len(clip) - length + 1))
            excerpt = clip[start : start + length].copy()
            speed = float(rng.uniform(0.9, 1.1))
            excerpt = soxr.resample(excerpt, SAMPLE_RATE, int(round(SAMPLE_RATE / speed))).astype(np.float32)
            excerpt[: len(fade)] *= fade
            excerpt[len(excerpt) - len(fade) :] *= fade[::-1]
            gain_db = float(rng.uniform(-18.0, 6.0))
            excerpt *= 10 ** (gain_db / 20)
            clipped += int(np.count_nonzero(np.abs(excerpt) > 1.0))
            kind = rng.random()
            if kind < 0.70:
                pause = rng.uniform(0.2, 1.5)
            else:
                pause = rng.uniform(1.5, 6.0) if kind < 0.95 else rng.uniform(10.0, 40.0)
            long_pauses += int(kind >= 0.95)
            block = np.concatenate([excerpt, np.zeros(int(pause * SAMPLE_RATE), np.float32)])
            block = block[: total - written]
            noise_db = float(rng.uniform(-70.0, -55.0))
            block += rng.standard_normal(len(block)).astype(np.float32) * 10 ** (noise_db / 20)
            out.write(np.clip(block, -1.0, 1.0))
            written += len(block)
            speech_samples += min(len(excerpt), len(block))
            segments += 1
            gains_db.append(gain_db)
    return {
        "sources": [str(source.relative_to(Path(__file__).resolve().parents[2]))
                    if source.is_relative_to(Path(__file__).resolve().parents[2]) else str(source)
                    for source in speech_sources()],
        "seconds": written / SAMPLE_RATE,
        "samples": written,
        "speech_fraction": speech_samples / max(1, written),
        "segments": segments,
        "long_pauses": long_pauses,
        "gain_db_range": [min(gains_db), max(gains_db)],
        "clipped_samples": clipped,
        "seed": seed,
    }


# ---------------------------------------------------------------------------------------------------------------
# Processes: /proc readings and the nodes' output


def read_proc(pid: int) -> dict | None:
    """Resident memory (MiB), its high-water mark, CPU seconds (user + system), threads and open files of ``pid``;
    None once the process is gone (exited, reaped or not). /proc rather than psutil: two files, no dependency."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if "VmRSS" not in fields:
        return None  # a zombie: exited, not yet reaped by its parent; its memory figures are gone with it
    after_name = stat.rsplit(")", 1)[1].split()  # the name may contain spaces and parentheses
    ticks = os.sysconf("SC_CLK_TCK")
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        "hwm_mb": int(fields["VmHWM"].split()[0]) / 1024,
        "cpu_s": (int(after_name[11]) + int(after_name[12])) / ticks,  # utime, stime: fields 14 and 15
        "threads": int(fields["Threads"]),
        "fds": fds,
    }


def scan_log(text: str) -> dict:
    """Tracebacks and [ERROR] / [FATAL] lines in the nodes' output, per node where the line names it. A traceback
    is an exception nobody handled (or one printed as if so); an error line is one the node logged itself."""
    lines = text.splitlines()
    tracebacks = [i for i, line in enumerate(lines) if TRACEBACK in line]
    errors = [line for line in lines if ERROR_LINE.search(line)]
    per_node = {name: sum(1 for line in errors if f"[{name}]" in line) for name in NODES}
    return {
        "tracebacks": len(tracebacks),
        "error_lines": len(errors),
        "error_lines_per_node": per_node,
        "examples": [("\n".join(lines[i : i + 12]))[:1500] for i in tracebacks[:3]] + errors[:3],
    }


# ---------------------------------------------------------------------------------------------------------------
# The monitor: subscriptions, the simulated clock, the per-hop records


def _ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class Monitor:
    """This process's ROS side: records every hop and robot trajectory and the latest /diagnostics of each node;
    time-compressed, it also publishes /clock and passes each hop on to the retargeting node at its paced moment."""

    def __init__(self, settings: SoakSettings, limits: LimitCheck, lookahead_frames: int, audio_seconds: float,
                 clock_origin_ns: int) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock
        from trajectory_msgs.msg import JointTrajectory

        from ..nodes.common import JOINTS_QOS

        self.settings = settings
        self.limits = limits
        self.lookahead_frames = lookahead_frames
        self.audio_seconds = audio_seconds
        self.lock = threading.Lock()
        self.context = rclpy.context.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"soak_monitor_{os.getpid()}", context=self.context)
        reliable = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(JointTrajectory, "/gesture_joints", self._on_hop, reliable)
        self.node.create_subscription(JointTrajectory, "/retarget/joint_trajectory", self._on_robot, reliable)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics,
                                      QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE))
        self.relay = not settings.paced
        self.clock_pub = self.node.create_publisher(Clock, "/clock", QoSProfile(depth=10)) if self.relay else None
        self.relay_pub = self.node.create_publisher(JointTrajectory, RELAY_TOPIC, JOINTS_QOS) if self.relay else None
        self._clock_msg = Clock
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

        # Hops (gesture node): stamps, sizes, DDS source timestamps, and what the checks made of them.
        self.hop_stamp_ns: list[int] = []
        self.hop_frames: list[int] = []
        self.hop_source_ns: list[int] = []
        self.hop_latency_s: list[float] = []
        self.hop_arrival_ns: list[int] = []  # time-compressed: the simulated moment each hop is passed on
        self.frames = 0
        self.stamp_drift_max = 0.0
        self.hops_out_of_order = 0
        self.activated_wall_ns: int | None = None
        self.last_progress = time.monotonic()
        self._finish_s = 0.0  # paced replay: when the previous hop was done (audio time)
        self._first_finish_s = 0.0
        # The simulated clock and the relay (time-compressed).
        self.clock_origin_ns = clock_origin_ns
        self.sim_now_ns = clock_origin_ns
        self.next_arrival_bound_ns = clock_origin_ns  # the earliest the next hop can arrive
        self._pending: list = []  # hops received, not passed on yet (index = hop - relayed)
        self.relayed = 0
        self.relay_wall_ns: list[int] = []
        self.gate_timeouts = 0
        self.clock_messages = 0
        self.finishing_ns: int | None = None  # set at the end: the clock runs on to here
        self._gate_since: float | None = None
        # Robot trajectories (retargeting node): each answers the hop passed on before it (time-compressed, one
        # at a time) or the next hop in order (paced); any other is a trajectory of its own (stale input).
        self.robot_messages = 0
        self.robot_answers = 0
        self.robot_unsolicited = 0
        self.robot_drift: list[float] = []
        self.robot_drift_base: float | None = None
        self.robot_lag_ms: list[float] = []
        self.robot_answer_vs_arrival_ms: list[float] = []
        self.robot_points: list[int] = []
        self._cumulative = [0]
        # Diagnostics, latest per node.
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.own_cpu_start: float | None = None  # this process's CPU seconds when streaming started / ended
        self.own_cpu_end: float | None = None
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._spin, daemon=True, name="soak-spin")]
        if self.relay:
            self._threads.append(threading.Thread(target=self._run_clock, daemon=True, name="soak-clock"))
        for thread in self._threads:
            thread.start()

    # --- ROS callbacks (executor thread) ----------------------------------------------------------------------------

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def _on_hop(self, msg, info) -> None:
        """One hop: its stamp against the frames before it (drift), its paced-equivalent latency and arrival."""
        stamp, n, source = _ns(msg.header.stamp), len(msg.points), int(info["source_timestamp"])
        with self.lock:
            h = len(self.hop_stamp_ns)
            first = self.hop_stamp_ns[0] if h else stamp
            drift = (stamp - first) / FRAME_NS - self.frames
            self.stamp_drift_max = max(self.stamp_drift_max, abs(drift))
            if h and source < self.hop_source_ns[-1]:
                self.hops_out_of_order += 1
            audio_end_s = (self.frames + n) / FPS  # audio time of the end of the hop's own frames
            if self.settings.paced:
                # Publication (system clock) against the hop's audio time (the node's clock: the system clock).
                latency = (source - (first + round(self.frames * FRAME_NS))) * 1e-9 - n / FPS
            else:
                # Replay as a paced stream: audio in 50 ms chunks; the hop needs its lookahead too; its compute is
                # the gap since the previous publication (the first: since activation).
                previous = self.hop_source_ns[-1] if h else (self.activated_wall_ns or source)
                compute = max(0.0, (source - previous) * 1e-9)
                self._finish_s = max(self._finish_s, self._audio_ready(audio_end_s)) + compute
                latency = self._finish_s - audio_end_s
                if not h:
                    self._first_finish_s = self._finish_s
                # Simulated: the first hop is passed on at the clock's origin, the others as replayed.
                arrival = self.clock_origin_ns + round((self._finish_s - self._first_finish_s) * 1e9)
                self.hop_arrival_ns.append(max(arrival, self.hop_arrival_ns[-1] if h else arrival))
                # The next hop cannot come before its audio is complete nor before this one was done.
                bound = max(self._finish_s, self._audio_ready(audio_end_s + n / FPS))
                self.next_arrival_bound_ns = self.clock_origin_ns + round((bound - self._first_finish_s) * 1e9)
                self._pending.append(msg)
            self.hop_stamp_ns.append(stamp)
            self.hop_frames.append(n)
            self.hop_source_ns.append(source)
            self.hop_latency_s.append(latency)
            self.frames += n
            self.last_progress = time.monotonic()

    def _audio_ready(self, audio_s: float) -> float:
        """When audio up to ``audio_s`` plus the lookahead has arrived in a paced stream (whole 50 ms chunks)."""
        wanted = audio_s + self.lookahead_frames / FPS
        return min(math.ceil(wanted / CHUNK_SECONDS - 1e-9) * CHUNK_SECONDS, self.audio_seconds)

    def _on_robot(self, msg, info) -> None:
        """One robot trajectory: URDF limits; as the answer to its hop, the commanded time of the hop's last frame
        against that frame's audio time (drift, relative to the first answer)."""
        self.limits.check(msg)
        source = int(info["source_timestamp"])
        with self.lock:
            self.robot_messages += 1
            k = self.robot_answers
            expecting = k < self.relayed if self.relay else k < len(self.hop_frames)
            if not expecting or not msg.points:
                self.robot_unsolicited += 1  # not an answer to a hop (stale input: hold, fade): limits only
                return
            self.robot_answers += 1
            self.last_progress = time.monotonic()
            sent = _ns(msg.header.stamp)  # stamp: now, the node's clock when it answered the hop
            if self.relay:
                self.robot_lag_ms.append((source - self.relay_wall_ns[k]) * 1e-6)
                self.robot_answer_vs_arrival_ms.append((sent - self.hop_arrival_ns[k]) * 1e-6)
            else:
                self.robot_lag_ms.append((source - self.hop_source_ns[k]) * 1e-6)
            self.robot_points.append(len(msg.points))
            last = msg.points[-1].time_from_start
            due = sent + last.sec * 1_000_000_000 + last.nanosec
            value = (due - self.hop_stamp_ns[0]) / FRAME_NS - (self._frames_through(k) - 1)
            if self.robot_drift_base is None:
                self.robot_drift_base = value
            self.robot_drift.append(value - self.robot_drift_base)

    def _frames_through(self, k: int) -> int:
        """Frames in hops 0..k (hops are 15 frames but the last may be shorter: summed, with a running cache)."""
        cache = self._cumulative
        while len(cache) <= k + 1:
            cache.append(cache[-1] + self.hop_frames[len(cache) - 1])
        return cache[k + 1]

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            for name in NODES:
                if name in status.name:
                    values = {kv.key: kv.value for kv in status.values}
                    level = status.level
                    values["_level"] = str(int.from_bytes(level, "little") if isinstance(level, bytes) else int(level))
                    values["_message"] = status.message
                    with self.lock:
                        self.diagnostics[name] = values

    # --- the simulated clock and the relay (their own thread) -------------------------------------------------------

    def publish_clock(self, ns: int) -> None:
        from builtin_interfaces.msg import Time

        self.clock_pub.publish(self._clock_msg(clock=Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)))
        self.clock_messages += 1

    def _run_clock(self) -> None:
        """Advance the clock in frame steps to the next hop's paced moment, pass the hop on, hold until it is
        answered; with no hop waiting, run on to the earliest moment the next can come."""
        step_ns = round(FRAME_NS)
        pause = (step_ns * 1e-9) / self.settings.clock_rate
        last_publish = 0.0
        while not self._stop.is_set():
            hop = None
            with self.lock:
                if self.robot_answers < self.relayed:  # the retargeting node is on a hop: hold
                    limit = self.sim_now_ns
                    if self._gate_since is None:
                        self._gate_since = time.monotonic()
                    elif time.monotonic() - self._gate_since > GATE_TIMEOUT_S:
                        self.gate_timeouts += 1  # no answer: count it as answered and go on
                        self.robot_answers += 1
                        self.robot_drift.append(float("nan"))
                        self._gate_since = None
                elif self._pending:
                    self._gate_since = None
                    limit = self.hop_arrival_ns[self.relayed]
                    if self.sim_now_ns >= limit:
                        hop = self._pending.pop(0)
                elif self.finishing_ns is not None:
                    limit = max(self.sim_now_ns, self.finishing_ns)  # the stream is over: play it out
                else:
                    limit = max(self.sim_now_ns, self.next_arrival_bound_ns) if self.hop_arrival_ns else self.sim_now_ns
                advance = self.sim_now_ns < limit
                if advance:
                    self.sim_now_ns = min(limit, self.sim_now_ns + step_ns)
                now_ns = self.sim_now_ns
            if hop is not None:
                self.publish_clock(now_ns)  # the node's clock reads the hop's moment when the hop comes
                with self.lock:
                    self.relay_wall_ns.append(time.time_ns())
                    self.relayed += 1
                self.relay_pub.publish(hop)
                last_publish = time.monotonic()
                continue
            # A held clock is published again only until the first hop (for the nodes still discovering /clock):
            # later, every message would cost the retargeting node an executor callback a paced run does not have.
            if advance or (self.relayed == 0 and time.monotonic() - last_publish > CLOCK_KEEPALIVE_S):
                self.publish_clock(now_ns)
                last_publish = time.monotonic()
            time.sleep(pause if advance else 0.001)

    # --- queries (main thread) --------------------------------------------------------------------------------------

    def all_answered(self) -> bool:
        """Every hop received has been passed on and answered (time-compressed), or answered (paced)."""
        with self.lock:
            done = self.relayed if self.relay else len(self.hop_frames)
            return not self._pending and self.robot_answers >= done

    def finish(self, settle_s: float) -> None:
        """The stream is over and answered: let the clock run ``settle_s`` past the last hop, so the retargeting
        node plays its schedule out, finds its input stale, holds and fades home, as at the end of a paced run."""
        with self.lock:
            last = self.hop_arrival_ns[-1] if self.hop_arrival_ns else self.sim_now_ns
            self.finishing_ns = max(self.sim_now_ns, last) + round(settle_s * 1e9)

    def settled(self) -> bool:
        """The retargeting node reports, on /diagnostics, every frame in and itself idle at home (or, paced, every
        frame in)."""
        with self.lock:
            values = self.diagnostics.get("retarget_node", {})
            frames_in = values.get("frames_in") == str(self.frames)
            return frames_in and (not self.relay or values.get("state") == "idle")

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "audio_s": self.frames / FPS,
                "robot_audio_s": self._frames_through(self.robot_answers - 1) / FPS if self.robot_answers else 0.0,
                "hops": len(self.hop_frames),
                "hops_waiting": len(self._pending),
                "robot_trajectories": self.robot_messages,
                "sim_s": (self.sim_now_ns - self.clock_origin_ns) * 1e-9 if self.relay else None,
                "stamp_drift_frames_max": self.stamp_drift_max,
                "robot_drift_frames_max": max((abs(d) for d in self.robot_drift if d == d), default=0.0),
                "out_of_limits": self.limits.violations,
                "diagnostics": {name: {key: values[key] for key in SAMPLED_DIAGNOSTICS[name] if key in values}
                                for name, values in self.diagnostics.items()},
            }

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self.executor.shutdown()
        self.node.destroy_node()
        import rclpy

        rclpy.shutdown(context=self.context)



# ---------------------------------------------------------------------------------------------------------------
# Lifecycle: start the stream once everything is connected


def _lifecycle_call(monitor: Monitor, transition_id: int, target: str, timeout: float) -> None:
    """One lifecycle transition of the gesture node; a lost reply (DDS may drop the first replies of a new
    service route) is recovered by asking for the state, which is idempotent."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    change = monitor.node.create_client(ChangeState, "/gesture_node/change_state")
    get = monitor.node.create_client(GetState, "/gesture_node/get_state")
    try:
        future = change.call_async(ChangeState.Request(transition=Transition(id=transition_id)))
        end = time.monotonic() + timeout
        while not future.done() and time.monotonic() < end:
            time.sleep(0.05)
        if future.done():
            if not future.result().success:
                raise RuntimeError(f"gesture_node refused the transition to {target}")
            return
        for _ in range(10):
            state = get.call_async(GetState.Request())
            wait_end = time.monotonic() + 5
            while not state.done() and time.monotonic() < wait_end:
                time.sleep(0.05)
            if state.done() and state.result().current_state.label == target:
                return
        raise RuntimeError(f"gesture_node did not reach {target} within {timeout:.0f} s")
    finally:
        monitor.node.destroy_client(change)
        monitor.node.destroy_client(get)


def _wait(condition, seconds: float, what: str, processes: dict[str, subprocess.Popen], log: Path) -> None:
    end = time.monotonic() + seconds
    while not condition():
        ended = {name: p.returncode for name, p in processes.items() if p.poll() is not None}
        if ended:
            raise RuntimeError(f"{ended} ended before {what}: {log.read_text(errors='replace')[-3000:]}")
        if time.monotonic() > end:
            raise RuntimeError(f"timed out after {seconds:.0f} s waiting for {what}: "
                               f"{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)



# ---------------------------------------------------------------------------------------------------------------
# Figures


def memory_drift(samples: list[dict], node: str, total_s: float, warmup_s: float, window_s: float,
                 progress: str = "audio_s") -> dict:
    """Median RSS in the last ``window_s`` of audio against the median in the first ``window_s`` after
    ``warmup_s`` (audio as the node has handled it: ``progress``); plus the least-squares slope after the warm-up,
    and start/peak/end values."""
    rows = [(s[progress], s[node]["rss_mb"]) for s in samples if s.get(node) and s[node].get("rss_mb") is not None]
    if not rows:
        return {"drift_percent": None}
    after = [(t, m) for t, m in rows if t >= warmup_s]
    first = [m for t, m in after if t < warmup_s + window_s]
    last = [m for t, m in after if t >= total_s - window_s]
    result: dict = {"start_mb": rows[0][1], "end_mb": rows[-1][1], "peak_mb": max(m for _, m in rows),
                    "samples": len(rows), "samples_first_window": len(first), "samples_last_window": len(last)}
    if first and last:
        base, end = statistics.median(first), statistics.median(last)
        result.update({"baseline_mb": base, "final_mb": end, "drift_mb": end - base,
                       "drift_percent": 100.0 * (end - base) / base,
                       "peak_after_warmup_percent": 100.0 * (max(m for _, m in after) - base) / base})
    else:
        result["drift_percent"] = None
    if len(after) >= 3:
        t = np.array([r[0] for r in after]) / 3600.0
        m = np.array([r[1] for r in after])
        result["slope_mb_per_hour"] = float(np.polyfit(t, m, 1)[0]) if np.ptp(t) > 0 else 0.0
    return result


def cpu_figures(samples: list[dict], node: str, warmup_s: float, progress: str = "audio_s") -> dict:
    """Mean CPU percent (of one core) and CPU seconds per second of audio, from the first sample with audio
    handled to the last; threads and open files after the warm-up (a leak of either shows there)."""
    rows = [s for s in samples if s.get(node) and s[node].get("cpu_s") is not None and s[progress] > 0]
    if len(rows) < 2:
        return {}
    first, last = rows[0], rows[-1]
    cpu = last[node]["cpu_s"] - first[node]["cpu_s"]
    wall = last["wall_s"] - first["wall_s"]
    audio = last[progress] - first[progress]
    percents = [s[node]["cpu_percent"] for s in rows if s[node].get("cpu_percent") is not None]
    settled = [s[node] for s in rows if s[progress] >= warmup_s] or [last[node]]
    return {"cpu_seconds_total": last[node]["cpu_s"], "mean_percent": 100.0 * cpu / wall if wall > 0 else None,
            "p95_percent": float(np.percentile(percents, 95)) if percents else None,
            "cpu_seconds_per_audio_second": cpu / audio if audio > 0 else None,
            "threads_after_warmup": [min(r["threads"] for r in settled), max(r["threads"] for r in settled)],
            "open_files_after_warmup": [min(r["fds"] for r in settled), max(r["fds"] for r in settled)]}


def streaming_samples(samples: list[dict], progress: str = "audio_s") -> list[dict]:
    """The samples taken while a node worked: up to the first one that saw its last hop (later ones catch it idle
    or shutting down, freeing memory)."""
    if not samples:
        return []
    final = max(sample[progress] for sample in samples)
    kept = []
    for sample in samples:
        kept.append(sample)
        if sample[progress] >= final:
            break
    return kept


def retarget_speed(samples: list[dict], generation_s: float | None) -> dict:
    """Seconds of audio the retargeting node handled per second of wall time while the gesture node was still
    generating (both nodes busy) and after (it alone). Time-compressed, below 1 while generating means it could not
    keep up with real time even with the relay waiting for it: the cores it competes for are the gesture node's."""
    rows = [(s["wall_s"], s["robot_audio_s"]) for s in samples if s.get("robot_audio_s") is not None]

    def speed(part: list[tuple[float, float]]) -> float | None:
        part = [r for r in part if r[1] > 0]
        if len(part) < 2 or part[-1][0] <= part[0][0]:
            return None
        return (part[-1][1] - part[0][1]) / (part[-1][0] - part[0][0])

    if generation_s is None:
        return {"while_generating": speed(rows), "after": None}
    return {"while_generating": speed([r for r in rows if r[0] <= generation_s]),
            "after": speed([r for r in rows if r[0] >= generation_s])}


def _percentiles_ms(values_s: list[float]) -> dict:
    if not values_s:
        return {"p50": None, "p95": None, "max": None}
    array = np.asarray(values_s) * 1000.0
    return {"p50": float(np.percentile(array, 50)), "p95": float(np.percentile(array, 95)), "max": float(array.max())}


# ---------------------------------------------------------------------------------------------------------------
# The run


def _params_file(directory: Path, settings: SoakSettings) -> tuple[Path, int]:
    """The shipped parameters with the soak's changes: the file unpaced (time-compressed) or paced, the gesture
    node's threads, the retargeting node on simulated time (time-compressed) and stamping its trajectories with
    its clock (``stamp: now``: absolute command times, for the drift figure)."""
    params = yaml.safe_load(default_params_file().read_text())
    gesture = params["gesture_node"]["ros__parameters"]
    retarget = params["retarget_node"]["ros__parameters"]
    gesture.update({"realtime": settings.paced, "num_threads": settings.threads})
    if settings.weights:
        gesture["weights"] = settings.weights
    retarget["stamp"] = "now"
    if not settings.paced:
        retarget["use_sim_time"] = True
    path = directory / "soak_params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path, int(gesture.get("lookahead_frames", 4))


def _start_nodes(settings: SoakSettings, params: Path, audio: Path, work: Path, log_file,
                 env: dict[str, str]) -> dict[str, subprocess.Popen]:
    """Both nodes with the command lines dimgestor-launch builds (same launch description, parameters files and
    overrides), autostart off; time-compressed, the retargeting node's input remapped to this monitor's relay."""
    from ..launch_spec import node_set, resolve_arguments
    from ..launcher import node_command, write_overrides

    specs = node_set(resolve_arguments({"audio_source": "file", "audio_file": str(audio), "robot": settings.robot,
                                        "params_file": str(params), "autostart": "false"}))
    processes = {}
    for spec in specs:
        command = node_command(spec, write_overrides(spec, work))
        if spec.name == "retarget_node" and not settings.paced:
            command += ["-r", f"gesture_joints:={RELAY_TOPIC}"]
        log_file.write(f"[soak] starting {spec.name}: {' '.join(command)}\n")
        log_file.flush()
        processes[spec.name] = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                                start_new_session=True)
    return processes


def _stop(process: subprocess.Popen, timeout: float = 15.0) -> int:
    """SIGINT (what Ctrl-C and the launcher send), then SIGKILL after ``timeout``; the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def _sample(monitor: Monitor, pids: dict[str, int], previous: dict[str, dict], wall_s: float) -> dict:
    """One row of the per-sample log: the monitor's view and each node's /proc readings (CPU % since the last)."""
    now = time.monotonic()
    row = {"wall_s": round(wall_s, 3), **monitor.snapshot()}
    for name in NODES:
        reading = read_proc(pids[name])
        if reading is not None and name in previous:
            reading["cpu_percent"] = 100.0 * (reading["cpu_s"] - previous[name]["cpu_s"]) / (now - previous[name]["_t"])
        if reading is not None:
            previous[name] = {**reading, "_t": now}
        row[name] = reading
    return row


def run_soak(settings: SoakSettings, out: Path | None, samples_path: Path | None, doc: Path | None,
             logs_path: Path | None) -> dict:
    """Run the soak and write its outputs; returns the summary."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    from .common import machine_info

    if settings.minutes <= 0:
        raise UserError("--minutes must be > 0")
    settings.warmup_minutes = min(5.0, settings.minutes / 5)
    settings.window_minutes = min(5.0, settings.minutes / 5)
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    machine = machine_info("cpu", settings.threads)
    limits = LimitCheck.for_robot(settings.robot)
    started_utc = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    samples: list[dict] = []
    exit_codes: dict[str, int | None] = {}
    failure = ""
    stream_start = gesture_end = None

    with tempfile.TemporaryDirectory(prefix="dimgestor_soak_") as tmp:
        work = Path(tmp)
        audio_path = work / "soak_speech.wav"
        print(f"building {settings.minutes:g} min of speech ...", flush=True)
        audio = build_speech(audio_path, settings.minutes, settings.seed)
        params, lookahead = _params_file(work, settings)
        log = logs_path or work / "nodes.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        origin_ns = (time.time_ns() // 1_000_000_000) * 1_000_000_000
        monitor = Monitor(settings, limits, lookahead, audio["seconds"], origin_ns)
        sample_file = None
        if samples_path is not None:
            samples_path.parent.mkdir(parents=True, exist_ok=True)
            sample_file = samples_path.open("w")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        wall_start = time.monotonic()
        with log.open("w") as log_file:
            processes = _start_nodes(settings, params, audio_path, work, log_file, env)
        pids = {name: process.pid for name, process in processes.items()}
        try:
            # Connected: this monitor hears the gesture node; the retargeting node listens to its input (the relay
            # or /gesture_joints) and to /clock; the gesture node's lifecycle services answer.
            if settings.paced:
                _wait(lambda: monitor.node.count_subscribers("/gesture_joints") >= 2, 120, "the retargeting node",
                      processes, log)
            else:
                _wait(lambda: monitor.relay_pub.get_subscription_count() >= 1
                      and monitor.clock_pub.get_subscription_count() >= 1, 120, "the retargeting node", processes, log)
            probe = monitor.node.create_client(ChangeState, "/gesture_node/change_state")
            _wait(probe.service_is_ready, 120, "the gesture node's lifecycle services", processes, log)
            monitor.node.destroy_client(probe)
            time.sleep(1.0)  # replies travel on a route DDS discovers on its own (see test_lifecycle.py)
            _lifecycle_call(monitor, Transition.TRANSITION_CONFIGURE, "inactive", 300)
            monitor.activated_wall_ns = time.time_ns()
            _lifecycle_call(monitor, Transition.TRANSITION_ACTIVATE, "active", 60)
            stream_start = time.monotonic()
            monitor.own_cpu_start = read_proc(os.getpid())["cpu_s"]
            monitor.last_progress = time.monotonic()  # the stall timeout counts from here
            print(f"streaming {audio['seconds'] / 60:.1f} min of speech through gesture_node (pid "
                  f"{pids['gesture_node']}) and retarget_node (pid {pids['retarget_node']})"
                  f"{', time-compressed' if not settings.paced else ', paced'} ...", flush=True)
            previous: dict[str, dict] = {}
            next_sample, next_print = time.monotonic(), time.monotonic() + 60
            gesture = processes["gesture_node"]
            # Until the gesture node has ended (its audio done) and the retargeting node has answered every hop.
            while gesture.poll() is None or not monitor.all_answered():
                now = time.monotonic()
                if gesture_end is None and gesture.poll() is not None:
                    gesture_end = now
                    if gesture.returncode != 0:
                        failure = f"gesture_node exited with code {gesture.returncode}"
                        break
                if processes["retarget_node"].poll() is not None:
                    failure = f"retarget_node exited with code {processes['retarget_node'].returncode}"
                    break
                if now >= next_sample:
                    row = _sample(monitor, pids, previous, now - stream_start)
                    samples.append(row)
                    if sample_file is not None:
                        sample_file.write(json.dumps(row) + "\n")
                        sample_file.flush()
                    next_sample += settings.sample_interval_s
                if now >= next_print:
                    snap = samples[-1] if samples else {}
                    rss = {name: (snap.get(name) or {}).get("rss_mb", float("nan")) for name in NODES}
                    print(f"  {snap.get('audio_s', 0) / 60:5.1f} min of audio generated, "
                          f"{snap.get('robot_audio_s', 0) / 60:5.1f} retargeted after "
                          f"{(now - stream_start) / 60:5.1f} min; rss gesture {rss['gesture_node']:.0f} MB, retarget "
                          f"{rss['retarget_node']:.0f} MB", flush=True)
                    next_print += 60
                if now - monitor.last_progress > STALL_TIMEOUT_S:
                    failure = f"no progress for {STALL_TIMEOUT_S:.0f} s: stopped"
                    break
                time.sleep(0.05)
            if gesture_end is None and processes["gesture_node"].poll() is not None:
                gesture_end = time.monotonic()  # it ended while the loop's last lap slept
            if not failure:
                # The end of a stream: the retargeting node holds, then fades home (time-compressed: the clock runs
                # on for that); its /diagnostics then count every frame in.
                monitor.finish(SETTLE_S)
                end = time.monotonic() + 30
                while not monitor.settled() and time.monotonic() < end:
                    time.sleep(0.1)
            if samples and not failure:  # one last row with everything answered
                row = _sample(monitor, pids, previous, time.monotonic() - stream_start)
                samples.append(row)
                if sample_file is not None:
                    sample_file.write(json.dumps(row) + "\n")
        except RuntimeError as error:
            failure = str(error)
        finally:
            wall_s = time.monotonic() - (stream_start or wall_start)
            monitor.own_cpu_end = read_proc(os.getpid())["cpu_s"]
            # The gesture node ends by itself at the end of its audio; the retargeting node is stopped as the
            # launcher stops it, with SIGINT.
            for name in ("gesture_node", "retarget_node"):
                exit_codes[name] = _stop(processes[name], 30.0 if name == "gesture_node" else 15.0)
            time.sleep(0.5)
            monitor.close()
            if sample_file is not None:
                sample_file.close()
        log_text = log.read_text(errors="replace")

    summary = summarise(settings, audio, samples, monitor, scan_log(log_text), exit_codes, wall_s,
                        (gesture_end - stream_start) if gesture_end and stream_start else None, failure, machine,
                        started_utc)
    from .report import write_report

    write_report(summary, out)
    if doc is not None:
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_text(render_markdown(summary, out, samples_path, logs_path, doc))
        print(f"wrote {doc}")
    print_summary(summary)
    return summary


def summarise(settings: SoakSettings, audio: dict, samples: list[dict], monitor: Monitor, log: dict,
              exit_codes: dict[str, int | None], wall_s: float, generation_s: float | None, failure: str,
              machine: dict, started_utc: str) -> dict:
    """The summary JSON: report head, the stream, per-node memory and CPU, latency, drift, limits, log, verdict."""
    from .common import report_head

    head = report_head("soak", SCHEMA, machine, settings, __doc__)
    head.pop("timing_method", None)  # about timed torch calls; the soak's method is in `method`
    head["method_paragraphs"] = [" ".join(part.split()) for part in __doc__.split("\n\n")[1:]]
    audio_s = monitor.frames / FPS
    total_s = audio["seconds"]
    warmup_s, window_s = settings.warmup_minutes * 60, settings.window_minutes * 60
    gesture_diag = monitor.diagnostics.get("gesture_node", {})
    robot_diag = monitor.diagnostics.get("retarget_node", {})
    expected_frames = audio["samples"] * FPS / SAMPLE_RATE
    memory, cpu = {}, {}
    for name in NODES:
        progress = PROGRESS[name]
        working = streaming_samples(samples, progress)
        memory[name] = memory_drift(working, name, total_s, warmup_s, window_s, progress)
        cpu[name] = cpu_figures(working, name, warmup_s, progress)
    if monitor.own_cpu_start is not None and monitor.own_cpu_end is not None and audio_s > 0:
        own = monitor.own_cpu_end - monitor.own_cpu_start
        cpu["monitor"] = {"mean_percent": 100.0 * own / wall_s if wall_s > 0 else None,
                          "cpu_seconds_per_audio_second": own / audio_s}
    answered = [d for d in monitor.robot_drift if d == d]  # NaN: a hop the clock stopped waiting for
    robot_drift = max((abs(d) for d in answered), default=None)
    end_drift = abs(monitor.frames - expected_frames)
    diag_p95 = [float(s["diagnostics"]["gesture_node"]["latency_p95_ms"]) for s in samples
                if "latency_p95_ms" in s.get("diagnostics", {}).get("gesture_node", {})]
    hops = len(monitor.hop_frames)
    frames_in = int(robot_diag.get("frames_in", -1))
    figures = {
        "audio": audio,
        "wall_seconds": wall_s,
        "generation_seconds": generation_s,
        "compression": audio_s / wall_s if wall_s > 0 else None,
        "started_utc": started_utc,
        "ended_utc": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "exit_codes": exit_codes,
        "failure": failure,
        "samples": len(samples),
        "stream": {
            "hops": hops,
            "frames": monitor.frames,
            "frames_expected": expected_frames,
            "hops_out_of_order": monitor.hops_out_of_order,
            "hops_passed_on": monitor.relayed if monitor.relay else None,
            "robot_trajectories": monitor.robot_messages,
            "robot_answers": monitor.robot_answers,
            "robot_trajectories_unsolicited": monitor.robot_unsolicited,
            "retarget_frames_in": frames_in,
            "robot_points_per_message": _spread(monitor.robot_points),
            "clock_messages": monitor.clock_messages,
            "clock_gate_timeouts": monitor.gate_timeouts,
            "retarget_audio_seconds_per_wall_second": retarget_speed(samples, generation_s),
            "answer_sim_time_minus_arrival_ms": (
                _spread(monitor.robot_answer_vs_arrival_ms) if monitor.robot_answer_vs_arrival_ms else None),
            "last_diagnostics": {"gesture_node": gesture_diag, "retarget_node": robot_diag},
        },
        "memory": memory,
        "cpu": cpu,
        "latency_ms": {
            "definition": ("publication (DDS source timestamp) - audio time of the end of the hop's frames"
                           if settings.paced else "a paced replay of the measured per-hop compute, see Method"),
            "gesture": _percentiles_ms(monitor.hop_latency_s[1:]),  # the first hop includes the model's warm-up
            "gesture_first_hop_ms": monitor.hop_latency_s[0] * 1000 if monitor.hop_latency_s else None,
            "gesture_diagnostics": {
                "p50_last": float(gesture_diag["latency_p50_ms"]) if "latency_p50_ms" in gesture_diag else None,
                "p95_last": float(gesture_diag["latency_p95_ms"]) if "latency_p95_ms" in gesture_diag else None,
                "p95_max": max(diag_p95) if diag_p95 else None,
                "note": "the node's own figures over its last 200 hops (monotonic clock), as last published and the "
                        "largest p95 published; time-compressed they measure the stream's lead over the wall clock "
                        "(negative), meaningful only paced",
            },
            "retarget_answer": _percentiles_ms([x / 1000 for x in monitor.robot_lag_ms]),
            "retarget_answer_definition": (
                "wall time from the hop's publication by the gesture node to the robot trajectory's" if settings.paced
                else "wall time from the hop's relay by this monitor to the robot trajectory's; time-compressed it "
                "includes waiting behind the /clock messages in the node's executor and for the cores, which the "
                "gesture node, generating several times faster than real time, mostly holds"),
        },
        "timestamp_drift_frames": {
            "gesture_stamps_vs_frame_index": monitor.stamp_drift_max,
            "gesture_frames_vs_audio_length": end_drift,
            "robot_timeline_vs_audio": robot_drift,
            "max": max(x for x in (monitor.stamp_drift_max, end_drift, robot_drift or 0.0)),
        },
        "robot_limits": monitor.limits.summary(),
        "log": log,
    }
    memory_ok = all(memory[name].get("drift_percent") is not None
                    and memory[name]["drift_percent"] <= MEMORY_LIMIT_PERCENT for name in NODES)
    acceptance = {
        "memory_drift_at_most_2_percent": memory_ok,
        "timestamp_drift_at_most_1_frame": figures["timestamp_drift_frames"]["max"] <= DRIFT_LIMIT_FRAMES
        and robot_drift is not None,
        "no_unhandled_exceptions": log["tracebacks"] == 0,
        "no_error_lines": log["error_lines"] == 0,
        "no_command_outside_urdf_limits": monitor.limits.violations == 0 and monitor.limits.points > 0,
        # Every frame generated, in order, every hop retargeted once, both nodes ended cleanly.
        "whole_stream_delivered": not failure and exit_codes.get("gesture_node") == 0
        and exit_codes.get("retarget_node") in (0, -signal.SIGINT) and monitor.hops_out_of_order == 0
        and abs(monitor.frames - expected_frames) <= 1 and monitor.robot_answers == hops
        and monitor.gate_timeouts == 0 and frames_in == monitor.frames,
    }
    acceptance["passed"] = all(acceptance.values())
    return {**head, **figures, "acceptance": acceptance}


def _spread(values: list[int]) -> dict:
    if not values:
        return {}
    return {"min": int(min(values)), "median": float(statistics.median(values)), "max": int(max(values))}


# ---------------------------------------------------------------------------------------------------------------
# Output


def _span(pair) -> str:
    if not pair:
        return "-"
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}-{pair[1]}"


def _fmt(value, digits: int = 1, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}{unit}"


def print_summary(summary: dict) -> None:
    accept, codes = summary["acceptance"], summary["exit_codes"]
    print(f"soak: {summary['stream']['frames'] / FPS / 60:.1f} min of audio in {summary['wall_seconds'] / 60:.1f} min "
          f"({'paced' if summary['settings']['paced'] else 'time-compressed'}), exit codes "
          + ", ".join(f"{name} {code}" for name, code in codes.items())
          + (f", FAILURE: {summary['failure']}" if summary["failure"] else ""))
    for name in NODES:
        memory, cpu = summary["memory"][name], summary["cpu"][name]
        print(f"  {name:>13}: rss {_fmt(memory.get('baseline_mb'))} -> {_fmt(memory.get('final_mb'))} MB "
              f"(drift {_fmt(memory.get('drift_percent'), 2, ' %')}, slope {_fmt(memory.get('slope_mb_per_hour'), 2)}"
              f" MB/h), cpu {_fmt(cpu.get('mean_percent'))} % ({_fmt(cpu.get('cpu_seconds_per_audio_second'), 3)} "
              f"s per s of audio)")
    latency = summary["latency_ms"]["gesture"]
    stream = summary["stream"]
    print(f"  {stream['hops']} hops, {stream['robot_answers']} retargeted; latency beyond hop p50 "
          f"{_fmt(latency['p50'])} ms, p95 {_fmt(latency['p95'])} ms; timestamp drift "
          f"{_fmt(summary['timestamp_drift_frames']['max'], 3)} frames; out of URDF limits "
          f"{summary['robot_limits']['out_of_limits']} of {summary['robot_limits']['commands_checked']} commands; "
          f"tracebacks {summary['log']['tracebacks']}, error lines {summary['log']['error_lines']}")
    print(f"  acceptance: {'PASSED' if accept['passed'] else 'FAILED'} "
          f"({', '.join(k for k, v in accept.items() if k != 'passed' and not v) or 'all criteria met'})")


def _yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


def render_markdown(summary: dict, json_path: Path | None, samples_path: Path | None, logs_path: Path | None,
                    doc_path: Path | None = None) -> str:
    """docs/soak.md from the summary alone (every figure is read from it)."""
    settings, machine, stream, audio = summary["settings"], summary["machine"], summary["stream"], summary["audio"]
    accept, codes = summary["acceptance"], summary["exit_codes"]
    paced = settings["paced"]
    mode = "paced in real time" if paced else "time-compressed (see below)"
    drift = summary["timestamp_drift_frames"]
    limits = summary["robot_limits"]
    latency = summary["latency_ms"]
    mem = summary["memory"]
    robot_diag = stream["last_diagnostics"]["retarget_node"]
    gesture_diag = stream["last_diagnostics"]["gesture_node"]
    worst = limits.get("largest_ratio_to_velocity_limit", {})
    lines = [
        "# Soak test",
        "",
        "<!-- Generated by `dimgestor bench soak` from its summary JSON: do not edit by hand; rerun the soak "
        f"(or re-render: `dimgestor bench soak --json {json_path or 'SUMMARY.json'} --doc "
        f"{doc_path or 'REPORT.md'}`). -->",
        "",
        f"{audio['seconds'] / 60:.3g} minutes of speech through the running gesture and retargeting nodes, "
        f"{mode}, with each node's resident memory, CPU, latency and timestamp drift logged, every robot command "
        "checked against the URDF limits and the nodes' output searched for exceptions (issue 9).",
        "",
        f"**Result: {'all acceptance criteria met' if accept['passed'] else 'FAILED'}.**"
        + (f" Failure: {summary['failure']}" if summary["failure"] else ""),
        "",
        "| criterion | figure | met |",
        "|---|---|---|",
        f"| memory drift <= 2 % over the {'hour' if audio['seconds'] >= 3599 else 'run'} | "
        + "; ".join(f"{name} {_fmt(mem[name].get('drift_percent'), 2, ' %')} ({_fmt(mem[name].get('drift_mb'), 1)} "
                    f"MB)" for name in NODES)
        + f" | {_yes(accept['memory_drift_at_most_2_percent'])} |",
        f"| no timestamp drift beyond one frame | {_fmt(drift['max'], 3)} frames (largest of the three below) | "
        f"{_yes(accept['timestamp_drift_at_most_1_frame'])} |",
        f"| zero unhandled exceptions in the logs | {summary['log']['tracebacks']} tracebacks, "
        f"{summary['log']['error_lines']} [ERROR]/[FATAL] lines | "
        f"{_yes(accept['no_unhandled_exceptions'] and accept['no_error_lines'])} |",
        f"| zero robot commands outside the URDF limits | {limits['out_of_limits']} of {limits['commands_checked']:,} "
        f"joint commands ({limits['points_checked']:,} trajectory points) | "
        f"{_yes(accept['no_command_outside_urdf_limits'])} |",
        f"| the whole stream generated and retargeted | {stream['frames']:,} of {stream['frames_expected']:,.0f} "
        f"frames generated, "
        + (f"{stream['retarget_frames_in']:,} frames into the retargeting node ({stream['robot_trajectories']:,} "
           "robot trajectories: connected directly, answers to hops and stale-input trajectories are not told "
           "apart)" if paced else f"{stream['robot_answers']:,} of {stream['hops']:,} hops retargeted "
           f"({stream['retarget_frames_in']:,} frames in)")
        + ", exit codes "
        + ", ".join(f"{name} {code}" for name, code in codes.items())
        + f" | {_yes(accept['whole_stream_delivered'])} |",
        "",
        "## Run",
        "",
        "```",
        summary["command"],
        "```",
        "",
        f"- Machine: {machine.get('processor')}, {machine.get('cpus_usable')} usable cores, "
        f"{_fmt(machine.get('memory_gb'), 0)} GB; {machine.get('platform')}; Python {machine.get('python')}, "
        f"torch {machine.get('torch')}; gesture node `num_threads` {settings['threads']} (its default: 2); load "
        f"average {machine.get('load_average_start')} at the start, {machine.get('load_average_end')} at the end.",
        f"- Started {summary['started_utc']}, ended {summary['ended_utc']}: {summary['wall_seconds'] / 60:.1f} min "
        f"of wall time for {stream['frames'] / FPS / 60:.1f} min of audio"
        + (f" ({summary['compression']:.2f}x real time)" if summary.get("compression") else "")
        + (f"; the gesture node finished its audio after {summary['generation_seconds'] / 60:.1f} min."
           if summary.get("generation_seconds") else "."),
        f"- Speech: {audio['segments']} excerpts of {', '.join('`' + s + '`' for s in audio['sources'])} at "
        f"0.9-1.1x speed and {audio['gain_db_range'][0]:.0f} to {audio['gain_db_range'][1]:.0f} dB, "
        f"{100 * audio['speech_fraction']:.0f} % speech, {audio['long_pauses']} pauses of 10-40 s, a -70 to -55 dBFS "
        f"noise floor (seed {audio['seed']}).",
        f"- Robot: `{settings['robot']}`. Sampled every {settings['sample_interval_s']:g} s of wall time "
        f"({summary['samples']} samples)"
        + (f"; per-sample log `{samples_path}`" if samples_path else "")
        + (f"; nodes' output `{logs_path}`" if logs_path else "")
        + (f"; summary `{json_path}`" if json_path else "") + ".",
        "",
        "## Memory and CPU",
        "",
        f"Warm-up: the first {settings['warmup_minutes']:g} min of the audio a node has handled; drift: median RSS "
        f"over the last {settings['window_minutes']:g} min against the median over the first "
        f"{settings['window_minutes']:g} min after the warm-up. CPU percent is of one core while the node worked"
        + ("" if paced else " (time-compressed: several times a paced run's)")
        + "; CPU seconds per second of audio is the load of a paced run (x 100: percent of a core).",
        "",
        "| node | RSS before the stream | baseline | final | peak | drift | slope after warm-up | CPU | CPU s per "
        "audio s | threads | open files |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in NODES:
        m, c = mem[name], summary["cpu"][name]
        lines.append(
            f"| {name} | {_fmt(m.get('start_mb'))} MB | {_fmt(m.get('baseline_mb'))} MB | {_fmt(m.get('final_mb'))} "
            f"MB | {_fmt(m.get('peak_mb'))} MB | {_fmt(m.get('drift_mb'), 2)} MB "
            f"({_fmt(m.get('drift_percent'), 2, ' %')}) | {_fmt(m.get('slope_mb_per_hour'), 2)} MB/h | "
            f"{_fmt(c.get('mean_percent'))} % | "
            f"{_fmt(c.get('cpu_seconds_per_audio_second'), 3)} | {_span(c.get('threads_after_warmup'))} | "
            f"{_span(c.get('open_files_after_warmup'))} |")
    gd = latency["gesture_diagnostics"]
    answer = latency["retarget_answer"]
    paced_speed = (stream.get("retarget_audio_seconds_per_wall_second") or {}).get("while_generating")
    lines += [
        "",
        "The gesture node's RSS includes the whole speech file, which its file source holds from configure on "
        f"({audio['samples'] * 4 / 2**20:.0f} MB as float32 for this run): constant, but part of the baseline the "
        "percentage is taken of; the drift in MB is beside it.",
        "",
        "## Latency",
        "",
        f"Latency beyond the hop ({latency['definition']}), over {stream['hops'] - 1:,} hops (the first, with the "
        f"model's warm-up, apart: {_fmt(latency['gesture_first_hop_ms'], 0)} ms): p50 "
        f"{_fmt(latency['gesture']['p50'])} ms, p95 {_fmt(latency['gesture']['p95'])} ms, max "
        f"{_fmt(latency['gesture']['max'])} ms. "
        + (f"The node's own `/diagnostics` figures, over its last 200 hops as last published: p50 "
           f"{_fmt(gd['p50_last'])} ms, p95 {_fmt(gd['p95_last'])} ms (largest p95 published "
           f"{_fmt(gd['p95_max'])} ms, the first hop included). " if paced else
           "The node's own `/diagnostics` latency is not used here: it times hops against the wall clock from the "
           "start of the stream, so an unpaced file, running ahead of the wall clock, reads as negative latency. ")
        + f"Retargeting node ({latency['retarget_answer_definition']}): p50 {_fmt(answer['p50'])} ms, p95 "
        f"{_fmt(answer['p95'])} ms, max {_fmt(answer['max'])} ms"
        + (f"; it answered {_fmt(paced_speed, 3)} s of audio per second while the stream ran (1: it kept up)"
           if paced and paced_speed is not None else "") + ".",
        "",
        "## Timestamp drift",
        "",
        f"- `/gesture_joints`: each hop's header stamp against the frames published before it: largest deviation "
        f"{_fmt(drift['gesture_stamps_vs_frame_index'], 6)} frames over {stream['hops']:,} hops.",
        f"- Frames published against the audio's length: {stream['frames']:,} for {stream['frames_expected']:,.1f} "
        f"frames of audio ({_fmt(drift['gesture_frames_vs_audio_length'], 2)} frames apart).",
        f"- `/retarget/joint_trajectory`: the moment each hop's last frame is commanded against that frame's audio "
        f"time, relative to the first hop: largest deviation {_fmt(drift['robot_timeline_vs_audio'], 6)} frames over "
        f"{stream['robot_answers']:,} trajectories; late chunks (the robot waited) "
        f"{robot_diag.get('late_chunks', '-')}.",
        "",
        "## Robot limits and logs",
        "",
        f"Every point of every trajectory on `/retarget/joint_trajectory` ({stream['robot_trajectories']:,} messages, "
        f"{limits['points_checked']:,} points, {limits['commands_checked']:,} joint commands) against the URDF of "
        f"`{settings['robot']}`: {limits['position']} positions outside the limits, {limits['velocity_sent']} "
        f"velocities sent beyond the velocity limit, {limits['speed_between_points']} steps between consecutive "
        f"points faster than it. Closest to the velocity limit: velocities sent "
        f"{_fmt(worst.get('velocity_sent_over_limit'), 9)} x the limit, speed between points "
        f"{_fmt(worst.get('speed_between_points_over_limit'), 9)} x (the limiter keeps commands at most velocity x "
        "frame time apart; the velocities are central differences on the nanosecond time grid of the points). "
        "Retargeting node's last `/diagnostics`: "
        + ", ".join(f"{k} {robot_diag.get(k, '-')}" for k in ("frames_in", "late_chunks", "commands_clipped_position",
                                                             "commands_clipped_velocity", "trajectories_invalid",
                                                             "rejected_messages", "scheduled_ahead_s"))
        + " (`commands_clipped_*` count targets the limiter had to hold back, before publishing). Gesture node's: "
        + ", ".join(f"{k} {gesture_diag.get(k, '-')}" for k in ("real_time_factor", "frames_published", "overruns",
                                                               "dropped_audio_chunks", "audio_clipped_samples",
                                                               "model_non_finite_windows"))
        + ".",
        "",
        f"Nodes' output: {summary['log']['tracebacks']} tracebacks, {summary['log']['error_lines']} [ERROR]/[FATAL] "
        "lines" + (": " + "; ".join(f"`{e.splitlines()[0][:200]}`" for e in summary["log"]["examples"])
                  if summary["log"]["examples"] else "") + ".",
        "",
        "## Method",
        "",
        *[line for paragraph in summary.get("method_paragraphs", [summary["method"]]) for line in (paragraph, "")],
    ]
    if paced:
        return "\n".join(lines)
    points = stream.get("robot_points_per_message") or {}
    offset = stream.get("answer_sim_time_minus_arrival_ms") or {}
    speed = stream.get("retarget_audio_seconds_per_wall_second") or {}
    lines += [
        "### Time compression against a paced run",
        "",
        "Why not simply the nodes connected as usual, the file unpaced: the retargeting node schedules each chunk's "
        "commands one frame apart from its arrival on its own clock, continuing the previous chunk's, and every "
        "message repeats all commands still to come. Fed several times faster than real time, its schedule (and "
        "every message) grows without bound, a backlog no paced run has; and it falls behind a stream that fast, "
        "so the gesture node's RELIABLE depth-20 queue overwrites hops it has not read (an hour tried that way "
        "retargeted under a tenth of the hops, with trajectories a minute long). Hence the simulated clock and the "
        "relay, which give it each hop at its paced moment and wait for its answer.",
        "",
        "What is the same: the gesture node does the same work per second of audio (the same chunks, hops, "
        "windows and sampling steps; its overload policy never acts on an unpaced file, and it does not act in a "
        "paced run that keeps up either), so its memory per hour of audio, its stamps and its frame counting are "
        "those of a paced hour. The retargeting node gets the same hops at the same (simulated) moments as paced: "
        f"it answered each at its moment ({_fmt(offset.get('median'), 1)} ms median, {_fmt(offset.get('min'), 1)} to "
        f"{_fmt(offset.get('max'), 1)} ms, simulated time), and its trajectories carried the schedule of a paced "
        f"stream (median {_fmt(points.get('median'), 0)} points, {_fmt(points.get('max'), 0)} at most: the lead time, "
        "the hop and the slack the first hop's warm-up leaves, as it would paced).",
        "",
        "Real time: while the gesture node was generating (several times faster than real time, so both nodes "
        "were busy), the retargeting node handled "
        f"{_fmt(speed.get('while_generating'), 2)} s of audio per second of wall time, and "
        f"{_fmt(speed.get('after'), 2)} s once it had the cores to itself"
        + (" (below 1 while generating: competing for the cores with a busy gesture node, it was slower than real "
           "time; the relay waited for it, so nothing was lost here, but a paced run, `--paced`, shows whether it "
           "keeps up when the gesture node runs at its paced load)" if (speed.get("while_generating") or 1) < 1
           else "") + ".",
        "",
        "What differs: CPU percentages are higher than paced (the same work in less time; CPU seconds per second of "
        "audio is the paced-equivalent figure, except that it also counts what competing for the cores costs: "
        "torch's OpenMP worker threads spin while they wait, and the retargeting node's torch runs as many "
        "threads as there are cores, so while both nodes are busy its CPU per second of audio rises several-fold; "
        "it also handles the /clock messages, one per frame, which a paced run does not have; "
        "`--paced` measures the paced figures), and this monitor takes "
        f"{_fmt(summary['cpu'].get('monitor', {}).get('mean_percent'))} % of a core beside them; the latency is a "
        "replay of the measured compute, not a measurement of a paced stream, and pessimistic because the nodes "
        "compete for the cores at several times their paced load; the hops reach the retargeting node through this "
        "monitor (the same messages, one more DDS hop) rather than straight from the gesture node; its 30 Hz timer "
        "and 1 Hz `/diagnostics` run on the simulated clock (timer periods that the clock passes while its executor "
        "is busy are coalesced); a leak that grows with wall time rather than with audio (none is known) would show "
        "less in a compressed hour. A paced run (`--paced`: both nodes on the wall clock, connected directly) "
        "measures latency directly and takes an hour.",
        "",
    ]
    return "\n".join(lines)


def run(args) -> dict:
    """Entry point of `dimgestor bench soak` (arguments from bench/cli.py); ``--json`` re-renders the markdown."""
    if args.json:
        summary = json.loads(Path(args.json[0]).read_text())
        if args.samples is not None and args.samples.is_file():  # figures derived from the per-sample log
            rows = [json.loads(line) for line in args.samples.read_text().splitlines() if line.strip()]
            summary["stream"]["retarget_audio_seconds_per_wall_second"] = retarget_speed(
                rows, summary.get("generation_seconds"))
            Path(args.json[0]).write_text(json.dumps(summary, indent=2) + "\n")
        doc = args.doc or Path("docs/soak.md")
        doc.write_text(render_markdown(summary, Path(args.json[0]), args.samples, args.logs, doc))
        print(f"wrote {doc}")
        return summary
    if args.sample_interval <= 0 or args.clock_rate <= 0:
        raise UserError("--sample-interval and --clock-rate must be > 0")
    settings = SoakSettings(minutes=60.0 if args.minutes is None else args.minutes, robot=args.robot,
                            paced=args.paced, threads=args.threads, sample_interval_s=args.sample_interval,
                            clock_rate=args.clock_rate, weights=str(args.weights or ""))
    return run_soak(settings, args.out, args.samples, args.doc, args.logs)
