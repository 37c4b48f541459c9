"""retarget_node: /gesture_joints (source skeleton) in; robot trajectories for a ros2_control
JointTrajectoryController and avatar outputs out. Every command is within the robot's URDF limits.

A thin adapter over the core (dimgestor_ros.retarget): JointMapper maps, holds, fades and limits; CommandSchedule
decides when each command is due and what each trajectory message carries (see its docstring for why every
message repeats the commands still to come); jtc.trajectory_violations checks each message the way the
JointTrajectoryController will before it is published; avatar gives the REP-155 human joint state, the stick
figure and the BVH recording.

Timing: a chunk from /gesture_joints is mapped at once; its commands are due one frame apart, continuing the
timeline of the previous chunk (the first chunk of a stream: ``lead_time`` from now). Every message carries the
commands due at least ``controller_period`` from now. ``stamp: zero`` (default) leaves header.stamp at 0, which
the controller reads as "start when received"; ``stamp: now`` stamps the node's clock at publishing, exact when
the controller shares that clock. No input for ``stale_timeout``: JointMapper.idle() frames are appended (hold
for the robot's ``fade.hold``, then fade to home over ``fade.fade_out``), keeping the trajectory ``lead_time``
ahead, until the robot stands still at home.
"""

from __future__ import annotations

import math

import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import ColorRGBA
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from visualization_msgs.msg import Marker, MarkerArray

from ..errors import UserError
from ..motion.skeleton import HUMANOID, euler_to_quaternions
from ..retarget.avatar import HUMAN_JOINTS, BvhRecorder, PoseSanitizer, human_joint_positions, stick_figures
from ..retarget.filters import FadeConfig, SmoothingConfig
from ..retarget.jtc import ControllerSettings, trajectory_violations
from ..retarget.mapper import JointMapper
from ..retarget.robot import load_robot_config
from ..retarget.schedule import CommandSchedule
from .common import JOINTS_QOS, declare, run_node

try:  # the package's own message, built by colcon from msg/
    from dimgestor_msgs.msg import SkeletonChunk
except ImportError:  # pragma: no cover - only when msg/ was not built
    SkeletonChunk = None

STAMP_MODES = ("zero", "now")
IDLE_BLOCK_S = 0.25  # stale input: idle frames are appended this many seconds at a time
LIMIT_KINDS = ("lower", "upper", "velocity")
SMOOTHING_FILTERS = ("one_euro", "none")


def _duration(ns: int) -> Duration:
    return Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _time(ns: int) -> Time:
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


class RetargetNode(Node):
    def __init__(self) -> None:
        super().__init__("retarget_node")
        robot = declare(self, "robot", "generic_humanoid",
                        "Robot config name under config/robots/ or a path to a robot YAML.", read_only=True)
        output_topic = declare(self, "output_topic", "/retarget/joint_trajectory",
                               "Topic of the robot JointTrajectory (a JointTrajectoryController's "
                               "~/joint_trajectory).", read_only=True)
        self.frame_rate = declare(self, "frame_rate", 30.0, "Frame rate of /gesture_joints (frames per second); "
                                  "robot commands are one frame apart.", (1.0, 1000.0), read_only=True)
        self.stamp_mode = declare(self, "stamp", "zero", "header.stamp of the trajectories: 'zero' = start when "
                                  "the controller receives it (no shared clock needed); 'now' = this node's clock "
                                  "when publishing (exact when the controller shares the clock).", read_only=True,
                                  choices=STAMP_MODES)
        lead_time = declare(self, "lead_time", 0.3, "Seconds ahead of now that a stream's first command is due; "
                            "absorbs late chunks up to this much. At least controller_period.", (0.001, 10.0))
        controller_period = declare(self, "controller_period", 0.01, "Update period of the controller (1 / "
                                    "controller_manager update_rate), seconds; no point closer to now than this "
                                    "is sent.", (0.0001, 1.0))
        self.zero_final_velocity = declare(
            self, "zero_final_velocity", True, "Give the last point of each trajectory zero velocity (what the "
            "controller's default allow_nonzero_velocity_at_trajectory_end: false requires).")
        self.stale_timeout = declare(self, "stale_timeout", 1.0, "Seconds without a /gesture_joints message after "
                                     "which the robot holds, then fades to home.", (0.05, 60.0))
        self.publish_joint_states = declare(self, "publish_joint_states", False,
                                            "Also publish the robot command due now as sensor_msgs/JointState.",
                                            read_only=True)
        joint_states_topic = declare(self, "joint_states_topic", "joint_states",
                                     "Topic of the robot JointState (publish_joint_states).", read_only=True)
        markers_topic = declare(self, "markers_topic", "/retarget/markers", "Topic of the RViz MarkerArray stick "
                                "figure of the source motion; empty: none.", read_only=True)
        self.frame_id = declare(self, "frame_id", "world", "frame_id of the stick figure (REP-103 axes, metres, "
                                "the source's root translation included).", read_only=True)
        self.body_id = declare(self, "body_id", "dimgestor", "REP-155 body id: the human JointState goes to "
                               "/humans/bodies/<body_id>/joint_states with joint names <joint>_<body_id>; empty: "
                               "none.", read_only=True)
        skeleton_topic = declare(self, "skeleton_topic", "/retarget/skeleton", "Topic of the per-bone "
                                 "dimgestor_msgs/SkeletonChunk of the source motion, stamped with the robot "
                                 "schedule; empty: none.", read_only=True)
        record_bvh = declare(self, "record_bvh", "", "Record the incoming motion to this BVH file (written when "
                             "the node stops); empty: no recording.", read_only=True)
        if lead_time < controller_period:
            raise UserError(f"lead_time ({lead_time:g} s) must be at least controller_period ({controller_period:g} s)")

        self.robot = load_robot_config(robot)
        self.mapper = JointMapper(self.robot, self.frame_rate)
        self._declare_robot_parameters()
        self.schedule = CommandSchedule(self.frame_rate, lead_time, controller_period)
        self.controller = ControllerSettings(joints=tuple(self.robot.joint_names), min_first_time=controller_period)
        self.sanitizer = PoseSanitizer(HUMANOID)
        self._segments = stick_figures(self.sanitizer.last)[1]  # bone segments of the stick figure (fixed)
        self.recorder = None
        if record_bvh:
            try:
                self.recorder = BvhRecorder(record_bvh, self.frame_rate)
            except OSError as error:
                raise UserError(f"record_bvh {record_bvh}: cannot write there ({error.strerror})") from None

        self.trajectory_pub = self.create_publisher(JointTrajectory, output_topic, JOINTS_QOS)
        self.joint_state_pub = (self.create_publisher(JointState, joint_states_topic, JOINTS_QOS)
                                if self.publish_joint_states else None)
        self.markers_pub = self.create_publisher(MarkerArray, markers_topic, 10) if markers_topic else None
        self.human_pub = (self.create_publisher(JointState, f"/humans/bodies/{self.body_id}/joint_states", 10)
                          if self.body_id else None)
        self.skeleton_pub = (self.create_publisher(SkeletonChunk, skeleton_topic, JOINTS_QOS)
                             if skeleton_topic and SkeletonChunk is not None else None)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(JointTrajectory, "gesture_joints", self._on_gesture, JOINTS_QOS)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_timer(1.0 / self.frame_rate, self._on_tick)
        self.create_timer(1.0, self._publish_diagnostics)

        self.state = "idle"  # idle (no stream) | streaming | holding | fading
        self.last_input_ns: int | None = None
        self._columns: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}
        self._last_avatar_ns = -1
        self.frames_in = 0
        self.frames_out = 0
        self.messages_in = 0
        self.rejected_messages = 0
        self.late_chunks = 0
        self.trajectories_published = 0
        self.trajectories_invalid = 0
        self._reported_invalid = 0
        self.get_logger().info(
            f"retargeting to {self.robot.name} ({len(self.robot.joints)} joints) on {output_topic}, stamp "
            f"{self.stamp_mode}, lead {lead_time:g} s"
            + (f", recording {self.recorder.path}" if self.recorder else ""))

    # --- parameters -------------------------------------------------------------------------------------------------

    def _declare_robot(self, name: str, default, description: str, value_range=None, choices=None):
        """A parameter whose default comes from the robot config (so it is not in config/gesture.yaml)."""
        return declare(self, name, default, description, value_range, choices=choices)

    def _declare_robot_parameters(self) -> None:
        """Gains and limits, runtime-tunable; defaults from the robot config; limits never looser than the URDF."""
        robot, smoothing, fade = self.robot, self.robot.smoothing, self.robot.fade
        gains = {
            "smoothing_filter": self._declare_robot(
                "smoothing_filter", smoothing.filter, "One-Euro smoothing of the targets, or none.",
                choices=SMOOTHING_FILTERS),
            "smoothing_min_cutoff": self._declare_robot(
                "smoothing_min_cutoff", float(smoothing.min_cutoff), "One-Euro cutoff at rest (Hz).", (0.01, 100.0)),
            "smoothing_beta": self._declare_robot(
                "smoothing_beta", float(smoothing.beta), "One-Euro cutoff increase per rad/s of speed (Hz).",
                (0.0, 100.0)),
            "smoothing_d_cutoff": self._declare_robot(
                "smoothing_d_cutoff", float(smoothing.d_cutoff), "One-Euro cutoff of the speed estimate (Hz).",
                (0.01, 100.0)),
            "fade_in": self._declare_robot(
                "fade_in", float(fade.fade_in), "Seconds to fade from home (or the held pose) into the motion.",
                (0.0, 60.0)),
            "fade_out": self._declare_robot(
                "fade_out", float(fade.fade_out), "Seconds to fade from the held pose to home.", (0.0, 60.0)),
            "hold": self._declare_robot(
                "hold", float(fade.hold), "Seconds of stale input holding the last pose before fading to home.",
                (0.0, 60.0)),
        }
        urdf = robot.urdf_limits or robot.limits
        units = dict(zip(robot.joint_names, robot.units))
        limits = {}
        for i, name in enumerate(robot.joint_names):
            unit = units[name]
            lo, hi, vmax = float(urdf.lower[i]), float(urdf.upper[i]), float(urdf.velocity[i])
            limits[f"limits.{name}.lower"] = self._declare_robot(
                f"limits.{name}.lower", float(robot.limits.lower[i]),
                f"Lower position limit of {name} ({unit}); never below the URDF's {lo:g}.", (lo, hi))
            limits[f"limits.{name}.upper"] = self._declare_robot(
                f"limits.{name}.upper", float(robot.limits.upper[i]),
                f"Upper position limit of {name} ({unit}); never above the URDF's {hi:g}.", (lo, hi))
            limits[f"limits.{name}.velocity"] = self._declare_robot(
                f"limits.{name}.velocity", float(robot.limits.velocity[i]),
                f"Velocity limit of {name} ({unit}/s); never above the URDF's {vmax:g}.", (0.0, vmax))
        self._gains, self._limits = gains, limits
        reason = self._apply(dict(gains), dict(limits))  # values from a parameters file
        if reason:
            raise UserError(reason)

    def _apply(self, gains: dict, limits: dict) -> str:
        """Apply gain and limit values (all of them, names as parameters); '' or the reason for refusing."""
        try:
            smoothing = SmoothingConfig(gains["smoothing_filter"], gains["smoothing_min_cutoff"],
                                        gains["smoothing_beta"], gains["smoothing_d_cutoff"])
            fade = FadeConfig(gains["fade_in"], gains["fade_out"], gains["hold"])
        except ValueError as error:
            return str(error)
        names = self.robot.joint_names
        arrays = [np.array([limits[f"limits.{n}.{kind}"] for n in names], dtype=float) for kind in LIMIT_KINDS]
        current = self.robot.limits
        if not all(np.array_equal(a, b) for a, b in zip(arrays, (current.lower, current.upper, current.velocity))):
            try:
                self.mapper.set_limits(*arrays)
            except ValueError as error:
                return f"limits not changed: {error}"
        self.mapper.set_gains(smoothing=smoothing, fade=fade)
        self.robot = self.mapper.robot
        return ""

    def _on_set_parameters(self, params) -> SetParametersResult:
        gains, limits = dict(self._gains), dict(self._limits)
        lead, period = self.schedule.lead_ns / 1e9, self.schedule.min_lead_ns / 1e9
        other = {}
        for param in params:
            if param.name in gains:
                gains[param.name] = param.value
            elif param.name in limits:
                limits[param.name] = float(param.value)
            elif param.name == "lead_time":
                lead = float(param.value)
            elif param.name == "controller_period":
                period = float(param.value)
            elif param.name in ("zero_final_velocity", "stale_timeout"):
                other[param.name] = param.value
        if gains["smoothing_filter"] not in SMOOTHING_FILTERS:
            return SetParametersResult(successful=False, reason=f"smoothing_filter must be one of "
                                                                f"{', '.join(SMOOTHING_FILTERS)}")
        if lead < period:
            return SetParametersResult(successful=False, reason=f"lead_time ({lead:g} s) must be at least "
                                                                f"controller_period ({period:g} s)")
        reason = self._apply(gains, limits)
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        self._gains, self._limits = gains, limits
        self.schedule.set_lead(lead, period)
        self.controller = ControllerSettings(joints=tuple(self.robot.joint_names), min_first_time=period)
        for name, value in other.items():
            setattr(self, name, value)
        return SetParametersResult(successful=True)

    # --- input ------------------------------------------------------------------------------------------------------

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _columns_for(self, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """(source columns, message columns) of the DoF a message with these joint names carries."""
        if names not in self._columns:
            dof = {name: i for i, name in enumerate(HUMANOID.dof_names)}
            pairs = [(dof[name], k) for k, name in enumerate(names) if name in dof]
            missing = HUMANOID.num_dofs - len({p[0] for p in pairs})
            if missing:
                self.get_logger().warning(
                    f"gesture_joints lacks {missing} of the {HUMANOID.num_dofs} DoF of the gesture skeleton; the "
                    "robot joints that depend on them hold")
            self._columns[names] = (np.array([p[0] for p in pairs], dtype=int), np.array([p[1] for p in pairs],
                                                                                         dtype=int))
        return self._columns[names]

    def _on_gesture(self, msg: JointTrajectory) -> None:
        now_ns = self._now_ns()
        self.messages_in += 1
        if not msg.points:
            return
        names = tuple(msg.joint_names)
        if any(len(point.positions) != len(names) for point in msg.points):
            self.rejected_messages += 1
            self.get_logger().warning("gesture_joints message with points whose positions do not match its joint "
                                      "names; message ignored", throttle_duration_sec=5.0)
            return
        source, columns = self._columns_for(names)
        if not len(source):
            self.rejected_messages += 1
            self.get_logger().warning("gesture_joints carries none of the gesture skeleton's DoF; message ignored",
                                      throttle_duration_sec=5.0)
            return
        self.last_input_ns = now_ns
        raw = np.array([point.positions for point in msg.points], dtype=float)  # (N, len(names))
        poses = np.full((len(raw), HUMANOID.num_dofs), np.nan)
        poses[:, source] = raw[:, columns]
        times = [point.time_from_start.sec + point.time_from_start.nanosec * 1e-9 for point in msg.points]
        if len(times) > 1 and abs((times[-1] - times[0]) / (len(times) - 1) * self.frame_rate - 1.0) > 0.02:
            self.get_logger().warning(
                f"gesture_joints points are {(times[-1] - times[0]) / (len(times) - 1):.4f} s apart, not 1/frame_rate"
                f" ({1.0 / self.frame_rate:.4f} s); set frame_rate to the stream's rate", throttle_duration_sec=10.0)

        commands = self.mapper.map(poses)  # (N, J), NaN handled by the core
        clean = self.sanitizer(poses)
        points, _ = stick_figures(clean)
        human = human_joint_positions(clean) if self.human_pub is not None else [None] * len(clean)
        payloads = list(zip(clean, points, human))
        was_streaming = self.state == "streaming" and self.schedule.end_ns is not None
        first_frame = self.frames_in
        anchored = self.schedule.append(commands, now_ns, payloads)
        if anchored and was_streaming:
            self.late_chunks += 1
            self.get_logger().warning("a gesture chunk arrived after the previous one had played out; the robot "
                                      "waited (raise lead_time to absorb this)", throttle_duration_sec=5.0)
        self.state = "streaming"
        self.frames_in += len(commands)
        self.frames_out += len(commands)
        self._send(now_ns)
        if self.recorder is not None:
            self.recorder.add(clean)
        if self.skeleton_pub is not None:
            self._publish_skeleton(clean, self.schedule.entries[-len(clean)].time_ns, first_frame)

    # --- output -----------------------------------------------------------------------------------------------------

    def _send(self, now_ns: int) -> None:
        """Publish every command due at least controller_period from now, after checking it as the JTC would."""
        plan = self.schedule.plan(now_ns, self.zero_final_velocity)
        if plan is None:
            return
        msg = JointTrajectory()
        msg.header.stamp = _time(now_ns) if self.stamp_mode == "now" else Time()
        msg.joint_names = self.robot.joint_names
        for tfs, q, v in zip(plan.times_from_start_ns, plan.positions, plan.velocities):
            msg.points.append(JointTrajectoryPoint(positions=q.tolist(), velocities=v.tolist(),
                                                   time_from_start=_duration(tfs)))
        hard = self.robot.urdf_limits or self.robot.limits
        problems = trajectory_violations(msg, self.controller, now=now_ns * 1e-9, lower=hard.lower,
                                         upper=hard.upper, max_velocity=hard.velocity)
        if problems:
            self.trajectories_invalid += 1
            self.get_logger().error(f"not publishing a trajectory the controller would reject or the robot must not "
                                    f"get: {'; '.join(problems)}", throttle_duration_sec=5.0)
            return
        self.trajectory_pub.publish(msg)
        self.trajectories_published += 1

    def _publish_skeleton(self, poses: np.ndarray, first_ns: int, first_frame: int) -> None:
        root, quats = euler_to_quaternions(HUMANOID, poses)
        chunk = SkeletonChunk()
        chunk.stamp_sec, chunk.stamp_nanosec = first_ns // 1_000_000_000, first_ns % 1_000_000_000
        chunk.frame_id = self.frame_id
        chunk.frame_rate = float(self.frame_rate)
        chunk.first_frame_index = first_frame
        chunk.bone_names = HUMANOID.bone_names
        chunk.bone_parents = HUMANOID.parents
        chunk.rest_offsets = HUMANOID.rest_offsets().reshape(-1).tolist()
        chunk.num_frames = len(poses)
        chunk.rotations = quats.reshape(-1).tolist()
        chunk.root_translations = root.reshape(-1).tolist()
        self.skeleton_pub.publish(chunk)

    def _on_tick(self) -> None:
        """Every frame: extend a stale stream with hold/fade frames, publish the avatar and joint states due now."""
        now_ns = self._now_ns()
        if (self.state != "idle" and self.last_input_ns is not None
                and now_ns - self.last_input_ns > self.stale_timeout * 1e9):
            self._extend_idle(now_ns)
        due = self.schedule.latest_payload(now_ns)
        if due is not None and due[0] > self._last_avatar_ns:
            self._last_avatar_ns = due[0]
            self._publish_avatar(now_ns, *due[1])
        if self.joint_state_pub is not None:
            sample = self.schedule.sample(now_ns)
            if sample is not None:
                state = JointState(name=self.robot.joint_names, position=sample[0].tolist(),
                                   velocity=sample[1].tolist())
                state.header.stamp = _time(now_ns)
                self.joint_state_pub.publish(state)
        self.schedule.prune(now_ns)

    def _extend_idle(self, now_ns: int) -> None:
        """Stale input: keep the trajectory lead_time ahead with hold-then-fade frames, until still at home."""
        end = self.schedule.end_ns
        if end is not None and end >= now_ns + self.schedule.lead_ns:
            return
        commands = self.mapper.idle(max(1, math.ceil(IDLE_BLOCK_S * self.frame_rate)))
        if self.state == "streaming":
            self.get_logger().info(f"no gesture input for {self.stale_timeout:g} s: holding, then fading to home")
        self.schedule.append(commands, now_ns)
        self.frames_out += len(commands)
        self._send(now_ns)
        if self.mapper.at_home:
            self.state = "idle"
            self.get_logger().info("at home; waiting for gesture input")
        else:
            self.state = "fading" if self.mapper.fading_out else "holding"

    def _publish_avatar(self, now_ns: int, pose: np.ndarray, points: np.ndarray, human) -> None:
        stamp = _time(now_ns)
        if self.markers_pub is not None:
            self.markers_pub.publish(self._markers(points, self._segments, stamp))
        if self.human_pub is not None and human is not None:
            state = JointState(name=[f"{joint}_{self.body_id}" for joint in HUMAN_JOINTS],
                               position=np.asarray(human, dtype=float).tolist())
            state.header.stamp = stamp
            state.header.frame_id = f"body_{self.body_id}"
            self.human_pub.publish(state)

    def _markers(self, points: np.ndarray, segments: list[tuple[int, int]], stamp: Time) -> MarkerArray:
        """A LINE_LIST of the bones and a SPHERE_LIST of the joints, in frame_id."""
        def marker(marker_id: int, kind: int, scale: float, color: tuple[float, ...], xyz) -> Marker:
            m = Marker(ns="dimgestor_avatar", id=marker_id, type=kind, action=Marker.ADD)
            m.header.frame_id, m.header.stamp = self.frame_id, stamp
            m.pose.orientation.w = 1.0
            m.scale.x = m.scale.y = m.scale.z = scale
            m.color = ColorRGBA(r=color[0], g=color[1], b=color[2], a=1.0)
            m.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in xyz]
            return m

        bones = [points[k] for segment in segments for k in segment]
        return MarkerArray(markers=[marker(0, Marker.LINE_LIST, 0.02, (0.2, 0.6, 1.0), bones),
                                    marker(1, Marker.SPHERE_LIST, 0.045, (1.0, 0.55, 0.1), points)])

    def _publish_diagnostics(self) -> None:
        now_ns = self._now_ns()
        counters = self.mapper.counters
        age = "none" if self.last_input_ns is None else f"{(now_ns - self.last_input_ns) * 1e-9:.3f}"
        end = self.schedule.end_ns
        ahead = 0.0 if end is None else max(0.0, (end - now_ns) * 1e-9)
        new_invalid = self.trajectories_invalid > self._reported_invalid
        self._reported_invalid = self.trajectories_invalid
        status = DiagnosticStatus(name="dimgestor: retarget_node", hardware_id=self.robot.name)
        status.level = (DiagnosticStatus.WARN if self.state in ("holding", "fading") or new_invalid
                        else DiagnosticStatus.OK)
        status.message = {"idle": "waiting for gesture input", "streaming": "streaming",
                          "holding": "input stale: holding", "fading": "input stale: fading to home"}[self.state]
        if new_invalid:
            status.message += "; refused to publish an invalid trajectory"
        clipped = counters["position_clipped"] + counters["velocity_clipped"]
        values = {
            "state": self.state,
            "robot": self.robot.name,
            "input_age_s": age,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "frames_held": counters["frames_held"],
            "joints_held": counters["joints_held"],
            "commands_clipped": clipped,
            "commands_clipped_position": counters["position_clipped"],
            "commands_clipped_velocity": counters["velocity_clipped"],
            "late_chunks": self.late_chunks,
            "scheduled_ahead_s": f"{ahead:.3f}",
            "trajectories_published": self.trajectories_published,
            "trajectories_invalid": self.trajectories_invalid,
            "rejected_messages": self.rejected_messages,
            "bvh_frames_recorded": self.recorder.frames if self.recorder is not None else 0,
        }
        status.values = [KeyValue(key=key, value=str(value)) for key, value in values.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = _time(now_ns)
        self.diagnostics_pub.publish(array)

    def close(self) -> None:
        """Process exit (Ctrl-C, SIGTERM, shutdown): write the BVH recording."""
        if self.recorder is None:
            return
        path = self.recorder.close()
        message = (f"recorded {self.recorder.frames} frames to {path}" if path is not None
                   else f"no frames recorded; {self.recorder.path} not written")
        print(f"[retarget_node] {message}", flush=True)


def main(args: list[str] | None = None) -> int:
    import torch

    # One thread: the node's torch work is a small IK solve per frame, far too small to share out, and torch's
    # default of one OpenMP thread per core spin-waits against the gesture node's threads on the same cores. On 2
    # cores that made this node fall behind a paced stream (reply p95 17 s, 29 of 600 hops lost in 5 min); with one
    # thread it kept up (p95 49 ms, none lost; `dimgestor bench soak --paced`).
    torch.set_num_threads(1)
    return run_node(RetargetNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
