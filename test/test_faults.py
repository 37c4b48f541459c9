"""Fault tests with the real nodes (issue 9, part 2): each fault of the catalogue against real node processes.

Every test runs a gesture node and a retarget node as their own processes, over real rclpy/FastDDS, and checks
every point of every trajectory the retarget node published against the robot's URDF limits
(``ros_checks.assert_within_robot_limits``): zero commands outside them, whatever the fault.

Where each fault is tested:

- no input device, and the device disappearing mid-stream and returning: here, on a PulseAudio virtual microphone
  (test_virtual_microphone.py's recipe) that does not exist when the node is configured, then appears, is removed
  while the node records from it, and comes back;
- inference slower than real time (forced): test_overload.py, whose node is really overloaded (more sampling steps
  than this CPU runs in real time), with a retarget node and the same limits check;
- the subscriber disappearing, and the retarget node killed (SIGKILL) and restarted: here, in one run;
- NaN inside the model (forced): here; the gesture node runs in its own process through a small script that adds a
  torch forward hook to one of its real denoiser blocks, turning that block's output into NaN for three windows;
- SIGINT and SIGTERM to both nodes: here, at the end of the two runs above (test_retarget_node.py also covers the
  retarget node alone on both signals).

The runs are module fixtures, each shared by the tests of the faults it contains, so the file stays within about
a minute and a half of wall time on two cores.
"""

from __future__ import annotations

import re
import signal
import subprocess
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import Transition
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from conftest import TopicCollector
from dimgestor_ros.motion.bvh import read_bvh
from dimgestor_ros.motion.skeleton import HUMANOID
from dimgestor_ros.paths import demo_audio_file
from dimgestor_ros.retarget.robot import RobotConfig, load_robot_config
from ros_checks import (
    assert_valid_trajectories,
    assert_within_robot_limits,
    robot_limit_violations,
    stamp_s,
)
from test_lifecycle import Lifecycle, start_gesture_node
from test_overload import largest_steps
from test_retarget_node import _skeleton_chunk, wait_for
from test_retarget_node import start_node as start_retarget_node
from test_virtual_microphone import RATE, FifoWriter, VirtualMicrophone, require_pulseaudio

pytestmark = pytest.mark.timeout(240)

FPS = 30.0
HOP = 15  # frames per /gesture_joints message (the node's default hop)
ROBOT = "generic_humanoid"  # the retarget node's default robot


@pytest.fixture(scope="module")
def robot() -> RobotConfig:
    return load_robot_config(ROBOT)


@dataclass
class Run:
    """What one scenario left behind: messages per topic (with their arrival, monotonic), node logs and exit codes,
    and the monotonic times of its events."""

    messages: dict[str, list]
    arrival: dict[str, list[float]]
    logs: dict[str, str] = field(default_factory=dict)
    returncodes: dict[str, int | None] = field(default_factory=dict)
    events: dict[str, float] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def reports(messages) -> list[tuple[DiagnosticStatus, dict[str, str]]]:
    return [(status, values(status)) for msg in messages for status in msg.status]


def poses(messages) -> np.ndarray:
    return np.array([point.positions for msg in messages for point in msg.points])


def stop(process: subprocess.Popen, signum: int, timeout: float = 30) -> int | None:
    """Send ``signum`` to a node process and wait for it to end; kill it if it does not (the test then fails)."""
    if process.poll() is None:
        process.send_signal(signum)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return None
    return process.returncode


def kill_all(*processes: subprocess.Popen) -> None:
    for process in processes:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()


def joint_speed(frames: np.ndarray) -> np.ndarray:
    """Mean absolute joint-angle change per frame (rad), frame to frame."""
    return np.abs(np.diff(frames[:, 3:], axis=0)).mean(axis=1)


def assert_bvh_is_the_end_of_the_stream(bvh: Path, streamed: np.ndarray) -> int:
    """The recording reads back and ends with the frames ``streamed`` (what this process received of the same
    /gesture_joints) ends with, frame for frame: written up to the last frame the node received (flushed). Either
    may have missed the first hops (a subscription that DDS matched after the stream had started); the overlap must
    be at least three hops. Returns the number of frames recorded."""
    motion = read_bvh(bvh)
    recorded = motion.to_poses(0.01).astype(float)  # centimetres -> metres, as /gesture_joints carries them
    assert abs(motion.fps - FPS) < 1e-9 and motion.skeleton.bone_names == HUMANOID.bone_names
    overlap = min(len(recorded), len(streamed))
    assert overlap >= 3 * HOP, (len(recorded), len(streamed))
    np.testing.assert_allclose(recorded[-overlap:], streamed[-overlap:], atol=1e-4)
    return len(recorded)


ROOT_STEP_FLOOR = 0.001  # m per frame (3 cm/s): a root translation step no one could see as a jump


def assert_no_jump(stretch: np.ndarray, references: list[np.ndarray]) -> None:
    """No frame-to-frame step in ``stretch`` (frames, 63) larger than the largest step of the ``references``
    (stretches of ordinary speech motion of the same stream, each contiguous): joint angles and the root translation
    separately (radians, metres). The root hardly moves in speech motion (tenths of a millimetre per frame), so a
    hold fading it to the rest position may step further than speech did; it may go up to ROOT_STEP_FLOOR, still
    far below a jump (a pose thrown elsewhere moves by centimetres)."""
    root, joint = largest_steps(stretch)
    reference_root, reference_joint = np.max([largest_steps(frames) for frames in references], axis=0)
    print(f"largest frame step: root {root:.5f} m, joint {joint:.4f} rad; ordinary motion: root "
          f"{reference_root:.5f} m, joint {reference_joint:.4f} rad")
    assert joint <= reference_joint, (joint, reference_joint)
    assert root <= max(reference_root, ROOT_STEP_FLOOR), (root, reference_root)


# --- the limits check itself ---------------------------------------------------------------------------------------


def test_the_limits_check_finds_each_kind_of_violation(robot):
    """The helper every fault test relies on reports a position beyond a limit, a velocity beyond it, and a step
    too large for the time between two points, and passes a trajectory that respects them all."""
    names, limits = robot.joint_names, robot.urdf_limits
    dt_ns = round(1e9 / FPS)

    def message(positions: np.ndarray, velocities: np.ndarray) -> JointTrajectory:
        msg = JointTrajectory(joint_names=list(reversed(names)))  # any order: the check maps by name
        for k, (q, v) in enumerate(zip(positions, velocities)):
            point = JointTrajectoryPoint(positions=q[::-1].tolist(), velocities=v[::-1].tolist())
            point.time_from_start.sec, point.time_from_start.nanosec = divmod((k + 1) * dt_ns, 10**9)
            msg.points.append(point)
        return msg

    ramp = robot.home + np.arange(4)[:, None] * limits.velocity * 0.99 / FPS  # 99 % of the velocity limit
    ramp = np.clip(ramp, limits.lower, limits.upper)
    still = np.zeros_like(ramp)
    assert robot_limit_violations([message(ramp, still)], robot) == ([], 4)
    beyond = ramp.copy()
    beyond[:, 0] = limits.upper[0] + 1e-6  # held just beyond the limit: no step, only the position is wrong
    too_fast = still.copy()
    too_fast[1, 1] = -limits.velocity[1] * 1.001
    jump = ramp.copy()
    jump[3, 2] = jump[2, 2] + limits.velocity[2] * 1.01 / FPS
    for positions, velocities, expected in [(beyond, still, "outside"), (ramp, too_fast, "velocity"),
                                            (jump, still, "velocity limit")]:
        violations, _ = robot_limit_violations([message(positions, velocities)], robot)
        assert violations and all(expected in line for line in violations), violations


# --- no input device; the device disappearing mid-stream and returning ----------------------------------------------

MIC_SPEECH_S = 3.0  # seconds of motion streamed before the device goes, and again after it is back
MIC_LOST_S = 2.5  # seconds the device stays away


@pytest.fixture(scope="module")
def mic_run(tmp_path_factory) -> Run:
    """A managed gesture node recording from a microphone that does not exist yet, with a retarget node on its
    output. Configure fails (no input device); the PulseAudio microphone appears and configure succeeds in the
    same process; speech streams for 3 s; the microphone is removed for 2.5 s and added again; speech streams for
    3 s more; then SIGTERM."""
    require_pulseaudio()
    tmp = tmp_path_factory.mktemp("fault_mic")
    (tmp / "pulse").mkdir()
    mic = VirtualMicrophone.prepare(tmp / "pulse")
    name, rt = "fault_mic", "fault_mic_rt"
    joints, diagnostics = f"/{name}/gesture_joints", f"/{name}/diagnostics"
    output, rt_diagnostics = f"/{rt}/joint_trajectory", f"/{rt}/diagnostics"
    collector = TopicCollector({joints: JointTrajectory, diagnostics: DiagnosticArray, output: JointTrajectory,
                                rt_diagnostics: DiagnosticArray})
    logs = {"gesture": tmp / "gesture.log", "retarget": tmp / "retarget.log"}
    speech, rate = soundfile.read(str(demo_audio_file()), dtype="int16")
    assert rate == RATE
    retarget = start_retarget_node(rt, logs["retarget"], source=joints)
    node = start_gesture_node(name, logs["gesture"], "audio_source:=mic", "autostart:=false",
                              "wait_for_subscribers:=10.0", env=mic.env)
    run = Run(collector.messages, collector.arrival)
    writers: list[FifoWriter] = []
    received, status = collector.messages[joints], collector.messages[diagnostics]

    def device() -> dict[str, str]:
        return values(status[-1].status[0]) if status else {}

    try:
        lifecycle = Lifecycle(collector, name, node, logs["gesture"])
        run.extra["configured_without_device"] = lifecycle.set(Transition.TRANSITION_CONFIGURE)
        run.extra["state_without_device"] = lifecycle.state()
        run.extra["alive_without_device"] = node.poll() is None

        mic.start(null_sink=False)
        writers.append(FifoWriter(mic.fifo, speech[: int(2 * MIC_SPEECH_S * RATE)]))
        writers[-1].start()  # silence until the node listens: a microphone always delivers
        run.extra["configured_with_device"] = lifecycle.set(Transition.TRANSITION_CONFIGURE)
        assert run.extra["configured_with_device"], logs["gesture"].read_text()[-3000:]
        assert lifecycle.set(Transition.TRANSITION_ACTIVATE)
        wait_for(lambda: len(received) > 0, 30, node, logs["gesture"])
        writers[-1].start_speech.set()
        first = len(received)
        wait_for(lambda: len(received) >= first + MIC_SPEECH_S * FPS / HOP, 30, node, logs["gesture"])

        writers[-1].stop.set()  # the FIFO's writer goes with the device: nothing is written into a removed source
        writers[-1].join(timeout=5)
        run.events["removed"] = time.monotonic()
        mic.remove_source()
        wait_for(lambda: device().get("audio_device") == "lost", 10, node, logs["gesture"])
        time.sleep(max(0.0, run.events["removed"] + MIC_LOST_S - time.monotonic()))

        mic.add_source()
        writers.append(FifoWriter(mic.fifo, speech[int(2 * MIC_SPEECH_S * RATE):int(4 * MIC_SPEECH_S * RATE)]))
        writers[-1].start_speech.set()
        writers[-1].start()
        run.events["added"] = time.monotonic()
        wait_for(lambda: device().get("audio_device_reopens") == "1" and device().get("audio_device") == "ok", 10,
                 node, logs["gesture"])
        back = len(received)
        wait_for(lambda: len(received) >= back + MIC_SPEECH_S * FPS / HOP, 30, node, logs["gesture"])
        run.events["stopped"] = time.monotonic()
        run.returncodes["gesture"] = stop(node, signal.SIGTERM)
        time.sleep(0.5)  # the last trajectories
        run.returncodes["retarget"] = stop(retarget, signal.SIGTERM)
    finally:
        for writer in writers:
            writer.stop.set()
            writer.join(timeout=5)
        kill_all(node, retarget)
        mic.stop()
        collector.close()
    run.logs = {key: path.read_text() for key, path in logs.items()}
    # Writing fails once the node has stopped recording (the pipe source closes its FIFO); not before.
    run.extra["writer_errors"] = [writer.error for writer in writers
                                  if writer.error is not None and writer.error_at < run.events["stopped"]]
    return run


@pytest.mark.reliability("fault", "no input device", "configure FAILURE with one line naming the fix; the process "
                         "stays up and configures once a microphone exists; robot within limits")
def test_no_input_device_fails_configure_in_one_line_and_the_node_stays_up_for_the_next_attempt(mic_run, robot):
    run = mic_run
    log = run.logs["gesture"]
    assert run.extra["configured_without_device"] is False
    assert run.extra["state_without_device"] == "unconfigured" and run.extra["alive_without_device"]
    errors = [line for line in log.splitlines() if "configure failed" in line]
    assert len(errors) == 1, log[-3000:]
    assert re.search(r"\[ERROR\].*configure failed: no audio input device found \(.*\); connect a microphone, pick "
                     r"one with the 'mic_device' parameter \(see 'python -m sounddevice'\), or use "
                     r"audio_source:=file$", errors[0]), errors
    assert "Traceback" not in log
    # The same process configured once the device existed (PortAudio's device list is read again) and streamed.
    assert run.extra["configured_with_device"] and re.search(r"listening on '(default|pulse)'", log)
    assert len(run.messages["/fault_mic/gesture_joints"]) >= 2 * MIC_SPEECH_S * FPS / HOP
    assert assert_within_robot_limits(run.messages["/fault_mic_rt/joint_trajectory"], robot) > 0


@pytest.mark.reliability("fault", "input device disappears mid-stream and returns", "every frame still published, "
                         "held and faded to rest without a jump; device state on /diagnostics; reopened, streaming "
                         "resumes; robot within limits")
def test_a_microphone_that_disappears_is_held_reported_and_reopened_when_it_returns(mic_run, robot):
    run = mic_run
    log = run.logs["gesture"]
    assert run.returncodes == {"gesture": 0, "retarget": 0}, (log[-3000:], run.logs["retarget"][-2000:])
    assert not run.extra["writer_errors"], run.extra["writer_errors"]
    assert "stopped delivering audio" in log and "is back" in log and "Traceback" not in log

    # /diagnostics: ok, then lost (WARN, saying so), then ok again after one reopen.
    streaming = [(s, v) for s, v in reports(run.messages["/fault_mic/diagnostics"]) if "audio_device" in v]
    states = [v["audio_device"] for _, v in streaming]
    assert [state for k, state in enumerate(states) if k == 0 or state != states[k - 1]] == ["ok", "lost", "ok"]
    assert all(s.level == DiagnosticStatus.WARN and "audio input device lost" in s.message
               for s, v in streaming if v["audio_device"] == "lost")
    last = streaming[-1][1]
    assert (last["audio_device_losses"], last["audio_device_reopens"]) == ("1", "1")
    assert int(last["hops_held"]) >= MIC_LOST_S * FPS / HOP - 1

    # Every frame was published, the lost stretch included: contiguous audio-time stamps, one frame apart.
    messages = run.messages["/fault_mic/gesture_joints"]
    frames = poses(messages)
    assert assert_valid_trajectories(messages, HUMANOID.dof_names, FPS) == len(frames)
    assert np.all(np.isfinite(frames))
    # The stamps are audio time (the node's clock): frames that stand for the time the device was away are the lost
    # stretch. From then on the motion holds and settles at rest, then fades back in once the device is back.
    start_wall = stamp_s(messages[0].header.stamp)
    wall = time.time() - time.monotonic()  # monotonic -> wall clock of this machine, as the node stamps
    stamps = start_wall + np.arange(len(frames)) / FPS
    removed, added = run.events["removed"] + wall, run.events["added"] + wall
    lost = (stamps >= removed) & (stamps < added)
    assert lost.sum() >= (MIC_LOST_S - 0.5) * FPS, lost.sum()
    before = stamps < removed - 1.5  # speech motion, before the device went (and before the stall was noticed)
    after = stamps >= added + 2.0  # speech motion again, after the fade back in
    assert before.sum() >= FPS and after.sum() >= FPS, (before.sum(), after.sum())
    speed = joint_speed(frames)
    held = speed[np.flatnonzero(lost)[len(np.flatnonzero(lost)) // 2:-1]]  # the second half of the lost stretch
    print(f"joint speed (rad/frame): before {speed[before[1:]].mean():.5f}, second half of the loss {held.mean():.5f}, "
          f"after {speed[after[1:]].mean():.5f}")
    assert held.mean() < 0.5 * speed[before[1:]].mean()  # calm: held and settling, not gesturing
    assert speed[after[1:]].mean() > 2 * held.mean()  # streaming again: the speech moves it
    # No jump where the device went and came back: no frame step beyond the speech motion's own.
    idx = np.flatnonzero((stamps >= removed - 1.5) & (stamps < added + 2.0))
    assert_no_jump(frames[max(0, idx[0] - 1):idx[-1] + 1], [frames[before], frames[after]])

    assert assert_within_robot_limits(run.messages["/fault_mic_rt/joint_trajectory"], robot) > 0


# --- the subscriber disappearing; the retarget node killed and restarted ---------------------------------------------

GAP_S = 3.0  # seconds the gesture node streams with no subscriber at all


@pytest.fixture(scope="module")
def subscriber_run(tmp_path_factory) -> Run:
    """A gesture node streaming the demo clip in real time, a retarget node (recording BVH) and a subscriber in this
    process on its /gesture_joints. After 3 s the retarget node is killed (SIGKILL: no goodbye to DDS) and this
    process's subscription is destroyed, leaving the gesture node without subscribers for 3 s; then the retarget node
    is started again (same name and topics, a new recording) with a new subscriber here; after 3 s more, SIGINT to
    the gesture node, then to the retarget node. /diagnostics, the robot trajectories and the retarget node's
    per-chunk skeleton messages are collected throughout. The retarget nodes stamp their trajectories with their
    clock (``stamp: now``), so every command has an absolute due time."""
    tmp = tmp_path_factory.mktemp("fault_subscriber")
    name, rt = "fault_sub", "fault_sub_rt"
    joints, diagnostics = f"/{name}/gesture_joints", f"/{name}/diagnostics"
    output, rt_diagnostics = f"/{rt}/joint_trajectory", f"/{rt}/diagnostics"
    collector = TopicCollector({diagnostics: DiagnosticArray, output: JointTrajectory,
                                rt_diagnostics: DiagnosticArray, f"/{rt}/skeleton": _skeleton_chunk()})
    listener = TopicCollector({joints: JointTrajectory})  # the subscriber that goes away
    logs = {"gesture": tmp / "gesture.log", "retarget": tmp / "retarget.log", "restarted": tmp / "restarted.log"}
    files = {"bvh": tmp / "first.bvh", "restarted_bvh": tmp / "restarted.bvh"}
    run = Run(collector.messages, collector.arrival, files=files)
    retarget = start_retarget_node(rt, logs["retarget"], "stamp:=now", f"record_bvh:={files['bvh']}", source=joints)
    wait_for(lambda: collector.node.count_subscribers(joints) >= 2, 60, retarget, logs["retarget"])  # it and here
    node = start_gesture_node(name, logs["gesture"], "audio_source:=file", "wait_for_subscribers:=10.0")
    restarted, second = None, None
    try:
        heard = listener.messages[joints]
        wait_for(lambda: len(heard) >= 3.0 * FPS / HOP, 60, node, logs["gesture"])
        retarget.kill()
        run.returncodes["killed"] = retarget.wait(timeout=10)
        listener.close()
        run.events["gone"] = time.monotonic()
        run.extra["first_listener"] = (list(heard), list(listener.arrival[joints]))
        time.sleep(GAP_S)
        run.events["back"] = time.monotonic()
        second = TopicCollector({joints: JointTrajectory})
        restarted = start_retarget_node(rt, logs["restarted"], "stamp:=now", f"record_bvh:={files['restarted_bvh']}",
                                        source=joints)
        wait_for(lambda: sum(a > run.events["back"] for a in collector.arrival[output]) >= 3.0 * FPS / HOP, 60,
                 restarted, logs["restarted"])
        wait_for(lambda: len(second.messages[joints]) >= 3.0 * FPS / HOP, 30, node, logs["gesture"])
        run.returncodes["gesture"] = stop(node, signal.SIGINT)
        time.sleep(0.5)  # the last hop reaches the retarget node
        run.returncodes["restarted"] = stop(restarted, signal.SIGINT)
        run.extra["second_listener"] = (list(second.messages[joints]), list(second.arrival[joints]))
    finally:
        kill_all(node, retarget, restarted)
        for topic_collector in (collector, listener, second):
            if topic_collector is not None and topic_collector.context.ok():
                topic_collector.close()
    run.logs = {key: path.read_text() for key, path in logs.items()}
    return run


@pytest.mark.reliability("fault", "every /gesture_joints subscriber disappears (one killed)", "the gesture node "
                         "keeps publishing in real time with healthy /diagnostics; a new subscriber gets the "
                         "stream where it is; robot within limits")
def test_the_gesture_node_keeps_streaming_when_its_subscribers_disappear(subscriber_run, robot):
    run = subscriber_run
    assert run.returncodes["gesture"] == 0, run.logs["gesture"][-3000:]
    assert "Traceback" not in run.logs["gesture"]
    # While nobody listened, /diagnostics kept coming, healthy, with frames published at the pace of the audio.
    gap = [(s, v) for (s, v), t in zip(reports(run.messages["/fault_sub/diagnostics"]),
                                       run.arrival["/fault_sub/diagnostics"])
           if run.events["gone"] + 0.5 < t < run.events["back"]]
    assert len(gap) >= GAP_S - 1, len(gap)
    for status, value in gap:
        assert (status.level, status.message) == (DiagnosticStatus.OK, "streaming"), (status.message, value)
        assert value["lifecycle_state"] == "active" and value["overload_state"] == "ok"
    published = [int(v["frames_published"]) for _, v in gap]
    seconds = (len(gap) - 1) * 1.0  # reports are a second apart
    assert published[-1] - published[0] >= 0.8 * seconds * FPS - HOP, published
    # The new subscriber gets the stream where it is: the hops published meanwhile were generated and stamped in
    # audio time (no gap in the stamps, no catching up), each arriving within a second of its last frame's audio.
    first, first_arrival = run.extra["first_listener"]
    second, second_arrival = run.extra["second_listener"]
    assert_valid_trajectories(first, HUMANOID.dof_names, FPS)
    assert_valid_trajectories(second, HUMANOID.dof_names, FPS)
    skipped = (stamp_s(second[0].header.stamp) - stamp_s(first[-1].header.stamp)) * FPS / HOP
    assert abs(skipped - round(skipped)) < 0.01 and round(skipped) >= (GAP_S - 0.5) * FPS / HOP, skipped
    wall = time.time() - time.monotonic()
    latency = [wall + t - (stamp_s(m.header.stamp) + (len(m.points) - 1) / FPS) for m, t in zip(second, second_arrival)]
    assert 0.0 < min(latency) and max(latency) < 1.0, latency
    assert np.all(np.isfinite(poses(first + second)))
    assert assert_within_robot_limits(run.messages["/fault_sub_rt/joint_trajectory"], robot) > 0


@pytest.mark.reliability("fault", "retarget node killed (SIGKILL) and restarted", "the new one fades in from home "
                         "on the running stream; zero commands outside the URDF limits before and after")
def test_a_killed_and_restarted_retarget_node_fades_in_from_home_within_limits(subscriber_run, robot):
    run = subscriber_run
    assert run.returncodes["killed"] == -signal.SIGKILL
    assert run.returncodes["restarted"] == 0, run.logs["restarted"][-2000:]
    messages, arrival = run.messages["/fault_sub_rt/joint_trajectory"], run.arrival["/fault_sub_rt/joint_trajectory"]
    before = [m for m, t in zip(messages, arrival) if t < run.events["gone"]]
    after = [m for m, t in zip(messages, arrival) if t > run.events["back"]]
    assert len(before) >= 3 and len(after) >= 3.0 * FPS / HOP
    assert assert_within_robot_limits(before, robot) > 0
    assert assert_within_robot_limits(after, robot) > 0
    # The first node was gesturing when it died; the new one starts at home, wherever the stream is, and fades in.
    # Its first trajectory may have been published before DDS matched it with this process's subscription, so where
    # its stream started is found from its per-chunk skeleton messages: each is stamped with the due time of its
    # chunk's first command and counts the frames received before it, and commands are one frame apart.
    chunks = [c for c, t in zip(run.messages["/fault_sub_rt/skeleton"], run.arrival["/fault_sub_rt/skeleton"])
              if t > run.events["back"]]
    assert chunks, "no skeleton message from the restarted node"
    start = min(c.stamp_sec + c.stamp_nanosec * 1e-9 - c.first_frame_index / FPS for c in chunks)
    due = {}  # absolute due time (ns) -> command, from every message (a repeated command is identical)
    for msg in after:
        for point in msg.points:
            due.setdefault(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec + point.time_from_start.sec * 10**9
                           + point.time_from_start.nanosec, np.array(point.positions))
    names = list(after[0].joint_names)
    order = [robot.joint_names.index(n) for n in names]
    home, vmax = robot.home[order], robot.urdf_limits.velocity[order]
    first_due = min(due)
    first = due[first_due]
    frames_in = (first_due * 1e-9 - start) * FPS  # commands of the new stream before the first one seen here
    print(f"first command seen: {frames_in:.2f} frames into the new stream, {np.abs(first - home).max():.4f} from home")
    assert frames_in > -0.01
    # Reachable from home within the velocity limits in the time since the stream started (the stream's first
    # command is itself at most one frame's step from home): it began at home, without a jump.
    assert np.all(np.abs(first - home) <= vmax * (frames_in + 1) / FPS * (1 + 1e-6) + 1e-9), first - home
    if frames_in < 0.5:  # this process saw the very first command: home itself, up to the fade's first frame
        assert np.abs(first - home).max() < 0.01
    last_before = np.array(before[-1].points[0].positions)
    assert np.abs(last_before - home).max() > 0.05, "the first node should have moved away from home"
    latest = due[max(due)]
    assert np.abs(latest - home).max() > 2 * np.abs(first - home).max()  # faded in: gesturing again, away from home
    restarted = [v for (_, v), t in zip(reports(run.messages["/fault_sub_rt/diagnostics"]),
                                        run.arrival["/fault_sub_rt/diagnostics"]) if t > run.events["back"]]
    assert "streaming" in [v["state"] for v in restarted] and restarted[-1]["trajectories_invalid"] == "0"


# --- NaN inside the model ------------------------------------------------------------------------------------------

# The gesture node, with a fault injected into its model: a forward hook on one of the denoiser's real blocks turns
# its output into NaN in the windows numbered [first, last) (each window calls the block once per sampling step).
# Only the hook is added; the node, its model and everything after the block run as they are.
NAN_NODE = textwrap.dedent('''
    import sys

    import torch

    from dimgestor_ros.model.gesture_model import DiMGestor
    from dimgestor_ros.nodes import gesture_node

    steps, first, last = (int(value) for value in sys.argv[1:4])
    load = DiMGestor.load.__func__


    def load_with_a_fault(cls, *args, **kwargs):
        model = load(cls, *args, **kwargs)
        calls = 0

        def poison(module, inputs, output):
            nonlocal calls
            window, calls = calls // steps, calls + 1
            return torch.full_like(output, float("nan")) if first <= window < last else None

        model.denoiser.blocks[1].register_forward_hook(poison)
        return model


    DiMGestor.load = classmethod(load_with_a_fault)
    raise SystemExit(gesture_node.main(sys.argv[:1] + sys.argv[4:]))
''')
NAN_STEPS = 2  # start_gesture_node's sampling_steps
NAN_FIRST, NAN_WINDOWS = 6, 3  # windows 6-8 (frames 90-134, 3.0-4.5 s into the clip) come out as NaN
NAN_FRAMES = (NAN_FIRST + NAN_WINDOWS + 7) * HOP  # then 3.5 s more: the fade back in and sampled motion again


@pytest.fixture(scope="module")
def nan_run(tmp_path_factory) -> Run:
    """A gesture node streaming the demo clip in real time whose model samples NaN in windows 6-8, a retarget node
    recording BVH on its output; SIGTERM to the gesture node after 8 s of motion, then to the retarget node.
    The overload policy is off, so every window is sampled (an overload skip would shift which frames the NaN
    windows are)."""
    tmp = tmp_path_factory.mktemp("fault_nan")
    name, rt = "fault_nan", "fault_nan_rt"
    joints, diagnostics = f"/{name}/gesture_joints", f"/{name}/diagnostics"
    output, rt_diagnostics = f"/{rt}/joint_trajectory", f"/{rt}/diagnostics"
    collector = TopicCollector({joints: JointTrajectory, diagnostics: DiagnosticArray, output: JointTrajectory,
                                rt_diagnostics: DiagnosticArray, f"/{name}/gesture_skeleton": _skeleton_chunk()})
    logs = {"gesture": tmp / "gesture.log", "retarget": tmp / "retarget.log"}
    run = Run(collector.messages, collector.arrival, files={"bvh": tmp / "take.bvh"})
    retarget = start_retarget_node(rt, logs["retarget"], f"record_bvh:={run.files['bvh']}", source=joints)
    wait_for(lambda: collector.node.count_subscribers(joints) >= 2, 60, retarget, logs["retarget"])
    node = start_gesture_node(name, logs["gesture"], "audio_source:=file", "wait_for_subscribers:=10.0",
                              "overload_policy:=false",
                              program=("-c", NAN_NODE, str(NAN_STEPS), str(NAN_FIRST), str(NAN_FIRST + NAN_WINDOWS)))
    try:
        received = collector.messages[joints]
        wait_for(lambda: sum(len(m.points) for m in received) >= NAN_FRAMES, 90, node, logs["gesture"])
        time.sleep(1.2)  # one more /diagnostics report after the last NaN window's recovery
        run.returncodes["gesture"] = stop(node, signal.SIGTERM)
        time.sleep(0.5)  # the last hop reaches the retarget node
        run.returncodes["retarget"] = stop(retarget, signal.SIGTERM)
    finally:
        kill_all(node, retarget)
        collector.close()
    run.logs = {key: path.read_text() for key, path in logs.items()}
    return run


@pytest.fixture(scope="module")
def offline_motion() -> tuple[np.ndarray, np.ndarray]:
    """What the node streams without a fault: the demo clip through the same conditioning, generator and settings
    (the node's defaults, 2 sampling steps), offline; and the model's rest (mean) pose."""
    import torch

    from dimgestor_ros.audio.conditioning import AudioConditioner
    from dimgestor_ros.audio.io import load_audio
    from dimgestor_ros.generate import generate_poses
    from dimgestor_ros.model.gesture_model import DiMGestor
    from dimgestor_ros.paths import default_weights_dir
    from dimgestor_ros.streaming.generator import StreamingConfig

    torch.set_num_threads(1)
    model = DiMGestor.load(default_weights_dir())
    audio = load_audio(demo_audio_file(), 16000)[: int((NAN_FRAMES + 2 * HOP) / FPS * 16000)]
    audio = AudioConditioner(16000).process(audio)
    return generate_poses(audio, model, StreamingConfig(steps=NAN_STEPS)), model.pose_mean.numpy().astype(float)


@pytest.mark.reliability("fault", "NaN inside the model (forced)", "no NaN published; the motion holds and fades "
                         "to rest without a jump, reported on /diagnostics with a count, and resumes when the model "
                         "is finite again; robot within limits")
def test_nan_inside_the_model_is_held_faded_reported_and_recovered_from(nan_run, offline_motion, robot):
    run = nan_run
    log = run.logs["gesture"]
    assert run.returncodes["gesture"] == 0, log[-3000:]
    assert "Traceback" not in log and "output is not finite" in log and "finite again" in log
    messages = run.messages["/fault_nan/gesture_joints"]
    frames = poses(messages)
    assert np.all(np.isfinite(frames)), "a non-finite value was published"
    assert assert_valid_trajectories(messages, HUMANOID.dof_names, FPS) == len(frames)
    # This process's subscription may have been matched after the first hops were published (the retarget node's
    # was enough to start the stream); the node's skeleton messages number the frames of each hop.
    chunk = run.messages["/fault_nan/gesture_skeleton"][0]
    seen = chunk.first_frame_index + round((stamp_s(messages[0].header.stamp)
                                            - (chunk.stamp_sec + chunk.stamp_nanosec * 1e-9)) * FPS)
    assert 0 <= seen <= (NAN_FIRST - 2) * HOP and seen + len(frames) >= NAN_FRAMES, seen
    offline, rest = offline_motion
    offline = offline[seen:]  # from the first frame seen here
    first, end = NAN_FIRST * HOP - seen, (NAN_FIRST + NAN_WINDOWS) * HOP - seen  # the frames of the NaN windows
    # Up to the fault the stream is the model's own motion, frame for frame.
    np.testing.assert_allclose(frames[:first], offline[:first], atol=1e-4)
    assert np.abs(frames[first:end] - offline[first:end]).max() > 0.05  # and from then on it is not
    # In the NaN windows the motion holds and settles toward the rest pose; it was moving away from it before.
    distance = np.abs(frames - rest).max(axis=1)
    print(f"distance from rest (rad or m): fault start {distance[first]:.3f}, end {distance[end - 1]:.3f}")
    assert distance[end - 1] < 0.5 * distance[first]
    # No jump into the hold, through it, or out of it while sampling fades back in: no frame step beyond the largest
    # of the same clip's fault-free motion.
    assert_no_jump(frames[first - 1:end + 4 * HOP], [offline[: end + 4 * HOP]])
    # It recovered: sampled motion again after the fade back in, moving as the model's own does.
    recovered = joint_speed(frames[end + 2 * HOP:]).mean()
    print(f"joint speed after recovery {recovered:.5f} rad/frame, offline over the same frames "
          f"{joint_speed(offline[end + 2 * HOP:len(frames)]).mean():.5f}, at the end of the hold "
          f"{joint_speed(frames[end - HOP // 2:end]).mean():.5f}")
    assert recovered > 2 * joint_speed(frames[end - HOP // 2:end]).mean()
    assert recovered > 0.5 * joint_speed(offline[end + 2 * HOP:len(frames)]).mean()

    # /diagnostics: WARN with the reason while it happened, the count of NaN windows, OK again after.
    streaming = [(s, v) for s, v in reports(run.messages["/fault_nan/diagnostics"]) if "model_non_finite_windows" in v]
    counts = [int(v["model_non_finite_windows"]) for _, v in streaming]
    assert counts[-1] == NAN_WINDOWS and counts == sorted(counts), counts
    assert streaming[-1][1]["feature_state_resets"] == "0"  # the NaN was the denoiser's; the features never held one
    assert any(s.level == DiagnosticStatus.WARN and "model output not finite" in s.message for s, _ in streaming)
    assert streaming[-1][0].level == DiagnosticStatus.OK, streaming[-1][0].message
    assert assert_within_robot_limits(run.messages["/fault_nan_rt/joint_trajectory"], robot) > 0


# --- SIGINT and SIGTERM ----------------------------------------------------------------------------------------------


@pytest.fixture
def signal_run(request: pytest.FixtureRequest) -> tuple[Run, str, str, str]:
    """(run, gesture topic, retarget topic, BVH key) of the run that ended with this signal: SIGINT ends the
    subscriber run (its restarted retarget node records), SIGTERM the NaN run."""
    if request.param == "SIGINT":
        run = request.getfixturevalue("subscriber_run")
        return run, "/fault_sub/gesture_joints", "/fault_sub_rt/joint_trajectory", "restarted_bvh"
    run = request.getfixturevalue("nan_run")
    return run, "/fault_nan/gesture_joints", "/fault_nan_rt/joint_trajectory", "bvh"


@pytest.mark.parametrize("signal_run", ["SIGINT", "SIGTERM"], indirect=True)
@pytest.mark.reliability("fault", "SIGINT / SIGTERM to both nodes while streaming", "both exit 0; the BVH recording "
                         "is flushed up to the last frame and reads back; robot within limits")
def test_a_signal_ends_both_nodes_cleanly_and_flushes_the_recording(signal_run, robot):
    run, joints, output, bvh = signal_run
    retarget = "restarted" if bvh == "restarted_bvh" else "retarget"
    assert run.returncodes["gesture"] == 0, run.logs["gesture"][-3000:]
    assert run.returncodes[retarget] == 0, run.logs[retarget][-3000:]
    assert "Traceback" not in run.logs["gesture"] + run.logs[retarget]
    if joints in run.messages:
        streamed = poses(run.messages[joints])
    else:  # the subscriber run: this process listened again from the restart on
        streamed = poses(run.extra["second_listener"][0])
    recorded = assert_bvh_is_the_end_of_the_stream(run.files[bvh], streamed)
    assert f"recorded {recorded} frames to {run.files[bvh]}" in run.logs[retarget]
    assert not Path(f"{run.files[bvh]}.part").exists()
    assert assert_within_robot_limits(run.messages[output], robot) > 0
