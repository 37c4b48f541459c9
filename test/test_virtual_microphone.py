"""End to end through a real microphone path: PulseAudio -> ALSA pulse plugin -> PortAudio -> sounddevice -> node.

No sound card exists on CI machines, so a private PulseAudio daemon provides one: a pipe source (``virtmic``) that
turns s16le samples written into a FIFO into a capture device, paced by whoever writes. This test writes the
shipped speech clip into it in real time while ``dimgestor-launch audio_source:=mic`` records it through
PortAudio's ``default`` device, exactly as it would record a USB microphone, and checks the motion that arrives
on /gesture_joints in this process. Nothing in the node is faked or patched.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml
from trajectory_msgs.msg import JointTrajectory

from dimgestor_ros.motion.skeleton import HUMANOID
from dimgestor_ros.paths import default_params_file, default_weights_dir, demo_audio_file

from conftest import VENV_BIN
from ros_checks import assert_valid_trajectories

FPS = 30
RATE = 16000  # the pipe source's rate; the node opens the device at PulseAudio's own rate and resamples
SPEECH_SECONDS = 8.0  # the first 8 s of the demo clip: enough hops to see seams, short enough for ~1 min of wall time
# The node counts `duration` from the moment its stream starts; speech starts only once the first motion has
# arrived (about 19 frames of audio plus one inference later), so the run holds lead-in silence, the speech and a
# tail of silence that lets the last spoken hop and its lookahead be published before the node stops.
NODE_AUDIO_SECONDS = SPEECH_SECONDS + 5.0
WRITE_CHUNK_SECONDS = 0.02  # what a sound card hands over at a time: small, and paced by the clock
PULSE_PACKAGES = "pulseaudio pulseaudio-utils libasound2-plugins"
# Largest frame-to-frame change the streamed motion may show, as a multiple of the largest change in offline
# output of the same speech with the node's settings. The streamed audio is not sample-identical to the offline
# clip: lead-in silence shifts the speech against the hop grid and the initial noise, and PulseAudio resamples
# 16 kHz -> 44.1 kHz -> 16 kHz, so the sampler draws a different but equally smooth motion. How fast its fastest
# frame is depends on that alignment (offline, lead-ins of 0-2 s change it by 2x with the shipped weights), so the
# reference is the largest change over offline runs with lead-ins of 0-2 s in OFFLINE_LEAD_STEP_S steps. A seam
# that does not join or a lost hop jumps by the motion's change over many frames, well beyond 1.5x that.
OFFLINE_LEAD_STEP_S = 0.25
JUMP_MARGIN = 1.5

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def moving_weights(tmp_path_factory) -> Path:
    """The shipped network, with its zero-initialised layers given small random values (seeded) if still zero.

    Untrained weights start their output projection and AdaLN modulation at zero (adaLN-Zero), so they stream
    a perfectly still mean pose, against which no jump or seam could ever be seen. Waking those layers gives the
    same architecture and cost a motion that moves and follows the audio. Trained weights have no all-zero
    tensors and are used as shipped.
    """
    import torch

    from dimgestor_ros.model.gesture_model import DiMGestor

    model = DiMGestor.load(default_weights_dir())
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if not parameter.any():
                parameter.add_(0.02 * torch.randn(parameter.shape, generator=generator))
    directory = tmp_path_factory.mktemp("weights") / "moving"
    model.save(directory)
    return directory


@dataclass
class VirtualMicrophone:
    """A private PulseAudio daemon with a FIFO-fed capture device (``virtmic``) set as the default source.

    ``prepare`` only makes the daemon's runtime folder and the environment that points PulseAudio clients at it,
    so a node can be started before the daemon exists (it then finds no input device); ``start`` starts the
    daemon and adds the source; ``remove_source`` and ``add_source`` make the device disappear and come back
    while a node records from it; ``stop`` ends the daemon by its pid.
    """

    env: dict[str, str]  # the test's environment plus what points PulseAudio clients at this daemon
    fifo: Path
    log: Path
    runtime: Path
    daemon: subprocess.Popen | None = None
    module: str | None = None  # index of the loaded pipe-source module while the device exists

    @classmethod
    def prepare(cls, runtime: Path) -> VirtualMicrophone:
        runtime.chmod(0o700)
        env = {
            **os.environ,
            "XDG_RUNTIME_DIR": str(runtime),
            "PULSE_SERVER": f"unix:{runtime}/pulse/native",
            "PULSE_COOKIE": str(runtime / "cookie"),  # keeps clients from looking in the user's home
        }
        return cls(env, runtime / "mic.fifo", runtime / "pulseaudio.log", runtime)

    def start(self, null_sink: bool = True) -> None:
        """Start the daemon with only what the test needs, then add the microphone.

        Native protocol (clients connect over a socket in the runtime dir; anonymous, so no shared cookie is
        needed), and with ``null_sink`` a null sink so the daemon has an output; nothing else: no hardware probing,
        no D-Bus, no idle suspend. Without the null sink the microphone is the daemon's only source, so removing
        it really leaves no device: PulseAudio moves a recording stream whose source goes away to another source
        (the null sink's monitor), and the recording application would never see the device go.
        """
        config = self.runtime / "pa.pa"
        lines = ["load-module module-native-protocol-unix auth-anonymous=1"]
        if null_sink:
            lines.append(f"load-module module-null-sink sink_name=virtspk rate={RATE} channels=1")
        config.write_text("\n".join(lines) + "\n")
        daemon_env = {**self.env, "HOME": str(self.runtime), "XDG_CONFIG_HOME": str(self.runtime / "config")}
        with open(self.log, "w") as log_file:  # the daemon's cookie stays in its runtime dir (HOME)
            self.daemon = subprocess.Popen(
                ["pulseaudio", "-n", "-F", str(config), "--daemonize=no", "--exit-idle-time=-1",
                 "--log-target=stderr"],
                env=daemon_env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            )
        _wait_until(lambda: self.daemon.poll() is not None or self.pactl("info").returncode == 0, 15, "PulseAudio")
        assert self.daemon.poll() is None, (f"pulseaudio exited with {self.daemon.returncode}: "
                                            f"{self.log.read_text()[-2000:]}")
        self.add_source()

    def add_source(self) -> None:
        """Add the FIFO-fed capture device and make it the default source (the device appears)."""
        loaded = self.pactl("load-module", "module-pipe-source", "source_name=virtmic", f"file={self.fifo}",
                            "format=s16le", f"rate={RATE}", "channels=1")
        assert loaded.returncode == 0, loaded.stderr
        self.module = loaded.stdout.strip()
        assert self.pactl("set-default-source", "virtmic").returncode == 0

    def remove_source(self) -> None:
        """Unload the capture device, as if it were unplugged; a FifoWriter on it must be stopped first."""
        assert self.module is not None, "no source to remove"
        unloaded = self.pactl("unload-module", self.module)
        assert unloaded.returncode == 0, unloaded.stderr
        self.module = None

    def stop(self) -> None:
        if self.daemon is None:
            return
        self.daemon.terminate()
        try:
            self.daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            self.daemon.wait()

    def pactl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True, timeout=10)

    def recording_streams(self) -> int:
        """Capture streams now open on the daemon (PortAudio's shows up when the node opens the microphone)."""
        listing = self.pactl("list", "short", "source-outputs").stdout
        return sum(1 for line in listing.splitlines() if line.strip())


def _wait_until(condition, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def require_pulseaudio() -> None:
    """Skip (saying what to install) where PulseAudio's daemon or pactl is missing."""
    missing = [tool for tool in ("pulseaudio", "pactl") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed; install the Debian packages {PULSE_PACKAGES} "
                    "(scripts/setup_env.sh does, when run as root)")


@pytest.fixture(scope="module")
def virtual_microphone(tmp_path_factory) -> Iterator[VirtualMicrophone]:
    """Start PulseAudio with only what the test needs, in its own runtime dir, and stop it by pid afterwards.

    The daemon's address goes only into ``env`` for the processes the test starts: setting it in this process
    would make every later test's ``audio_source auto`` find this microphone instead of the demo clip.
    """
    require_pulseaudio()
    mic = VirtualMicrophone.prepare(tmp_path_factory.mktemp("pulse"))
    try:
        mic.start()
        yield mic
    finally:
        mic.stop()


class FifoWriter(threading.Thread):
    """Plays speech into the virtual microphone the way a sound card delivers it: small chunks, in real time.

    Silence comes first and keeps coming until ``start_speech`` is set, then the speech, then silence again until
    ``stop`` is set. The pipe source has no clock of its own (a capture stream gets exactly what is written, when
    it is written), so pacing here is what makes this a real-time microphone. Speech written before the node's
    stream runs would be lost; silence written meanwhile keeps the stream flowing, as a real microphone would.
    """

    def __init__(self, fifo: Path, speech: np.ndarray) -> None:
        super().__init__(name="virtual_microphone_writer", daemon=True)
        self.fifo = fifo
        self.speech = speech  # int16
        self.start_speech = threading.Event()
        self.stop = threading.Event()
        self.speech_done = threading.Event()
        self.samples_written = 0
        self.speech_started_at_sample: int | None = None
        self.error: BaseException | None = None
        self.error_at: float | None = None  # monotonic time of the error

    def run(self) -> None:
        try:
            self._write()
        except BaseException as error:  # surfaced by the test, not lost in the thread
            self.error, self.error_at = error, time.monotonic()

    def _write(self) -> None:
        # The pipe source holds the FIFO open for reading, so this open does not block; O_NONBLOCK only makes it
        # fail at once if the source is gone. Writes are then blocking again.
        fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        chunk = int(WRITE_CHUNK_SECONDS * RATE)
        silence = np.zeros(chunk, np.int16)
        speech_position = 0
        started = time.monotonic()
        try:
            while not self.stop.is_set():
                wait = started + self.samples_written / RATE - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if self.start_speech.is_set() and speech_position < len(self.speech):
                    if self.speech_started_at_sample is None:
                        self.speech_started_at_sample = self.samples_written
                    block = self.speech[speech_position : speech_position + chunk]
                    speech_position += len(block)
                    if speech_position >= len(self.speech):
                        self.speech_done.set()
                else:
                    block = silence
                os.write(fd, block.tobytes())
                self.samples_written += len(block)
        finally:
            os.close(fd)


# Runs in its own process: PortAudio lists devices once, when sounddevice is first imported, so only a process
# started with the daemon's address in its environment sees the virtual microphone.
CAPTURE_SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    from dimgestor_ros.audio.sources import MicSource

    source = MicSource(16000)
    print(f"device {source.device_name} {source.device_rate} Hz {source.channels} ch", flush=True)
    source.start()
    print("started", flush=True)
    chunks, last = [], time.monotonic() + 10.0
    while time.monotonic() - last < 1.0:  # until the writer has been gone for a second
        chunk = source.read(timeout=0.1)
        if chunk is not None:
            assert chunk.start_sample == sum(len(c) for c in chunks)
            chunks.append(chunk.samples)
            last = time.monotonic()
    np.save(sys.argv[1], np.concatenate(chunks))
    source.close()
    print("closed", flush=True)
""")


def test_microphone_capture_is_the_written_speech_and_closes_after_the_writer_has_gone(virtual_microphone, tmp_path):
    """MicSource through PulseAudio -> PortAudio gets back the speech written into the FIFO, sample for sample up
    to the two resamplings (16 kHz -> the device's 44.1 kHz -> 16 kHz), without a click at any block edge; and
    close() returns although the device has stopped delivering audio (the writer went away)."""
    speech, _ = soundfile.read(str(demo_audio_file()), dtype="int16")
    speech = speech[: 2 * RATE]
    captured_path = tmp_path / "captured.npy"
    capture = subprocess.Popen([sys.executable, "-c", CAPTURE_SCRIPT, str(captured_path)], env=virtual_microphone.env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writer = FifoWriter(virtual_microphone.fifo, speech)
    writer.start_speech.set()
    try:
        lines = []
        while not lines or lines[-1] != "started":  # write only into a running stream: earlier samples are lost
            line = capture.stdout.readline()
            assert line, f"the capture process ended: {capture.stderr.read()[-3000:]}"
            lines.append(line.strip())
        writer.start()
        assert writer.speech_done.wait(timeout=10), "the speech was not written in time"
        writer.stop.set()
        writer.join(timeout=5)
        out, err = capture.communicate(timeout=15)  # close() must not wait for audio that will never come
    finally:
        writer.stop.set()
        if capture.poll() is None:
            capture.kill()
            capture.wait()
    assert capture.returncode == 0 and out.strip().endswith("closed"), err[-3000:]
    print(lines[0])

    reference = speech.astype(np.float32) / 32768.0
    captured = np.load(captured_path)
    # The last few tens of ms stay in PulseAudio's and PortAudio's buffers once the writer stops, and the
    # resampler holds back its filter delay: compare what arrived, allowing the capture a short offset.
    assert len(captured) >= 0.95 * len(reference), f"captured {len(captured)} of {len(reference)} samples"
    n = len(captured) - RATE // 10
    errors = [np.abs(captured[k : k + n] - reference[:n]) for k in range(RATE // 10)]
    best = min(errors, key=lambda e: float(np.sqrt(np.mean(e ** 2))))
    rms_error, max_error = float(np.sqrt(np.mean(best ** 2))), float(best.max())
    speech_rms = float(np.sqrt(np.mean(reference ** 2)))
    print(f"capture error: rms {rms_error:.5f}, max {max_error:.4f} (speech rms {speech_rms:.4f})")
    # It is the speech: measured 1.4% of its rms, mostly PulseAudio's own fast 16 -> 44.1 kHz resampler.
    assert rms_error < 0.03 * speech_rms
    # Resampling each 50 ms block on its own put clicks of up to 0.12 full scale at block edges; one resampler
    # for the whole stream stays near 0.01, like resampling the whole signal at once.
    assert max_error < 0.03


def _params_with_weights(weights: Path, directory: Path) -> Path:
    """The shipped parameters file (config/gesture.yaml), pointing the gesture node at ``weights``."""
    params = yaml.safe_load(default_params_file().read_text())
    params["gesture_node"]["ros__parameters"]["weights"] = str(weights)
    path = directory / "gesture.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _node_streaming_config(params_file: Path):
    """The StreamingConfig the gesture node builds from its parameters file."""
    from dimgestor_ros.streaming.generator import StreamingConfig

    params = yaml.safe_load(params_file.read_text())["gesture_node"]["ros__parameters"]
    names = {"window_frames": "window_frames", "hop_frames": "hop_frames", "lookahead_frames": "lookahead_frames",
             "sampling_steps": "steps", "sampler": "sampler", "guidance": "guidance", "amplitude": "amplitude",
             "smoothing": "smoothing", "seam_blend": "seam_blend", "idle_smoothing": "idle_smoothing",
             "silence_threshold_db": "silence_threshold_db", "style_blend": "style_blend", "seed": "seed"}
    return StreamingConfig(**{field: params[name] for name, field in names.items()})


def _largest_steps(poses: np.ndarray) -> tuple[float, float]:
    """Largest frame-to-frame change of the root translation and of any joint angle, over the whole motion.

    Kept apart because they are in different units (the root moves in metres, joints turn in radians)."""
    steps = np.abs(np.diff(poses, axis=0))
    return float(steps[:, :3].max()), float(steps[:, 3:].max())


def test_speech_into_a_pulseaudio_microphone_streams_continuous_motion(virtual_microphone, moving_weights,
                                                                       collector_factory):
    """Speech played into a PulseAudio capture device reaches the node through PortAudio and comes out as one
    continuous motion: stamps contiguous at 30 fps, no jump beyond the motion's own fastest offline frame, and
    at least 90% of the captured audio's length in frames, with the launcher exiting 0 at `duration`."""
    speech, rate = soundfile.read(str(demo_audio_file()), dtype="int16")
    assert rate == RATE and speech.ndim == 1
    speech = speech[: int(SPEECH_SECONDS * RATE)]
    params_file = _params_with_weights(moving_weights, virtual_microphone.log.parent)
    collector = collector_factory({"/gesture_joints": JointTrajectory})
    joints = collector.messages["/gesture_joints"]

    stdout_path = virtual_microphone.log.parent / "launch.out"
    with open(stdout_path, "w") as output:
        launcher = subprocess.Popen(
            [str(VENV_BIN / "dimgestor-launch"), "audio_source:=mic", "robot:=none",
             f"duration:={NODE_AUDIO_SECONDS}", f"params_file:={params_file}"],
            env=virtual_microphone.env, stdout=output, stderr=subprocess.STDOUT,
        )
    writer = FifoWriter(virtual_microphone.fifo, speech)
    try:
        # PortAudio's capture stream appears on the daemon when the node opens the microphone (after loading the
        # model); silence flows from then on, and speech starts once motion arrives, i.e. the node is listening.
        _wait_until(lambda: launcher.poll() is not None or virtual_microphone.recording_streams() > 0, 60,
                    "the node to open the microphone")
        assert launcher.poll() is None, f"the launcher ended early: {stdout_path.read_text()[-3000:]}"
        writer.start()
        _wait_until(lambda: launcher.poll() is not None or len(joints) > 0, 20, "the first /gesture_joints")
        writer.start_speech.set()
        launcher.wait(timeout=NODE_AUDIO_SECONDS + 30)
        time.sleep(1.0)  # the last reliable messages
    finally:
        writer.stop.set()
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        writer.join(timeout=5)
    log = stdout_path.read_text()
    assert writer.error is None, f"writing into the virtual microphone failed: {writer.error!r}"
    assert launcher.returncode == 0, log[-3000:]
    assert re.search(r"listening on '(default|pulse)'", log), log[-3000:]  # PortAudio's ALSA devices for PulseAudio
    assert writer.speech_done.is_set(), "the node stopped before the whole speech was played"

    # No gaps in time: every message starts one frame after the previous one ended, points 1/30 s apart.
    frames = assert_valid_trajectories(joints, HUMANOID.dof_names, FPS)
    expected = NODE_AUDIO_SECONDS * FPS
    assert 0.9 * expected <= frames <= np.ceil(expected) + 1, f"received {frames} of {expected:.0f} frames"

    # No jumps: compare with offline output of the same speech, same weights and the node's settings.
    import torch

    from dimgestor_ros.generate import generate_poses
    from dimgestor_ros.model.gesture_model import DiMGestor

    torch.set_num_threads(1)
    model = DiMGestor.load(moving_weights)
    config = _node_streaming_config(params_file)
    clip = speech.astype(np.float32) / 32768.0
    tail = np.zeros(int((NODE_AUDIO_SECONDS - SPEECH_SECONDS) * RATE), np.float32)
    largest = [_largest_steps(generate_poses(np.concatenate([np.zeros(int(lead * RATE), np.float32), clip, tail]),
                                             model, config))
               for lead in np.arange(0.0, 2.0 + 1e-9, OFFLINE_LEAD_STEP_S)]
    streamed = np.array([point.positions for msg in joints for point in msg.points])
    offline_root, offline_joint = (max(steps) for steps in zip(*largest))
    streamed_root, streamed_joint = _largest_steps(streamed)
    print(f"largest frame step: root {streamed_root:.4f} m (offline {offline_root:.4f}), "
          f"joint {streamed_joint:.4f} rad (offline {offline_joint:.4f})")
    assert offline_joint > 0, "the offline motion must move, or no jump could be seen"
    assert streamed_root <= JUMP_MARGIN * offline_root
    assert streamed_joint <= JUMP_MARGIN * offline_joint

    # The speech itself got through (not just a stream of silence): the node calms its motion in silence
    # (idle_smoothing), so the frames after the speech move far less than those up to its end. The speech ends
    # in the node's audio no later than it did in the writer's (the node may have missed some lead-in silence);
    # half a second more covers the last hop's smoothing.
    speed = np.abs(np.diff(streamed[:, 3:], axis=0)).mean(axis=1)
    speech_end = int(np.ceil((writer.speech_started_at_sample / RATE + SPEECH_SECONDS + 0.5) * FPS))
    spoken, quiet = speed[:speech_end], speed[speech_end:]
    print(f"lead-in {writer.speech_started_at_sample / RATE:.2f} s; mean joint speed {spoken.mean():.5f} rad/frame "
          f"up to the end of speech, {quiet.mean():.5f} after it")
    assert len(quiet) >= FPS, "the speech started too late to leave a second of silence before the node stopped"
    assert spoken.mean() > 2 * quiet.mean()
