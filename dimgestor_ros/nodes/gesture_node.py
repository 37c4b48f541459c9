"""gesture_node: speech in (file, microphone or topic), gesture motion out on /gesture_joints.

A thin adapter: audio capture, feature extraction, the model and window stitching all live in the core
(dimgestor_ros.audio / features / model / streaming); this node wires them to ROS topics and parameters.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import torch
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Float32MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ..audio.conditioning import AudioConditioner
from ..audio.io import load_audio
from ..audio.sources import (
    AUDIO_SOURCE_KINDS,
    FileSource,
    MicSource,
    PushSource,
    resolve_source_kind,
    samples_from_multiarray,
)
from ..diffusion.gaussian import SAMPLERS
from ..errors import UserError
from ..features.factory import make_speech_encoder
from ..model.gesture_model import DiMGestor
from ..motion.skeleton import HUMANOID, euler_to_quaternions
from ..paths import default_weights_dir, demo_audio_file
from ..streaming.diagnostics import StreamStats
from ..streaming.generator import MotionHop, StreamingConfig, StreamingGestureGenerator
from .common import JOINTS_QOS, declare, run_node

try:  # the package's own message, built by colcon from msg/
    from dimgestor_msgs.msg import SkeletonChunk
except ImportError:  # pragma: no cover - only when msg/ was not built
    SkeletonChunk = None


class GestureNode(Node):
    def __init__(self) -> None:
        super().__init__("gesture_node")
        defaults = StreamingConfig()
        self.source_kind = declare(
            self, "audio_source", "auto", "Where speech comes from ('auto': a microphone if one exists, else the "
            "audio file).", read_only=True, choices=AUDIO_SOURCE_KINDS)
        self.audio_file = declare(
            self, "audio_file", "", "Speech file for audio_source 'file'; empty: the shipped demo clip.", read_only=True)
        self.mic_device = declare(
            self, "mic_device", "", "Input device name or index for audio_source 'mic'; empty: the default.",
            read_only=True)
        self.realtime = declare(
            self, "realtime", True, "Pace a file like a microphone (true) or stream it as fast as possible.",
            read_only=True)
        self.duration = declare(
            self, "duration", 0.0, "Stop after this many seconds of audio; 0: at the end of the file or never.",
            (0.0, 1e6), read_only=True)
        self.weights = declare(
            self, "weights", "", "Weights folder (model.safetensors + config.json); empty: the shipped default.",
            read_only=True)
        window = declare(self, "window_frames", defaults.window_frames, "Frames the denoiser samples at once.",
                         (8, 1200), read_only=True)
        hop = declare(self, "hop_frames", defaults.hop_frames, "New frames published per hop.", (1, 600),
                      read_only=True)
        lookahead = declare(self, "lookahead_frames", defaults.lookahead_frames, "Frames after each hop sampled "
                            "for context but not published; each adds 1/30 s of latency.", (0, 600), read_only=True)
        steps = declare(self, "sampling_steps", defaults.steps, "Sampling steps per window.", (1, 200))
        sampler = declare(self, "sampler", defaults.sampler, "Diffusion sampler.", read_only=True, choices=SAMPLERS)
        guidance = declare(self, "guidance", defaults.guidance, "Classifier-free guidance scale (1: off).", (0.0, 10.0))
        amplitude = declare(self, "amplitude", defaults.amplitude, "Gesture amplitude around the mean pose.",
                            (0.0, 3.0))
        smoothing = declare(self, "smoothing", defaults.smoothing, "Gaussian smoothing of each new hop, sigma in "
                            "frames (0: off); uses published frames as context, so no added latency.", (0.0, 10.0))
        seam_blend = declare(self, "seam_blend", defaults.seam_blend, "Time constant (frames) of the blend that "
                             "makes each hop continue the published motion's position and velocity (0: off).",
                             (0.0, 30.0))
        idle_smoothing = declare(self, "idle_smoothing", defaults.idle_smoothing, "Gaussian smoothing (sigma, "
                                 "frames) of frames quieter than silence_threshold_db: a calm rest in silence.",
                                 (0.0, 10.0))
        silence_threshold_db = declare(self, "silence_threshold_db", defaults.silence_threshold_db, "RMS level "
                                       "(dBFS per motion frame) below which audio counts as silence.", (-120.0, 0.0))
        style_blend = declare(self, "style_blend", defaults.style_blend, "How much of the style from style_file "
                              "replaces the style heard in the speech (0: none, 1: all).", (0.0, 1.0))
        self.style_file = declare(self, "style_file", "", "Speech clip whose style to blend in (style_blend); "
                                  "empty: none.", read_only=True)
        seed = declare(self, "seed", defaults.seed, "Random seed of the sampler.", (0, 2**31 - 1), read_only=True)
        threads = declare(self, "num_threads", 2, "CPU threads for inference.", (1, 256), read_only=True)
        self.frame_id = declare(self, "frame_id", "world", "frame_id of published motion.", read_only=True)
        self.wait_for_subscribers = declare(
            self, "wait_for_subscribers", 2.0, "Before streaming, wait up to this many seconds for a gesture_joints "
            "subscriber, so the start of a clip is not lost to DDS discovery.", (0.0, 60.0), read_only=True)
        self.topic_sample_rate = declare(
            self, "topic_sample_rate", 16000, "Sample rate of audio arriving on the 'audio' topic; a change applies "
            "from the next message (a publisher that changes its rate sets it).", (8000, 192000))

        torch.set_num_threads(threads)
        weights = self.weights or str(default_weights_dir())
        model = DiMGestor.load(weights)
        encoder = make_speech_encoder(model.config.speech_encoder)
        config = StreamingConfig(window_frames=window, hop_frames=hop, lookahead_frames=lookahead, steps=steps, sampler=sampler, guidance=guidance, style_blend=style_blend,
                                 amplitude=amplitude, smoothing=smoothing, seam_blend=seam_blend,
                                 idle_smoothing=idle_smoothing, silence_threshold_db=silence_threshold_db, seed=seed)
        self.generator = StreamingGestureGenerator(model, encoder, config)
        if self.style_file:
            self.generator.set_style(self.generator.style_of(load_audio(self.style_file, encoder.sample_rate)))
        self.fps = model.config.motion_fps
        self.skeleton = HUMANOID
        if model.config.pose_dim != self.skeleton.num_dofs:
            raise UserError(f"weights {weights} generate {model.config.pose_dim} DoF but the skeleton has "
                            f"{self.skeleton.num_dofs}; use weights trained for the dimgestor humanoid")
        self.rejected_audio_messages = 0  # 'audio' topic messages refused (layout contradicting the data)
        self.conditioner = AudioConditioner(encoder.sample_rate)
        self.source = self._open_source(encoder.sample_rate)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self.joints_pub = self.create_publisher(JointTrajectory, "gesture_joints", JOINTS_QOS)
        self.skeleton_pub = (
            self.create_publisher(SkeletonChunk, "gesture_skeleton", JOINTS_QOS) if SkeletonChunk else None
        )
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.stats = StreamStats()
        self._reported_problems = dict.fromkeys(self._audio_problems(), 0)  # a file's bad samples count as new
        self.create_timer(1.0, self._publish_diagnostics)

        self.finished = False
        self.exit_code = 0
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._stream, name="gesture_stream", daemon=True)
        self._worker.start()

    def _open_source(self, sample_rate: int):
        kind = resolve_source_kind(self.source_kind)
        if kind == "file":
            path = self.audio_file or str(demo_audio_file())
            source = FileSource(path, sample_rate, chunk_seconds=0.05, realtime=self.realtime)
            self.get_logger().info(f"streaming {path} ({source.duration:.1f} s)")
        elif kind == "mic":
            source = MicSource(sample_rate, device=self.mic_device or None)
            self.get_logger().info(f"listening on '{source.device_name}' at {source.device_rate} Hz")
        else:
            source = PushSource(sample_rate)
            qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT)
            self.create_subscription(Float32MultiArray, "audio", self._on_audio_message, qos)
            self.get_logger().info(f"waiting for audio on {self.resolve_topic_name('audio')}")
        return source

    def _on_audio_message(self, msg: Float32MultiArray) -> None:
        """Queue one message; a bad one is refused with a warning and counted, never raised (that would end the
        node's spin loop)."""
        try:
            dims = [(dim.label, dim.size) for dim in msg.layout.dim]
            samples = samples_from_multiarray(msg.data, dims, msg.layout.data_offset)
            if not samples.size:
                return
            previous = (self.source.input_rate, self.source.input_channels)
            self.source.push(samples, self.topic_sample_rate)
        except Exception as error:  # noqa: BLE001 - whatever a publisher sends must not stop the stream
            self.rejected_audio_messages += 1
            self.get_logger().warning(
                f"refused an 'audio' message ({error}); {self.rejected_audio_messages} refused so far",
                throttle_duration_sec=5.0)
            return
        current = (self.source.input_rate, self.source.input_channels)
        if previous[0] is not None and current != previous:
            self.get_logger().warning(
                f"'audio' changed from {previous[1]} channel(s) at {previous[0]} Hz to {current[1]} channel(s) at "
                f"{current[0]} Hz; now converted to mono {self.source.sample_rate} Hz",
                throttle_duration_sec=5.0)

    def _on_set_parameters(self, params):
        from rcl_interfaces.msg import SetParametersResult

        config = self.generator.config
        for param in params:
            if param.name == "sampling_steps":
                config.steps = int(param.value)
            elif param.name == "guidance":
                config.guidance = float(param.value)
            elif param.name == "amplitude":
                config.amplitude = float(param.value)
            elif param.name == "style_blend":
                config.style_blend = float(param.value)
            elif param.name in ("smoothing", "seam_blend", "idle_smoothing", "silence_threshold_db"):
                setattr(config, param.name, float(param.value))
            elif param.name == "topic_sample_rate":
                self.topic_sample_rate = int(param.value)
        return SetParametersResult(successful=True)

    def _stream(self) -> None:
        deadline = time.monotonic() + self.wait_for_subscribers
        while self.joints_pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        sample_rate = self.source.sample_rate
        limit = int(self.duration * sample_rate) if self.duration > 0 else None
        self.source.start()
        self._start_monotonic = time.monotonic()
        self._start_stamp_ns = self.get_clock().now().nanoseconds
        received = 0
        try:
            while not self._stop.is_set() and not self.source.finished:
                chunk = self.source.read(timeout=0.1)
                if chunk is None:
                    continue
                samples = self.conditioner.process(chunk.samples)  # no NaN, inf or DC offset reaches the encoder
                samples = samples if limit is None else samples[: max(0, limit - received)]
                received += len(samples)
                self._generate(samples, flush=False)
                if limit is not None and received >= limit:
                    break
            if not self._stop.is_set():
                self._generate(None, flush=True)
                self.get_logger().info(
                    f"stream ended after {received / sample_rate:.1f} s of audio, "
                    f"{self.generator.frames_emitted} frames published"
                )
                time.sleep(0.5)  # let reliable publishers deliver the last messages before the process exits
        except Exception as error:  # the node reports and ends with a failure code rather than hanging
            self.get_logger().error(f"streaming failed: {error!r}")
            self.exit_code = 1
        finally:
            self.finished = True

    def _generate(self, samples: np.ndarray | None, flush: bool) -> None:
        started = time.monotonic()
        hops = self.generator.flush() if flush else self.generator.push(samples)
        if samples is not None:
            self.stats.record_compute(time.monotonic() - started, len(samples) / self.source.sample_rate)
        for hop in hops:
            self._publish(hop)

    def _publish(self, hop: MotionHop) -> None:
        n = len(hop.poses)
        start_ns = self._start_stamp_ns + round(hop.first_frame * 1e9 / self.fps)
        stamp = Time(sec=start_ns // 1_000_000_000, nanosec=start_ns % 1_000_000_000)

        trajectory = JointTrajectory()
        trajectory.header.stamp = stamp
        trajectory.header.frame_id = self.frame_id
        trajectory.joint_names = self.skeleton.dof_names
        for k, pose in enumerate(hop.poses):
            offset_ns = round(k * 1e9 / self.fps)
            point = JointTrajectoryPoint()
            point.positions = pose.astype(float).tolist()
            point.time_from_start = Duration(sec=offset_ns // 1_000_000_000, nanosec=offset_ns % 1_000_000_000)
            trajectory.points.append(point)
        self.joints_pub.publish(trajectory)

        if self.skeleton_pub is not None:
            root, quats = euler_to_quaternions(self.skeleton, hop.poses)
            chunk = SkeletonChunk()
            chunk.stamp_sec, chunk.stamp_nanosec = stamp.sec, stamp.nanosec
            chunk.frame_id = self.frame_id
            chunk.frame_rate = float(self.fps)
            chunk.first_frame_index = hop.first_frame
            chunk.bone_names = self.skeleton.bone_names
            chunk.bone_parents = self.skeleton.parents
            chunk.rest_offsets = self.skeleton.rest_offsets().reshape(-1).tolist()
            chunk.num_frames = n
            chunk.rotations = quats.reshape(-1).tolist()
            chunk.root_translations = root.reshape(-1).tolist()
            self.skeleton_pub.publish(chunk)

        audio_end = self._start_monotonic + (hop.first_frame + n) / self.fps
        self.stats.record_hop(time.monotonic() - audio_end, self.generator.config.hop_frames / self.fps)

    def _audio_problems(self) -> dict[str, int]:
        """Counters of bad audio so far: samples replaced, messages refused, format changes."""
        source_stats = getattr(self.source, "stats", None)
        return {
            "non-finite samples replaced by silence": self.conditioner.non_finite_samples
            + (source_stats.non_finite_samples if source_stats is not None else 0),
            "audio messages refused": self.rejected_audio_messages,
            "audio format changes": getattr(self.source, "format_changes", 0),
        }

    def _publish_diagnostics(self) -> None:
        s = self.stats
        problems = self._audio_problems()
        new = {name: count - self._reported_problems[name] for name, count in problems.items()
               if count > self._reported_problems[name]}
        self._reported_problems = problems
        status = DiagnosticStatus(name="dimgestor: gesture_node", hardware_id="dimgestor")
        # WARN while overruns exist or while bad audio arrived in the last period; the counters stay as values.
        status.level = DiagnosticStatus.OK if s.overruns == 0 and not new else DiagnosticStatus.WARN
        status.message = "streaming" if not self.finished else "finished"
        if new:
            summary = ", ".join(f"{count} {name}" for name, count in new.items())
            status.message += f"; bad audio in the last second: {summary}"
            self.get_logger().warning(f"bad audio in the last second: {summary}", throttle_duration_sec=10.0)
        status.values = [
            KeyValue(key="real_time_factor", value=f"{s.real_time_factor:.3f}"),
            KeyValue(key="latency_p50_ms", value=f"{s.latency_percentile(50):.1f}"),
            KeyValue(key="latency_p95_ms", value=f"{s.latency_percentile(95):.1f}"),
            KeyValue(key="overruns", value=str(s.overruns)),
            KeyValue(key="dropped_audio_chunks", value=str(getattr(self.source, "dropped_chunks", 0))),
            KeyValue(key="frames_published", value=str(self.generator.frames_emitted)),
            KeyValue(key="audio_non_finite_samples", value=str(problems["non-finite samples replaced by silence"])),
            KeyValue(key="audio_clipped_samples", value=str(self.conditioner.clipped_samples)),
            KeyValue(key="audio_dc_offset", value=f"{self.conditioner.dc_offset:.4f}"),
            KeyValue(key="audio_rejected_messages", value=str(self.rejected_audio_messages)),
            KeyValue(key="audio_format_changes", value=str(problems["audio format changes"])),
        ]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)

    def close(self) -> None:
        self._stop.set()
        if self._worker.is_alive():
            self._worker.join(timeout=5.0)
        self.source.close()


def main(args: list[str] | None = None) -> int:
    return run_node(GestureNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
