"""gesture_node: speech in (file, microphone or topic), gesture motion out on /gesture_joints.

A thin adapter: audio capture, feature extraction, the model, window stitching and the overload policy all live in
the core (dimgestor_ros.audio / features / model / streaming); this node wires them to ROS topics, parameters and
the ROS 2 lifecycle (managed node):

- configure: load the model and open the audio source (a failure is one logged line and FAILURE: the node stays
  unconfigured and alive, so a lifecycle manager can fix the parameter and retry);
- activate: start streaming; the lifecycle publishers publish;
- deactivate: stop streaming and publishing, pause the source (a microphone stops capturing, topic audio is
  ignored, a file keeps its place); the model and the stream state stay, so a later activate continues the motion
  from the last published pose;
- cleanup: release model and audio; shutdown: release everything and end the process (exit 0).

With ``autostart`` (the default) the node configures and activates itself, so it runs as a plain program does:
a configure failure is then its one-line error and exit code 2. The end of the audio (a file's end, or
``duration``) also ends the process, as the launchers expect.

Faults never stop the stream or make the motion jump: a microphone that stops delivering audio (unplugged, its
PulseAudio source removed) is reopened every REOPEN_INTERVAL_S while silence stands in for its audio in held
windows (the motion holds and fades to rest, every frame still published with its audio-time stamp); a window
the model samples as NaN or inf is replaced by the same hold (streaming/overload.py). Both are on /diagnostics.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import torch
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
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
from ..streaming.overload import OverloadConfig, OverloadGuard, OverloadPolicy, OverloadState
from .common import JOINTS_QOS, declare, run_node

try:  # the package's own message, built by colcon from msg/
    from dimgestor_msgs.msg import SkeletonChunk
except ImportError:  # pragma: no cover - only when msg/ was not built
    SkeletonChunk = None


WORKER_STOP_TIMEOUT_S = 60.0  # a transition waits this long for the window being sampled (slow settings)
EXIT_STOP_TIMEOUT_S = 5.0  # the process exit waits less: the launcher kills what is still there after 10 s
# A microphone delivers a block every 50 ms, silence included: one that delivers nothing for this long is lost.
DEVICE_TIMEOUT_S = 1.0
REOPEN_INTERVAL_S = 1.0  # while the microphone is lost, try to open it again this often
FILL_MIN_S = 0.05  # while it is lost, silence is streamed in pieces of at least this much audio


def _one_line(error: BaseException) -> str:
    """The reason of a failure on one line: a UserError's message, else the exception's type and message."""
    text = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
    return " ".join(text.split()) or type(error).__name__


class GestureNode(LifecycleNode):
    def __init__(self) -> None:
        super().__init__("gesture_node")
        defaults = StreamingConfig()
        overload = OverloadConfig()
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
        self.autostart = declare(
            self, "autostart", True, "Configure and activate at once (true), or wait unconfigured for a lifecycle "
            "manager or 'ros2 lifecycle set' (false).", read_only=True)
        self.overload_policy = declare(
            self, "overload_policy", overload.enabled, "When inference falls behind real time, degrade (fewer "
            "steps, then skipped windows that hold and fade to rest, then dropped audio) instead of lagging. "
            "Never applies to a file streamed as fast as possible.", read_only=True)
        min_steps = declare(self, "min_sampling_steps", overload.min_steps, "Floor of sampling_steps when the "
                            "overload policy cuts steps.", (1, 200))
        skip_backlog = declare(self, "skip_backlog", overload.skip_backlog_s, "Seconds of waiting audio beyond "
                               "which, at the step floor, windows are skipped (hold and fade).", (0.05, 30.0))
        max_backlog = declare(self, "max_backlog", overload.max_backlog_s, "Seconds of waiting audio beyond "
                              "which the oldest is dropped.", (0.1, 60.0))
        fade_time = declare(self, "fade_time", overload.fade_time_s, "Seconds in which skipped windows settle "
                            "at the rest pose.", (0.1, 10.0))

        try:
            self.stream_config = StreamingConfig(
                window_frames=window, hop_frames=hop, lookahead_frames=lookahead, steps=steps, sampler=sampler,
                guidance=guidance, style_blend=style_blend, amplitude=amplitude, smoothing=smoothing,
                seam_blend=seam_blend, idle_smoothing=idle_smoothing, silence_threshold_db=silence_threshold_db,
                seed=seed)
        except ValueError as error:  # window, hop and lookahead that do not fit together
            raise UserError(str(error)) from None
        self.overload_config = OverloadConfig(min_steps=min_steps, skip_backlog_s=skip_backlog,
                                              max_backlog_s=max_backlog, fade_time_s=fade_time)
        self.num_threads = threads
        self.skeleton = HUMANOID
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)  # in every state
        self.create_timer(1.0, self._publish_diagnostics)

        self.lifecycle_state = "unconfigured"
        self.failure = ""  # the one-line reason of the last failed transition
        self.finished = False  # set when the process should end: the audio ended, streaming failed, or shutdown
        self.exit_code = 0
        self._clear()
        if self.autostart:
            for trigger in (self.trigger_configure, self.trigger_activate):
                if trigger() != TransitionCallbackReturn.SUCCESS:
                    raise UserError(self.failure)

    def _clear(self) -> None:
        """The unconfigured node: no model, no audio, no stream."""
        self.generator: StreamingGestureGenerator | None = None
        self.policy: OverloadPolicy | None = None
        self.source = None
        self.conditioner: AudioConditioner | None = None
        self.stats: StreamStats | None = None
        self.joints_pub = None
        self.skeleton_pub = None
        self._audio_subscription = None
        self.weights_in_use = ""
        self.source_in_use = ""
        self.rejected_audio_messages = 0  # 'audio' topic messages refused (layout contradicting the data)
        self._reported_problems: dict[str, int] = {}
        self._received = 0  # samples handed to the generator (dropped audio included, as the silence it became)
        self._started = False  # the stream has started once (stamps anchored)
        self._active = False
        self._logged_overload = OverloadState.OK
        self.guard: OverloadGuard | None = None
        self._logged_non_finite = False
        self._reported_non_finite = 0
        self._reported_feature_resets = 0
        self._reported_overruns = 0
        self.device_state = ""  # microphone: "ok" or "lost"; other sources: ""
        self.device_losses = 0
        self.device_reopens = 0
        self._next_reopen = 0.0
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None

    # --- lifecycle transitions --------------------------------------------------------------------------------------

    def _failed(self, transition: str, error: BaseException) -> TransitionCallbackReturn:
        """FAILURE with the reason kept for autostart's one-line error, or logged on one line when managed."""
        self.failure = _one_line(error)
        if not self.autostart:
            self.get_logger().error(f"{transition} failed: {self.failure}")
        return TransitionCallbackReturn.FAILURE

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the model and open the audio source; any failure releases what was acquired and is FAILURE."""
        try:
            self._configure()
        except Exception as error:  # noqa: BLE001 - a bad path or a missing device must not end the process
            self._release()
            return self._failed("configure", error)
        self.lifecycle_state = "inactive"
        return super().on_configure(state)

    def _configure(self) -> None:
        torch.set_num_threads(self.num_threads)
        weights = self.weights or str(default_weights_dir())
        model = DiMGestor.load(weights)
        encoder = make_speech_encoder(model.config.speech_encoder)
        self.fps = model.config.motion_fps
        self.policy = OverloadPolicy(self.overload_config, hop_seconds=self.stream_config.hop_frames / self.fps)
        self.guard = OverloadGuard(model, self.policy, backlog=self._backlog_seconds)
        self.generator = StreamingGestureGenerator(self.guard, encoder, self.stream_config)
        if self.style_file:
            self.generator.set_style(self.generator.style_of(load_audio(self.style_file, encoder.sample_rate)))
        if model.config.pose_dim != self.skeleton.num_dofs:
            raise UserError(f"weights {weights} generate {model.config.pose_dim} DoF but the skeleton has "
                            f"{self.skeleton.num_dofs}; use weights trained for the dimgestor humanoid")
        self.conditioner = AudioConditioner(encoder.sample_rate)
        self.source = self._open_source(encoder.sample_rate)
        self.device_state = "ok" if isinstance(self.source, MicSource) else ""
        # Real time only binds a live stream: a file streamed as fast as possible is never behind.
        live = not (isinstance(self.source, FileSource) and not self.source.realtime)
        self.overload_config.enabled = self.overload_policy and live
        self.weights_in_use = weights
        self.joints_pub = self.create_lifecycle_publisher(JointTrajectory, "gesture_joints", JOINTS_QOS)
        self.skeleton_pub = (
            self.create_lifecycle_publisher(SkeletonChunk, "gesture_skeleton", JOINTS_QOS) if SkeletonChunk else None
        )
        self.stats = StreamStats()
        self._reported_problems = dict.fromkeys(self._audio_problems(), 0)  # a file's bad samples count as new

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Enable the publishers, then start (or resume) streaming on a worker thread."""
        result = super().on_activate(state)
        if result != TransitionCallbackReturn.SUCCESS:
            return result
        self._active = True
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._stream, name="gesture_stream", daemon=True)
        self._worker.start()
        self.lifecycle_state = "active"
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop streaming (after the window being sampled) and publishing; pause the source."""
        if not self._stop_worker():
            return self._failed("deactivate", TimeoutError(
                f"the stream did not stop within {WORKER_STOP_TIMEOUT_S:.0f} s"))
        self._active = False
        if self.source is not None:
            self.source.pause()
        self.lifecycle_state = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release the model and the audio source; a later configure loads them again."""
        result = super().on_cleanup(state)
        self._release()
        self.lifecycle_state = "unconfigured"
        return result

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything and end the process (a finalized node can do nothing more)."""
        super().on_shutdown(state)
        self._release()
        self.lifecycle_state = "finalized"
        self.finished = True
        return TransitionCallbackReturn.SUCCESS

    def _stop_worker(self, timeout: float = WORKER_STOP_TIMEOUT_S) -> bool:
        """Stop the streaming thread; False if it is still sampling a window after ``timeout`` seconds."""
        self._stop.set()
        if self._worker is not None and self._worker.is_alive() and self._worker is not threading.current_thread():
            self._worker.join(timeout=timeout)
            if self._worker.is_alive():
                return False
        self._worker = None
        return True

    def _release(self, timeout: float = WORKER_STOP_TIMEOUT_S) -> None:
        """Close the audio source and drop the model, the stream and the configured publishers."""
        if not self._stop_worker(timeout):  # exiting with a window still being sampled: just close the audio
            if self.source is not None:
                self.source.close()
            return
        if self.source is not None:
            try:
                self.source.close()
            except Exception as error:  # noqa: BLE001 - releasing must go on (a device that vanished)
                self.get_logger().warning(f"closing the audio source: {_one_line(error)}")
        for publisher in (self.joints_pub, self.skeleton_pub):
            if publisher is not None:
                self.destroy_lifecycle_publisher(publisher)
        if self._audio_subscription is not None:
            self.destroy_subscription(self._audio_subscription)
        self._clear()

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
            self._audio_subscription = self.create_subscription(
                Float32MultiArray, "audio", self._on_audio_message, qos)
            self.get_logger().info(f"waiting for audio on {self.resolve_topic_name('audio')}")
        self.source_in_use = kind
        return source

    def _on_audio_message(self, msg: Float32MultiArray) -> None:
        """Queue one message; a bad one is refused with a warning and counted, never raised (that would end the
        node's spin loop). Audio arriving while the node is not active is ignored."""
        if not self._active or self.source is None:
            return
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

        config = self.stream_config
        overload = self.overload_config
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
            elif param.name == "min_sampling_steps":
                overload.min_steps = int(param.value)
            elif param.name == "skip_backlog":
                overload.skip_backlog_s = float(param.value)
            elif param.name == "max_backlog":
                overload.max_backlog_s = float(param.value)
            elif param.name == "fade_time":
                overload.fade_time_s = float(param.value)
        return SetParametersResult(successful=True)

    def _backlog_seconds(self) -> float:
        source = self.source
        return source.backlog_seconds() if source is not None else 0.0

    def _stream(self) -> None:
        """Worker thread: read audio, generate, publish, until deactivated, the audio ends, or an error."""
        try:
            sample_rate = self.source.sample_rate
            if not self._started:
                deadline = time.monotonic() + self.wait_for_subscribers
                while (self.joints_pub.get_subscription_count() == 0 and time.monotonic() < deadline
                       and not self._stop.is_set()):
                    time.sleep(0.05)
                if self._stop.is_set():
                    return
            self.source.start()
            # Stamps are audio time: the next sample is "now". On a resume after deactivate, the frames still owed
            # for audio heard before it (at most a hop and the lookahead) are stamped after the pause.
            elapsed = self._received / sample_rate
            self._start_monotonic = time.monotonic() - elapsed
            self._start_stamp_ns = self.get_clock().now().nanoseconds - round(elapsed * 1e9)
            self._started = True
            limit = int(self.duration * sample_rate) if self.duration > 0 else None
            while not self._stop.is_set() and not self.source.finished:
                if limit is not None and self._received >= limit:
                    break
                self._drop_backlog(limit)
                chunk = self.source.read(timeout=0.1)
                if chunk is None:
                    self._watch_device(limit)
                    continue
                samples = self.conditioner.process(chunk.samples)  # no NaN, inf or DC offset reaches the encoder
                samples = samples if limit is None else samples[: max(0, limit - self._received)]
                self._received += len(samples)
                self._generate(samples, flush=False)
            if self._stop.is_set():
                return  # deactivated or shutting down: the stream stays as it is
            if getattr(self.source, "error", None):
                self.get_logger().warning(f"the audio file ended early: {self.source.error}")
            self._generate(None, flush=True)
            self.get_logger().info(
                f"stream ended after {self._received / sample_rate:.1f} s of audio, "
                f"{self.generator.frames_emitted} frames published"
            )
            time.sleep(0.5)  # let reliable publishers deliver the last messages before the process exits
            self.finished = True
        except Exception as error:  # the node reports and ends with a failure code rather than hanging
            if not self.context.ok():  # a signal shut ROS down under a publish: the process is ending cleanly
                return
            self.get_logger().error(f"streaming failed: {error!r}")
            self.exit_code = 1
            self.finished = True

    def _watch_device(self, limit: int | None) -> None:
        """A microphone that stopped delivering audio: hold the motion and fade it to rest, and reopen the device.

        While it is lost, silence stands in for its audio at the audio clock's pace, in held windows (the guard's
        ``hold``: no sampling), so the node keeps publishing every frame with its audio-time stamp and the motion
        settles at rest without a jump; every REOPEN_INTERVAL_S the device is opened again, and once it is back
        the motion fades back in from the held pose as after an overload skip. Called when a read found no audio.
        """
        source = self.source
        if not isinstance(source, MicSource):
            return
        now = time.monotonic()
        if self.device_state != "lost":
            if not source.stalled(DEVICE_TIMEOUT_S):
                return
            self.device_state = "lost"
            self.device_losses += 1
            self.guard.hold = True
            self._next_reopen = now + REOPEN_INTERVAL_S
            self.get_logger().warning(
                f"the audio input device '{source.device_name}' stopped delivering audio: holding the motion and "
                f"fading it to rest; trying to open it again every {REOPEN_INTERVAL_S:g} s")
        sample_rate = source.sample_rate
        due = int((now - self._start_monotonic) * sample_rate) - self._received  # audio the device owes by now
        if limit is not None:
            due = min(due, limit - self._received)
        if due >= FILL_MIN_S * sample_rate:
            self._received += due
            self._generate(np.zeros(due, np.float32), flush=False)
        if now < self._next_reopen:
            return
        self._next_reopen = now + REOPEN_INTERVAL_S
        try:
            source.reopen()
        except UserError as error:
            self.get_logger().info(f"audio input device still missing: {error}", throttle_duration_sec=10.0)
            return
        self.device_state = "ok"
        self.device_reopens += 1
        self.guard.hold = False
        self.get_logger().info(f"the audio input device '{source.device_name}' is back at {source.device_rate} Hz: "
                               "streaming again, fading the motion back in")

    def _drop_backlog(self, limit: int | None) -> None:
        """Overload: drop the oldest waiting audio beyond max_backlog and stream silence in its place, in
        skipped windows, so every frame keeps its audio-time stamp and the motion fades through the gap."""
        keep = self.policy.drop_target(self.source.backlog_seconds())
        if keep is None:
            return
        dropped = self.source.drop_oldest(keep)
        if limit is not None:
            dropped = min(dropped, max(0, limit - self._received))
        if not dropped:
            return
        sample_rate = self.source.sample_rate
        self.policy.record_drop(dropped / sample_rate)
        self.get_logger().warning(
            f"inference is {dropped / sample_rate + keep:.1f} s behind the audio: dropped the oldest "
            f"{dropped / sample_rate:.1f} s", throttle_duration_sec=5.0)
        self._received += dropped
        guard = self.generator.model
        guard.force_skip = True
        try:
            self._generate(np.zeros(dropped, np.float32), flush=False)
        finally:
            guard.force_skip = False

    def _generate(self, samples: np.ndarray | None, flush: bool) -> None:
        started = time.monotonic()
        hops = self.generator.flush() if flush else self.generator.push(samples)
        if samples is not None:
            self.stats.record_compute(time.monotonic() - started, len(samples) / self.source.sample_rate)
        for hop in hops:
            self._publish(hop)
        self._log_overload_change()
        self._log_non_finite_change()

    def _log_non_finite_change(self) -> None:
        """One line when the model's output turns non-finite, and one when it is finite again."""
        guard = self.guard
        if guard.non_finite == self._logged_non_finite:
            return
        self._logged_non_finite = guard.non_finite
        if guard.non_finite:
            self.get_logger().warning(
                f"the model's output is not finite (NaN or inf; {guard.non_finite_windows} window(s) so far): "
                "holding the motion and fading it to rest until it is", throttle_duration_sec=5.0)
        else:
            self.get_logger().info("the model's output is finite again: fading the motion back in",
                                   throttle_duration_sec=5.0)

    def _log_overload_change(self) -> None:
        """One line when the overload state changes (throttled: a stream at its limit may alternate)."""
        policy = self.policy
        if policy.state is self._logged_overload:
            return
        self._logged_overload = policy.state
        if policy.state is OverloadState.OK:
            self.get_logger().info("inference keeps up again: all sampling steps", throttle_duration_sec=5.0)
        else:
            self.get_logger().warning(
                f"inference is behind real time: {policy.state.value} ({policy.steps} of {self.stream_config.steps} "
                f"steps, {policy.hops_skipped} windows skipped, {policy.audio_dropped_s:.1f} s of audio dropped)",
                throttle_duration_sec=5.0)

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
        """Once a second, in every lifecycle state: the state, and when configured the stream's figures."""
        status = DiagnosticStatus(name="dimgestor: gesture_node", hardware_id="dimgestor")
        status.values = [KeyValue(key="lifecycle_state", value=self.lifecycle_state),
                         KeyValue(key="weights", value=self.weights_in_use or "none"),
                         KeyValue(key="audio_source", value=self.source_in_use or "none")]
        s, policy = self.stats, self.policy
        if s is None or policy is None or self.source is None:
            status.level = DiagnosticStatus.OK
            status.message = self.lifecycle_state
            self._send_diagnostics(status)
            return
        problems = self._audio_problems()
        new = {name: count - self._reported_problems.get(name, 0) for name, count in problems.items()
               if count > self._reported_problems.get(name, 0)}
        self._reported_problems = problems
        overloaded = policy.state is not OverloadState.OK
        guard = self.guard
        new_non_finite = guard.non_finite_windows - self._reported_non_finite
        self._reported_non_finite = guard.non_finite_windows
        non_finite = guard.non_finite or new_non_finite > 0
        resets = self.generator.feature_state_resets
        new_resets = resets - self._reported_feature_resets
        self._reported_feature_resets = resets
        lost = self.device_state == "lost"
        new_overruns = s.overruns - self._reported_overruns
        self._reported_overruns = s.overruns
        # WARN while degraded or the microphone is lost, and for a period in which a hop was late (an overrun), bad
        # audio arrived or the model's output was not finite. Overruns count for the period they happened in, not
        # for ever: one late hop (say the first, while the model warms up) must not leave the node WARN all day.
        healthy = not new_overruns and not new and not overloaded and not non_finite and not lost and not new_resets
        status.level = DiagnosticStatus.OK if healthy else DiagnosticStatus.WARN
        status.message = "finished" if self.finished else "streaming" if self._active else self.lifecycle_state
        if policy.state is OverloadState.DEGRADED_STEPS:
            status.message += f"; overloaded: {policy.steps} of {self.stream_config.steps} sampling steps"
        elif policy.state is OverloadState.SKIPPING:
            status.message += "; overloaded: skipping windows (holding and fading to rest)"
        if new_overruns:
            status.message += f"; {new_overruns} hop(s) published late in the last second"
        if lost:
            status.message += "; audio input device lost: holding and fading to rest, reopening it"
        if non_finite:
            status.message += (f"; model output not finite ({guard.non_finite_windows} windows so far): holding and "
                               "fading to rest")
        if new_resets:
            status.message += (f"; NaN/inf in the speech features' state: restarted it ({resets} times so far)")
            self.get_logger().warning(f"the speech features' recurrent state held NaN or inf; it was restarted from "
                                      f"zero ({resets} times so far)", throttle_duration_sec=10.0)
        if new:
            summary = ", ".join(f"{count} {name}" for name, count in new.items())
            status.message += f"; bad audio in the last second: {summary}"
            self.get_logger().warning(f"bad audio in the last second: {summary}", throttle_duration_sec=10.0)
        status.values += [
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
            KeyValue(key="overload_state", value=policy.state.value),
            KeyValue(key="sampling_steps", value=str(policy.steps or self.stream_config.steps)),
            KeyValue(key="hops_degraded", value=str(policy.hops_degraded)),
            KeyValue(key="hops_skipped", value=str(policy.hops_skipped)),
            KeyValue(key="audio_dropped_s", value=f"{policy.audio_dropped_s:.2f}"),
            KeyValue(key="audio_device", value=self.device_state or "n/a"),
            KeyValue(key="audio_device_losses", value=str(self.device_losses)),
            KeyValue(key="audio_device_reopens", value=str(self.device_reopens)),
            KeyValue(key="model_non_finite_windows", value=str(guard.non_finite_windows)),
            KeyValue(key="hops_held", value=str(guard.hops_held + guard.non_finite_windows)),
            KeyValue(key="feature_state_resets", value=str(resets)),
        ]
        self._send_diagnostics(status)

    def _send_diagnostics(self, status: DiagnosticStatus) -> None:
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)

    def close(self) -> None:
        """Process exit (end of audio, Ctrl-C, shutdown): stop streaming and release everything."""
        self._release(EXIT_STOP_TIMEOUT_S)


def main(args: list[str] | None = None) -> int:
    return run_node(GestureNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
