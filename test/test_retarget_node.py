"""The retargeting node across two processes with real rclpy/FastDDS (issue 7, parts 3 and 4, second acceptance
point): this process publishes gesture chunks on /gesture_joints the way the gesture node does (15 frames per
message at 30 fps, time_from_start k/30, in real time) and subscribes to everything the node publishes.

What a JointTrajectoryController would do with each message is checked by dimgestor_ros.retarget.jtc
(``trajectory_violations``; its docstring lists each rule and where ros2_controllers applies it;
test_retarget_outputs.py shows each rule catching what it documents). Because the JTC replaces its trajectory with every message, each
message repeats the commands still to come; the test stitches the messages back into one command timeline (a
repeated command is bit-identical) and checks it: continuous across chunk boundaries (no step beyond velocity
limit x frame time), within the URDF limits, and after the input stops: hold, then fade to home, then still.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from visualization_msgs.msg import MarkerArray

from dimgestor_ros.motion.bvh import read_bvh
from dimgestor_ros.motion.skeleton import HUMANOID, neutral_pose
from dimgestor_ros.retarget.avatar import HUMAN_JOINTS
from dimgestor_ros.retarget.jtc import ControllerSettings, trajectory_violations
from dimgestor_ros.retarget.robot import load_robot_config

pytestmark = pytest.mark.timeout(240)

FPS = 30.0
HOP = 15
CHUNKS = 8
FRAMES = HOP * CHUNKS
DT = 1.0 / FPS
NAMES = HUMANOID.dof_names


def _skeleton_chunk():
    from dimgestor_msgs.msg import SkeletonChunk

    return SkeletonChunk


def _s(duration) -> float:
    return duration.sec + duration.nanosec * 1e-9


def gesture_motion() -> np.ndarray:
    """(120, D): 3 s of arm and head gestures (one chunk with a head turn beyond head_yaw's limit and a few NaN
    values), then 1 s holding the left arm straight out sideways."""
    t = np.arange(FRAMES) / FPS
    poses = np.repeat(neutral_pose().astype(float)[None], FRAMES, axis=0)
    col = {name: i for i, name in enumerate(NAMES)}
    beat = np.sin(np.pi * 0.9 * t) ** 2
    poses[:, col["LeftArm_rz"]] += 0.9 * beat
    poses[:, col["LeftForeArm_ry"]] -= 0.9 * beat
    poses[:, col["RightArm_ry"]] += 0.6 * np.sin(2 * np.pi * 0.5 * t)
    poses[:, col["Head_ry"]] = 0.4 * np.sin(2 * np.pi * 0.3 * t)
    poses[:, col["Spine2_rx"]] = 0.1 * np.sin(2 * np.pi * 0.4 * t)
    poses[50:53, col["Head_ry"]] = 2.5  # beyond the robot's head_yaw limit (1.2): clipped, and a fast jump
    poses[55:58, col["Head_rx"]] = np.nan  # the head joints hold
    final = neutral_pose().astype(float)
    final[col["LeftArm_rz"]] = 0.0
    final[col["LeftForeArm_ry"]] = 0.0
    poses[90:] = final
    return poses


def chunk_message(poses: np.ndarray, stamp_s: float) -> JointTrajectory:
    msg = JointTrajectory()
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp_s), int((stamp_s % 1) * 1e9)
    msg.joint_names = NAMES
    for k, pose in enumerate(poses):
        ns = round(k * 1e9 / FPS)
        msg.points.append(JointTrajectoryPoint(positions=pose.tolist()))
        msg.points[-1].time_from_start.sec, msg.points[-1].time_from_start.nanosec = ns // 10**9, ns % 10**9
    return msg


def start_node(name: str, log: Path, *params: str, source: str | None = None) -> subprocess.Popen:
    """retarget_node as its own process, its topics under /<name>/ so no other node of this domain is heard;
    ``source``: the gesture topic it subscribes to (default /<name>/gesture_joints), e.g. a gesture node's."""
    topics = {"output_topic": "joint_trajectory", "markers_topic": "markers", "skeleton_topic": "skeleton",
              "joint_states_topic": "joint_states"}
    command = [sys.executable, "-m", "dimgestor_ros.nodes.retarget_node", "--ros-args", "-r", f"__node:={name}",
               "-r", f"gesture_joints:={source or f'/{name}/gesture_joints'}", "-r",
               f"/diagnostics:=/{name}/diagnostics"]
    for param in [f"{key}:=/{name}/{value}" for key, value in topics.items()] + [f"body_id:={name}", *params]:
        command += ["-p", param]
    with open(log, "w") as log_file:
        return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)


def wait_for(condition, seconds: float, process: subprocess.Popen, log: Path) -> None:
    end = time.monotonic() + seconds
    while not condition() and time.monotonic() < end:
        assert process.poll() is None, log.read_text()[-3000:]
        time.sleep(0.02)
    assert condition(), f"timed out after {seconds} s: {log.read_text()[-2000:]}"


def gesture_publisher(collector, name: str, process, log):
    """A /gesture_joints publisher on the collector's node, once the node and this process have found each other."""
    qos = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
    publisher = collector.node.create_publisher(JointTrajectory, f"/{name}/gesture_joints", qos)
    wait_for(lambda: publisher.get_subscription_count() > 0, 60, process, log)
    wait_for(lambda: collector.node.count_publishers(f"/{name}/joint_trajectory") > 0, 30, process, log)
    time.sleep(1.0)  # discovery of the node's publishers by this process's subscriptions
    return publisher


def stream(collector, name: str, poses: np.ndarray, process, log, publisher=None) -> list[float]:
    """Publish poses in 15-frame chunks every 0.5 s (real time), stamped like the gesture node (audio time of the
    first point); returns the monotonic publish times."""
    publisher = publisher or gesture_publisher(collector, name, process, log)
    start_wall, start = time.time(), time.monotonic()
    sent = []
    for k in range(0, len(poses), HOP):
        time.sleep(max(0.0, start + (k // HOP) * HOP * DT - time.monotonic()))
        publisher.publish(chunk_message(poses[k:k + HOP], start_wall + k * DT))
        sent.append(time.monotonic())
    return sent


def stitch(messages, arrivals) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The command timeline from successive trajectories: each message repeats the commands still to come
    (bit-identical) and appends new ones. Returns estimated due times (N,), positions (N, J) and where each
    timeline starts (a message that shares no command with the timeline so far starts a new one)."""
    times: list[float] = []
    positions: list[np.ndarray] = []
    starts: list[int] = []
    for msg, arrival in zip(messages, arrivals):
        q = np.array([p.positions for p in msg.points])
        t = np.array([arrival + _s(p.time_from_start) for p in msg.points])
        # Overlaps: the timeline's suffix from j equals the message's prefix, exactly; the one closest in time wins.
        candidates = [j for j in range(max(0, len(positions) - len(q)), len(positions))
                      if np.array_equal(np.array(positions[j:]), q[:len(positions) - j])]
        if candidates:
            j = min(candidates, key=lambda c: abs(times[c] - t[0]))
            assert abs(times[j] - t[0]) < 0.1, "a repeated command moved in time"
            overlap = len(positions) - j
        else:
            starts.append(len(positions))
            overlap = 0
        times += list(t[overlap:])
        positions += list(q[overlap:])
    return np.array(times), np.array(positions), starts


@pytest.fixture(scope="module")
def robot():
    return load_robot_config("generic_humanoid")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, robot):
    """One run: 120 frames streamed in real time, then no input until the robot is home, then 30 more frames (the
    gesture node back); then Ctrl-C."""
    from conftest import TopicCollector

    tmp = tmp_path_factory.mktemp("retarget_node")
    log, bvh = tmp / "node.log", tmp / "recording" / "stream.bvh"
    name = "rt_stream"
    collector = TopicCollector({
        f"/{name}/joint_trajectory": JointTrajectory, f"/{name}/markers": MarkerArray,
        f"/{name}/joint_states": JointState, f"/humans/bodies/{name}/joint_states": JointState,
        f"/{name}/skeleton": _skeleton_chunk(), f"/{name}/diagnostics": DiagnosticArray,
    })
    process = start_node(name, log, "stale_timeout:=0.5", "hold:=1.0", "fade_out:=1.0", "publish_joint_states:=true",
                         f"record_bvh:={bvh}")
    poses, again = gesture_motion(), gesture_motion()[:2 * HOP]
    try:
        publisher = gesture_publisher(collector, name, process, log)
        sent = stream(collector, name, poses, process, log, publisher)
        diagnostics = collector.messages[f"/{name}/diagnostics"]

        def at_home_after_stream() -> bool:  # streaming, holding and fading take > 2 s after the last chunk
            return (time.monotonic() > sent[-1] + 2.0 and bool(diagnostics)
                    and diagnostics[-1].status[0].values[0].value == "idle")

        wait_for(at_home_after_stream, 30, process, log)
        time.sleep(1.0)  # the last trajectory (due up to lead_time + 0.25 s ahead) has arrived
        resumed = time.monotonic()
        stream(collector, name, again, process, log, publisher)
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        collector.close()
    topic = {key.split("/")[-1] if not key.startswith("/humans") else "human": value
             for key, value in collector.messages.items()}
    arrival = collector.arrival[f"/{name}/joint_trajectory"]
    arrivals = {key.split("/")[-1] if not key.startswith("/humans") else "human": value
                for key, value in collector.arrival.items()}
    return dict(name=name, poses=poses, again=again, sent=sent, resumed=resumed, messages=topic, arrival=arrival,
                arrivals=arrivals, returncode=process.returncode, log=log.read_text(), bvh=bvh)


def _reports(scenario) -> list[dict[str, str]]:
    return [{kv.key: kv.value for kv in s.values} for msg in scenario["messages"]["diagnostics"] for s in msg.status]


def test_every_trajectory_passes_the_controllers_checks(scenario, robot):
    messages = scenario["messages"]["joint_trajectory"]
    assert len(messages) >= CHUNKS, scenario["log"][-2000:]
    controller = ControllerSettings(joints=tuple(robot.joint_names), min_first_time=0.01)
    urdf = robot.urdf_limits
    for msg in messages:
        assert msg.header.stamp.sec == 0 and msg.header.stamp.nanosec == 0  # stamp: zero, "start when received"
        assert trajectory_violations(msg, controller, lower=urdf.lower, upper=urdf.upper,
                                     max_velocity=urdf.velocity) == []
        # Velocities are consistent with the positions: central differences, zero at the end.
        q = np.array([p.positions for p in msg.points])
        v = np.array([p.velocities for p in msg.points])
        if len(q) >= 3:
            np.testing.assert_allclose(v[1:-1], (q[2:] - q[:-2]) / (2 * DT), rtol=1e-6, atol=1e-6)


def test_robot_commands_are_continuous_across_chunk_boundaries(scenario, robot):
    times, positions, starts = stitch(scenario["messages"]["joint_trajectory"], scenario["arrival"])
    # One timeline for the first stream and its hold and fade, one for the resumed stream, and one more for each
    # chunk that came so late that the previous commands had played out (none, unless this machine stalled).
    late = int(_reports(scenario)[-1]["late_chunks"])
    assert len(starts) == 2 + late
    assert len(positions) >= FRAMES + 2 * HOP
    steps = np.abs(np.diff(positions, axis=0))
    assert np.all(steps <= robot.limits.velocity * DT * (1 + 1e-9) + 1e-12), steps.max(axis=0)
    # One frame apart. These times are estimated from arrival in this process (stamp: zero has no absolute time),
    # so they carry its scheduling jitter; the exact due times are checked with stamp: now below.
    first = slice(0, starts[1])  # up to the resumed stream or the first late chunk
    assert abs(np.median(np.diff(times[first])) - DT) < 0.002
    if late == 0:
        span = times[first][-1] - times[first][0]
        assert abs(span - (len(times[first]) - 1) * DT) < 0.1
    assert np.all(positions >= robot.limits.lower - 1e-12) and np.all(positions <= robot.limits.upper + 1e-12)
    # The first command is a fade from home, not a jump.
    assert np.abs(positions[0] - robot.home).max() < 0.05


def test_stale_input_holds_then_fades_to_home_then_resumes_with_a_fade(scenario, robot):
    times, positions, starts = stitch(scenario["messages"]["joint_trajectory"], scenario["arrival"])
    hold_frames = int(1.0 * FPS)
    resume = starts[-1]  # the resumed stream: a new timeline (the robot had been still at home)
    after = positions[FRAMES:resume]  # commands made without input
    assert len(after) >= hold_frames + int(1.0 * FPS), len(after)
    # Hold: the last pose stays (the input's last second was one still pose, so the robot had settled on it).
    last_input = positions[FRAMES - 1]
    assert np.abs(after[:hold_frames] - last_input).max() < 0.02
    assert np.abs(last_input - robot.home).max() > 0.3, "the held pose should be visibly away from home"
    # Then fade: every joint approaches home without overshoot and ends there, standing still.
    fade = after[hold_frames - 1:]
    distance = np.abs(fade - robot.home)
    assert np.all(np.diff(distance, axis=0) <= 1e-9)
    np.testing.assert_allclose(fade[-1], robot.home, atol=1e-6)
    arrivals = scenario["arrival"]
    final = [m for m, a in zip(scenario["messages"]["joint_trajectory"], arrivals) if a < scenario["resumed"]][-1]
    np.testing.assert_allclose(final.points[-1].velocities, 0.0, atol=1e-12)
    np.testing.assert_allclose(final.points[-1].positions, robot.home, atol=1e-6)
    # Back from home: the resumed stream fades in from where the robot is, no jump.
    assert np.abs(positions[resume] - robot.home).max() < 0.05
    states = [report["state"] for report in _reports(scenario)]
    order = [state for k, state in enumerate(states) if k == 0 or state != states[k - 1]]
    assert order[:2] == ["idle", "streaming"] and order[-2:] == ["idle", "streaming"]
    assert {"holding", "fading"} & set(order[2:-2]) and "idle" in order[2:-1]


def test_diagnostics_report_input_age_holds_and_clips(scenario):
    reports = _reports(scenario)
    last = reports[-1]
    assert 0.0 <= float(last["input_age_s"]) < 2.0 and reports[0]["input_age_s"] == "none"
    assert max(float(r["input_age_s"]) for r in reports if r["input_age_s"] != "none") > 1.0  # while stale
    assert int(last["frames_in"]) == FRAMES + 2 * HOP
    assert int(last["frames_held"]) >= 3 + 30  # NaN frames, then the hold and the fade
    assert int(last["joints_held"]) >= 3
    assert int(last["commands_clipped"]) >= int(last["commands_clipped_position"]) >= 3
    assert int(last["trajectories_invalid"]) == 0
    assert int(last["bvh_frames_recorded"]) == FRAMES + 2 * HOP


def test_marker_stick_figure_and_rep155_human_joint_state(scenario):
    name = scenario["name"]
    arrays = scenario["messages"]["markers"]
    # One per frame as the robot plays it (a frame may be skipped if the node's timer runs late).
    assert len(arrays) >= (FRAMES + 2 * HOP) * 0.5
    before_resume = [a for a, t in zip(arrays, scenario["arrivals"]["markers"]) if t < scenario["resumed"]]
    for array in arrays:
        lines, spheres = array.markers
        assert lines.type == lines.LINE_LIST and spheres.type == spheres.SPHERE_LIST
        assert lines.header.frame_id == spheres.header.frame_id == "world"
        assert len(lines.points) == 2 * (HUMANOID.num_bones - 1 + 5) and len(spheres.points) == HUMANOID.num_bones + 5
        z = [p.z for p in spheres.points]
        assert min(z) < 0.15 and 1.5 < max(z) < 2.0  # standing on the floor, head on top (REP-103: z up)
    left_hand = [a.markers[1].points[HUMANOID.bone_names.index("LeftHand")] for a in arrays]
    assert np.ptp([p.z for p in left_hand]) > 0.3, "the stick figure should gesture"
    # The last pose of the first stream (shown while the robot held it): left arm straight out to the left (+y).
    assert before_resume[-1].markers[1].points[HUMANOID.bone_names.index("LeftHand")].y > 0.6

    humans = scenario["messages"]["human"]
    assert len(humans) >= (FRAMES + 2 * HOP) * 0.5
    for state in humans:
        assert list(state.name) == [f"{joint}_{name}" for joint in HUMAN_JOINTS]
        assert state.header.frame_id == f"body_{name}"
        assert np.all(np.isfinite(state.position))
    held = [h for h, t in zip(humans, scenario["arrivals"]["human"]) if t < scenario["resumed"]][-1]
    last = dict(zip(HUMAN_JOINTS, held.position))
    np.testing.assert_allclose([last["l_p_shoulder"], last["l_elbow"]], [np.pi / 2, 0.0], atol=1e-3)
    np.testing.assert_allclose(last["r_p_shoulder"], np.pi / 2 - 1.3, atol=1e-3)

    chunks = scenario["messages"]["skeleton"]
    assert sum(c.num_frames for c in chunks) == FRAMES + 2 * HOP
    assert [c.first_frame_index for c in chunks] == [HOP * k for k in range(CHUNKS + 2)]
    stamps = [c.stamp_sec + c.stamp_nanosec * 1e-9 for c in chunks]
    np.testing.assert_allclose(np.diff(stamps[:CHUNKS]), HOP * DT, atol=1e-6)  # the robot's schedule
    quats = np.concatenate([np.asarray(c.rotations).reshape(-1, 4) for c in chunks])
    np.testing.assert_allclose(np.linalg.norm(quats, axis=1), 1.0, atol=1e-5)

    robot_states = scenario["messages"]["joint_states"]
    assert len(robot_states) > FRAMES and all(np.all(np.isfinite(s.position)) for s in robot_states)


def test_bvh_recording_is_written_on_ctrl_c_and_matches_the_stream(scenario):
    assert scenario["returncode"] == 0, scenario["log"][-2000:]
    total = FRAMES + 2 * HOP
    assert f"recorded {total} frames to " in scenario["log"]
    motion = read_bvh(scenario["bvh"])
    assert motion.num_frames == total  # every frame received, back to back
    assert abs(motion.fps - FPS) < 1e-9 and motion.skeleton.bone_names == HUMANOID.bone_names
    back = motion.to_poses(0.01).astype(float)
    sent = np.concatenate([scenario["poses"], scenario["again"]])
    for k in range(1, total):  # NaN values are recorded as the last finite value of their channel
        sent[k] = np.where(np.isfinite(sent[k]), sent[k], sent[k - 1])
    np.testing.assert_allclose(back, sent, atol=1e-5)


def test_sigterm_also_writes_the_recording(tmp_path, collector_factory):
    name, log, bvh = "rt_term", tmp_path / "node.log", tmp_path / "term.bvh"
    collector = collector_factory({f"/{name}/joint_trajectory": JointTrajectory})
    process = start_node(name, log, f"record_bvh:={bvh}")
    try:
        stream(collector, name, gesture_motion()[:2 * HOP], process, log)
        wait_for(lambda: len(collector.messages[f"/{name}/joint_trajectory"]) >= 2, 20, process, log)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert process.returncode == 0, log.read_text()[-2000:]
    assert read_bvh(bvh).num_frames == 2 * HOP


# --- parameters, stamp: now, bad start-up values -------------------------------------------------------------------

def _double(name: str, value: float) -> Parameter:
    return Parameter(name=name, value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value))


@pytest.mark.reliability("bad input", "runtime limits looser than the URDF, inconsistent limits or gains",
                         "refused with the reason; the commands keep to the limits in force")
def test_runtime_limits_and_gains_never_looser_than_the_urdf_and_stamp_now(tmp_path, robot, collector_factory):
    name = "rt_params"
    log = tmp_path / "node.log"
    collector = collector_factory({f"/{name}/joint_trajectory": JointTrajectory})
    process = start_node(name, log, "stamp:=now")
    client = collector.node.create_client(SetParameters, f"/{name}/set_parameters")
    try:
        wait_for(client.service_is_ready, 60, process, log)
        time.sleep(1.0)  # the reply's route is discovered separately from the request's

        def set_params(*params):
            future = client.call_async(SetParameters.Request(parameters=list(params)))
            wait_for(future.done, 20, process, log)
            return future.result().results

        urdf_velocity = float(robot.urdf_limits.velocity[robot.joint_names.index("head_yaw")])
        cases = [
            ([_double("limits.head_yaw.velocity", urdf_velocity + 1.0)], False, "out of range"),
            ([_double("limits.head_yaw.lower", -5.0)], False, "out of range"),
            ([_double("limits.head_yaw.upper", -1.2)], False, "must stay below"),
            ([_double("limits.head_yaw.lower", 0.3)], False, "home position"),
            ([_double("limits.head_yaw.velocity", 0.0)], False, "must be > 0"),
            ([_double("lead_time", 0.005)], False, "must be at least controller_period"),
            ([_double("smoothing_min_cutoff", 0.0)], False, "out of range"),
            ([_double("limits.head_yaw.velocity", 0.5), _double("limits.head_yaw.upper", 0.3)], True, ""),
            ([_double("fade_in", 0.2), _double("smoothing_beta", 1.0)], True, ""),
        ]
        for params, accepted, reason in cases:
            results = set_params(*params)
            assert all(r.successful is accepted for r in results), (params, [r.reason for r in results])
            assert all(reason in r.reason for r in results), [r.reason for r in results]
        sent = stream(collector, name, gesture_motion()[:60], process, log)
        wait_for(lambda: len(collector.messages[f"/{name}/joint_trajectory"]) >= 4, 20, process, log)
        time.sleep(1.0)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    assert process.returncode == 0, log.read_text()[-2000:]
    messages = collector.messages[f"/{name}/joint_trajectory"]
    arrivals = collector.arrival[f"/{name}/joint_trajectory"]
    assert sent
    i = robot.joint_names.index("head_yaw")
    controller = ControllerSettings(joints=tuple(robot.joint_names), min_first_time=0.01)
    absolute = {}
    for msg, wall in zip(messages, [time.time() - (time.monotonic() - a) for a in arrivals]):
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        assert abs(stamp - wall) < 0.25  # stamp: now (same clock here)
        assert trajectory_violations(msg, controller, now=stamp) == []
        for point in msg.points:  # with a stamp, due times are exact: a repeated command keeps its time
            due = (msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
                   + point.time_from_start.sec * 10**9 + point.time_from_start.nanosec)
            assert absolute.setdefault(due, list(point.positions)) == list(point.positions)
    q = np.array([absolute[t] for t in sorted(absolute)])
    assert q[:, i].max() <= 0.3 + 1e-12  # the tightened upper limit
    assert np.abs(np.diff(q[:, i])).max() <= 0.5 * DT + 1e-12  # the tightened velocity limit


@pytest.mark.parametrize("params, message", [
    (["lead_time:=0.005", "controller_period:=0.01"], "lead_time (0.005 s) must be at least controller_period"),
    (["record_bvh:=/proc/no_such_dir/x.bvh"], "record_bvh /proc/no_such_dir/x.bvh: cannot write there"),
    (["limits.head_yaw.velocity:=99.0"], "parameter limits.head_yaw.velocity"),
    (["stamp:=later"], "stamp='later' is not one of zero, now"),
], ids=["lead_time below controller_period", "unwritable record_bvh", "limit beyond the URDF", "unknown stamp"])
@pytest.mark.reliability("bad input", "bad retarget_node start-up value", "one line naming the parameter and the "
                         "fix, exit code 2, no traceback")
def test_bad_start_up_values_are_one_line_errors(tmp_path, params, message):
    log = tmp_path / "node.log"
    process = start_node("rt_bad", log, *params)
    process.wait(timeout=60)
    text = log.read_text()
    assert process.returncode == 2, text[-2000:]
    assert message in text and "Traceback" not in text, text[-2000:]
