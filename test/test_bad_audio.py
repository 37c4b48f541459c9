"""Bad audio never kills the stream (issue 6): silence, clipping, NaN/inf samples, over-range floats, DC offset,
sample-rate and channel-count changes, odd message lengths and layouts, files that are not audio.

Sample-level cases run the core the node runs (a source, the AudioConditioner, the StreamingGestureGenerator with
the shipped weights); two tests start the real gesture_node: one streams bad audio on its 'audio' topic, one is
given a file that is not audio.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile

from dimgestor_ros.audio.conditioning import AudioConditioner
from dimgestor_ros.audio.io import AudioStats, load_audio, to_mono_float32
from dimgestor_ros.audio.sources import FileSource, PushSource, samples_from_multiarray
from dimgestor_ros.errors import UserError
from dimgestor_ros.features.factory import make_speech_encoder
from dimgestor_ros.model.gesture_model import DiMGestor
from dimgestor_ros.paths import default_weights_dir, demo_audio_file
from dimgestor_ros.streaming.generator import StreamingConfig, StreamingGestureGenerator
from dimgestor_ros.streaming.loudness import FrameLoudness

from audio_samples import tone

SR = 16000
FPS = 30
CHUNK = 800  # 50 ms, what the node reads from a file


@pytest.fixture(scope="module")
def model() -> DiMGestor:
    return DiMGestor.load(default_weights_dir())


@pytest.fixture(scope="module")
def encoder():
    return make_speech_encoder("acoustic")


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load_audio(demo_audio_file(), SR)[: 3 * SR]


def stream(model, encoder, source, conditioner=None):
    """Read a source to its end as the node does (conditioner, generator, flush); (frames, pose_dim) poses."""
    conditioner = conditioner or AudioConditioner(SR)
    generator = StreamingGestureGenerator(model, encoder, StreamingConfig(steps=2))
    hops = []
    while (chunk := source.read(0.0)) is not None:
        hops += generator.push(conditioner.process(chunk.samples))
    hops += generator.flush()
    assert [hop.first_frame for hop in hops] == list(np.cumsum([0] + [len(hop.poses) for hop in hops[:-1]]))
    poses = np.concatenate([hop.poses for hop in hops])
    assert np.isfinite(poses).all()
    return poses


def pushed(*pieces: tuple[np.ndarray, int]) -> PushSource:
    """A PushSource holding the pieces; an empty push at the model rate hands out the resampler's tail."""
    source = PushSource(SR, max_queued_chunks=10_000)
    for samples, rate in pieces:
        source.push(samples, rate)
    source.push(np.zeros(0, np.float32), SR)
    return source


def in_chunks(samples: np.ndarray, rate: int = SR, size: int = CHUNK) -> list[tuple[np.ndarray, int]]:
    return [(samples[i : i + size], rate) for i in range(0, len(samples), size)]


def frames_for(samples: int) -> int:
    return int(np.ceil(samples * FPS / SR))


# --- silence and clipping: valid audio, passed through -----------------------------------------------------------


@pytest.mark.reliability(
    "bad input",
    "long digital silence (streamed)",
    "finite, calm rest motion (< 5 cm or 3 degrees per frame); nothing counted as bad",
)
def test_digital_silence_streams_finite_rest_motion(model, encoder):
    conditioner = AudioConditioner(SR)
    poses = stream(model, encoder, pushed(*in_chunks(np.zeros(3 * SR, np.float32))), conditioner)
    assert len(poses) == frames_for(3 * SR)
    assert np.isfinite(poses).all()
    assert np.abs(np.diff(poses, axis=0)).max() < 0.05  # a calm rest: under 3 degrees / 5 cm per frame
    assert (conditioner.non_finite_samples, conditioner.clipped_samples, conditioner.dc_offset) == (0, 0, 0.0)


@pytest.mark.reliability(
    "bad input",
    "clipped speech",
    "passed through unaltered, clipped samples counted for /diagnostics, motion streams",
)
def test_clipped_speech_passes_through_unchanged_and_is_counted(model, encoder, speech):
    clipped = np.clip(8.0 * speech, -1.0, 1.0)
    at_full_scale = int(np.count_nonzero(np.abs(clipped) >= 0.999))
    assert at_full_scale > 1000
    without_dc_blocker = AudioConditioner(SR, dc_cutoff_hz=0.0)
    np.testing.assert_array_equal(without_dc_blocker.process(clipped), clipped)  # not limited, not altered
    assert without_dc_blocker.clipped_samples == at_full_scale
    conditioner = AudioConditioner(SR)
    poses = stream(model, encoder, pushed(*in_chunks(clipped)), conditioner)
    assert len(poses) == frames_for(len(clipped))
    assert conditioner.clipped_samples == at_full_scale


# --- non-finite and over-range samples -----------------------------------------------------------------------------


@pytest.mark.reliability(
    "bad input",
    "NaN / +inf / -inf samples in streamed audio (16 and 48 kHz)",
    "replaced by silence before resampling, counted, the stream goes on",
)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("rate", [SR, 48000])
def test_non_finite_samples_become_silence_are_counted_and_the_stream_goes_on(model, encoder, speech, bad, rate):
    audio = speech if rate == SR else np.asarray(np.repeat(speech, 3), dtype=np.float32)  # 48 kHz: the resampler too
    audio = audio.copy()
    audio[::97] = bad  # scattered single samples
    audio[rate : rate + rate // 10] = bad  # and 100 ms of nothing but
    expected = int(np.count_nonzero(~np.isfinite(audio)))
    source = pushed(*in_chunks(audio, rate, size=rate // 20))
    assert source.stats.non_finite_samples == expected
    conditioner = AudioConditioner(SR)
    poses = stream(model, encoder, source, conditioner)
    assert len(poses) == frames_for(3 * SR)
    assert conditioner.non_finite_samples == 0  # the source already replaced them, before resampling


@pytest.mark.reliability(
    "bad input",
    "NaN / inf samples reaching the audio conditioner",
    "replaced and counted; the DC blocker's state stays finite",
)
def test_non_finite_samples_reaching_the_conditioner_are_replaced_and_counted():
    conditioner = AudioConditioner(SR)
    out = conditioner.process(np.array([0.1, np.nan, np.inf, -np.inf, 0.2], dtype=np.float32))
    assert np.isfinite(out).all() and conditioner.non_finite_samples == 3
    # The blocker's state stays finite: later audio is not poisoned.
    assert np.isfinite(conditioner.process(np.full(1000, 0.3, np.float32))).all()


@pytest.mark.reliability(
    "bad input",
    "stereo frames with one non-finite channel",
    "the frame becomes silence, every bad sample counted, no RuntimeWarning",
)
def test_stereo_frames_with_a_non_finite_channel_become_silence_and_every_bad_sample_is_counted():
    stats = AudioStats()
    with np.errstate(invalid="raise"):  # no RuntimeWarning escapes for inf + -inf
        out = to_mono_float32(np.array([[0.5, 0.1], [np.nan, 0.2], [np.inf, -np.inf]], np.float32), stats)
    np.testing.assert_allclose(out, [0.3, 0.0, 0.0])
    assert stats.non_finite_samples == 3


@pytest.mark.reliability("bad input", "float WAV file with NaN samples", "file source streams it; NaN samples counted")
def test_float_wav_with_nan_samples_streams_and_counts_them(tmp_path, model, encoder, speech):
    audio = speech.copy()
    audio[::500] = np.nan
    soundfile.write(str(tmp_path / "nan.wav"), audio, SR, subtype="FLOAT")
    source = FileSource(tmp_path / "nan.wav", SR, chunk_seconds=0.05, realtime=False)
    assert len(stream(model, encoder, source)) == frames_for(len(audio))
    assert source.stats.non_finite_samples == len(audio[::500])  # counted as the file is decoded


@pytest.mark.reliability(
    "bad input",
    "float audio far beyond full scale (10, 1e20, 3e38)",
    "limited to full scale and counted as clipped; motion streams (unlimited: NaN motion or an encoder "
    "exception)",
)
@pytest.mark.parametrize("scale", [10.0, 1e20, 3e38])
def test_over_range_floats_are_limited_to_full_scale(model, encoder, speech, scale):
    """Unbounded floats are not audio: unlimited, 1e20 gives NaN motion and 3e38 an exception in the encoder."""
    loud = (speech.astype(np.float64) * scale / np.abs(speech).max()).astype(np.float32)
    conditioner = AudioConditioner(SR, dc_cutoff_hz=0.0)
    limited = conditioner.process(loud)
    assert np.abs(limited).max() == 1.0 and conditioner.clipped_samples == np.count_nonzero(np.abs(loud) >= 0.999)
    assert len(stream(model, encoder, pushed(*in_chunks(loud)))) == frames_for(len(loud))


# --- DC offset -------------------------------------------------------------------------------------------------------


@pytest.mark.reliability(
    "bad input",
    "DC offset on the microphone",
    "removed by the DC blocker within 75 ms; features equal the clean ones",
)
def test_dc_offset_disturbs_the_features_and_the_conditioner_removes_it(encoder, speech):
    offset = 0.1
    clean = encoder.encode(AudioConditioner(SR).process(speech))
    raw = encoder.encode(speech + offset)
    conditioner = AudioConditioner(SR)
    blocked = encoder.encode(np.concatenate([conditioner.process(c) for c, _ in in_chunks(speech + offset)]))
    energy = 40  # the log-energy channel
    assert np.abs(raw[:, energy] - clean[:, energy]).mean() > 0.3  # why the blocker exists
    settled = slice(6, None)  # a new offset is gone within 75 ms; the 64 ms feature window needs 5 frames more
    np.testing.assert_allclose(blocked[settled], clean[settled], atol=2e-3)
    assert conditioner.dc_offset == pytest.approx(offset + speech.mean(), abs=2e-3)


@pytest.mark.reliability("bad input", "DC offset during silence", "still read as silence (idle rest starts)")
def test_an_offset_in_silence_still_reads_as_silence(speech):
    silence = np.full(2 * SR, 0.05, np.float32)
    raw = FrameLoudness(SR, FPS)
    raw.push(silence)
    conditioned = FrameLoudness(SR, FPS)
    conditioned.push(AudioConditioner(SR).process(silence))
    threshold = StreamingConfig().silence_threshold_db
    assert (raw.db(0, 60) > threshold).all()  # unblocked, 0.05 of offset is -26 dBFS: the idle rest never starts
    assert (conditioned.db(1, 60) < threshold).all()


def test_the_dc_blocker_does_not_depend_on_chunking(speech):
    audio = speech + 0.1
    whole = AudioConditioner(SR).process(audio)
    for size in (1, 37, 800):
        conditioner = AudioConditioner(SR)
        pieces = np.concatenate([conditioner.process(audio[i : i + size]) for i in range(0, len(audio), size)])
        np.testing.assert_allclose(pieces, whole, atol=1e-6)


@pytest.mark.reliability("bad input", "large DC offset (-0.3)", "motion streams; offset estimated and reported")
def test_dc_offset_streams_finite_motion(model, encoder, speech):
    conditioner = AudioConditioner(SR)
    assert len(stream(model, encoder, pushed(*in_chunks(speech - 0.3)), conditioner)) == frames_for(len(speech))
    assert conditioner.dc_offset == pytest.approx(-0.3, abs=0.01)


# --- sample-rate, channel-count and length changes between pushes --------------------------------------------------


@pytest.mark.reliability(
    "bad input",
    "sample rate changing between audio messages (16/48/22.05/8/44.1 kHz)",
    "each rate resampled, tail flushed at each change, the signal stays in place",
)
def test_sample_rate_changes_between_pushes_lose_nothing(model, encoder):
    rates = [SR, 48000, 22050, 8000, 44100, SR]
    source = PushSource(SR, max_queued_chunks=10_000)
    for k, rate in enumerate(rates):  # one continuous tone, 0.5 s per rate, in 20 ms messages
        for piece, _ in in_chunks(tone(0.5, rate, start=0.5 * k), rate, size=rate // 50):
            source.push(piece, rate)
    assert source.format_changes == len(rates) - 1
    chunks = []
    while (chunk := source.read(0.0)) is not None:
        chunks.append(chunk)
    out = np.concatenate([c.samples for c in chunks])
    assert abs(len(out) - len(rates) * SR // 2) <= len(rates)  # every rate's tail flushed at the change
    expected = tone(len(rates) * 0.5, SR)
    for k in range(len(rates)):  # the tone stays in place across each change (away from the seams)
        inner = slice(k * SR // 2 + 400, (k + 1) * SR // 2 - 400)
        np.testing.assert_allclose(out[inner], expected[inner], atol=0.02)
    assert len(stream(model, encoder, pushed((out, SR)))) == frames_for(len(out))


@pytest.mark.reliability(
    "bad input",
    "channel count changing between messages (1, 2, 6 channels)",
    "downmixed to mono; changes counted",
)
def test_channel_count_changes_between_pushes_are_downmixed(model, encoder):
    mono = tone(0.25, SR)
    pieces = [mono, np.stack([mono, mono], axis=1), np.tile(mono[:, None], (1, 6)), np.stack([mono, -mono], axis=1),
              mono]
    source = pushed(*[(piece, SR) for piece in pieces])
    assert source.format_changes == 4  # 1 -> 2 -> 6 -> 2 -> 1 channels
    out = [source.read(0.0).samples for _ in pieces]
    for k in (0, 1, 2, 4):
        np.testing.assert_allclose(out[k], mono, atol=1e-6)
    np.testing.assert_array_equal(out[3], 0.0)  # opposite channels cancel
    assert len(stream(model, encoder, pushed(*[(piece, SR) for piece in pieces]))) == frames_for(5 * len(mono))


@pytest.mark.reliability(
    "bad input",
    "audio messages of any length (0 samples to 2 s)",
    "all accepted and resampled; a 3-D array or rate 0 is a ValueError naming it",
)
def test_messages_of_any_length_are_accepted(model, encoder):
    lengths = [0, 1, 2, 7, 480, 4800, 1, 96000, 3]
    audio = tone(sum(lengths) / 48000, 48000)
    source = PushSource(SR, max_queued_chunks=10_000)
    offset = 0
    for n in lengths:
        source.push(audio[offset : offset + n], 48000)
        offset += n
    source.push(np.zeros(0, np.float32), SR)  # a rate change flushes the resampler's tail
    total = 0
    while (chunk := source.read(0.0)) is not None:
        total += len(chunk.samples)
    assert abs(total - sum(lengths) / 3) <= 2
    source = PushSource(SR)
    with pytest.raises(ValueError, match="shape"):
        source.push(np.zeros((2, 2, 2), np.float32), SR)
    with pytest.raises(ValueError, match="rate"):
        source.push(np.zeros(10, np.float32), 0)


@pytest.mark.parametrize(
    "dims, offset, values, expected",
    [
        ([], 0, [0.1, 0.2, 0.3], [0.1, 0.2, 0.3]),
        ([("samples", 3)], 0, [0.1, 0.2, 0.3], [0.1, 0.2, 0.3]),
        ([("frames", 2), ("channels", 2)], 0, [0.1, 0.3, 0.2, 0.4], [[0.1, 0.3], [0.2, 0.4]]),
        ([("channels", 2), ("samples", 2)], 0, [0.1, 0.2, 0.3, 0.4], [[0.1, 0.3], [0.2, 0.4]]),  # planar
        ([("frames", 2)], 1, [9.0, 0.1, 0.2], [0.1, 0.2]),
        ([("frames", 0), ("channels", 2)], 0, [], []),
    ],
)
def test_multiarray_layouts_that_describe_the_data_are_decoded(dims, offset, values, expected):
    np.testing.assert_allclose(samples_from_multiarray(values, dims, offset), np.asarray(expected, np.float32))


@pytest.mark.reliability(
    "bad input",
    "Float32MultiArray audio whose layout contradicts its data",
    "message refused with the reason (logged, counted); the node goes on",
)
@pytest.mark.parametrize(
    "dims, offset, values, reason",
    [
        ([("samples", 5)], 0, [0.1, 0.2, 0.3], "says 5 samples"),
        ([("frames", 2), ("channels", 2)], 0, [0.1, 0.2, 0.3], "does not match"),
        ([("a", 1), ("b", 1), ("c", 1)], 0, [0.1], "3 layout dimensions"),
        ([], 4, [0.1, 0.2], "data_offset"),
    ],
)
def test_multiarray_layouts_that_contradict_the_data_are_refused_with_the_reason(dims, offset, values, reason):
    with pytest.raises(ValueError, match=reason):
        samples_from_multiarray(values, dims, offset)


# --- files that are not audio --------------------------------------------------------------------------------------


@pytest.mark.reliability(
    "bad input",
    "corrupt WAV: random bytes, a PNG, a header cut short",
    "UserError 'cannot read FILE as audio ...; convert it to WAV'",
)
@pytest.mark.parametrize(
    "content",
    [os.urandom(20_000), b"\x89PNG\r\n\x1a\n" + bytes(1000), b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00"],
    ids=["random bytes", "png", "wav header cut short"],
)
def test_a_file_that_is_not_audio_is_a_user_error_naming_it(tmp_path, content):
    path = tmp_path / "speech.wav"
    path.write_bytes(content)
    with pytest.raises(UserError, match="cannot read .* as audio") as error:
        FileSource(path, SR)
    assert str(path) in str(error.value)


@pytest.mark.reliability(
    "bad input",
    "MP3 data named .wav",
    "decoded by content (libsndfile >= 1.1) or a UserError naming the file",
)
def test_an_mp3_named_wav_is_recognised_by_its_content(tmp_path, speech):
    """libsndfile decides the format by content, not name: an MP3 renamed .wav plays where libsndfile reads MP3
    (1.1 and later), and is a clear UserError where it does not."""
    mp3 = tmp_path / "speech.mp3"
    if "MP3" not in soundfile.available_formats():
        mp3.write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(2000))
        with pytest.raises(UserError, match="as audio"):
            load_audio(shutil.copy(mp3, tmp_path / "speech.wav"), SR)
        return
    soundfile.write(str(mp3), speech, SR, format="MP3")
    renamed = shutil.copy(mp3, tmp_path / "speech.wav")
    audio = load_audio(renamed, SR)
    assert abs(len(audio) - len(speech)) <= SR // 10
    assert np.isfinite(audio).all() and 0.5 < np.abs(audio).max() / np.abs(speech).max() < 2.0


@pytest.mark.reliability("bad input", "truncated WAV (header says 3 s, 1 s present)", "the 1 s it holds is streamed")
def test_a_truncated_wav_streams_the_audio_it_holds(tmp_path, model, encoder, speech):
    whole = tmp_path / "whole.wav"
    soundfile.write(str(whole), speech, SR, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole.read_bytes()[: 44 + 2 * SR])  # header + 1 s; the header still says 3 s
    source = FileSource(cut, SR, realtime=False)
    assert source.duration == pytest.approx(1.0, abs=0.01)
    assert len(stream(model, encoder, source)) == frames_for(SR)


@pytest.mark.reliability(
    "bad input",
    "gesture node given a file that is not audio",
    "exit 2, one line 'error: cannot read FILE ...', no traceback",
)
def test_gesture_node_given_a_file_that_is_not_audio_exits_2_with_one_line(tmp_path):
    path = tmp_path / "speech.wav"
    path.write_bytes(os.urandom(20_000))
    result = subprocess.run(
        [sys.executable, "-m", "dimgestor_ros.nodes.gesture_node", "--ros-args", "-r", "__node:=bad_file_node",
         "-p", "audio_source:=file", "-p", f"audio_file:={path}", "-p", "num_threads:=1"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot read") and str(path) in lines[0], result.stderr
    assert "Traceback" not in result.stderr


# --- the real node: bad audio on its 'audio' topic -----------------------------------------------------------------


def _message(samples, dims=(), offset: int = 0):
    from std_msgs.msg import Float32MultiArray, MultiArrayDimension

    msg = Float32MultiArray()
    msg.layout.dim = [MultiArrayDimension(label=label, size=size, stride=0) for label, size in dims]
    msg.layout.data_offset = offset
    msg.data = np.asarray(samples, dtype=np.float32).reshape(-1).tolist()
    return msg


def _values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


@pytest.mark.reliability(
    "bad input",
    "bad audio on the node's audio topic (NaN, clipping, DC, stereo, bad layouts, empty, rate change)",
    "the real node keeps publishing finite motion and counts each kind on /diagnostics",
)
@pytest.mark.timeout(240)
def test_gesture_node_keeps_streaming_through_bad_audio_on_its_topic(tmp_path, collector_factory):
    """Clean, NaN/inf, clipped, DC-offset, stereo, refused (contradicting layouts), empty, 48 kHz after a
    topic_sample_rate update, and odd-length messages, paced in real time: the node keeps publishing finite
    motion, counts every kind on /diagnostics, and stops cleanly at Ctrl-C."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from trajectory_msgs.msg import JointTrajectory

    from dimgestor_ros.motion.skeleton import HUMANOID
    from ros_checks import assert_valid_trajectories

    # Topics of its own, so no other gesture_node in this ROS domain can be heard.
    joints_topic, diagnostics_topic, audio_topic = (f"/bad_audio/{name}" for name in ("gesture_joints", "diagnostics",
                                                                                     "audio"))
    collector = collector_factory({joints_topic: JointTrajectory, diagnostics_topic: DiagnosticArray})
    log = tmp_path / "node.log"
    with open(log, "w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "dimgestor_ros.nodes.gesture_node", "--ros-args", "-r", "__node:=bad_audio_node",
             "-r", f"gesture_joints:={joints_topic}", "-r", f"/diagnostics:={diagnostics_topic}",
             "-r", f"audio:={audio_topic}", "-p", "audio_source:=topic", "-p", "sampling_steps:=2",
             "-p", "num_threads:=1", "-p", "wait_for_subscribers:=10.0"],
            stdout=log_file, stderr=subprocess.STDOUT,
        )
    node = rclpy.create_node("bad_audio_publisher", context=collector.context)
    executor = SingleThreadedExecutor(context=collector.context)
    executor.add_node(node)
    try:
        publisher = node.create_publisher(
            type(_message([])), audio_topic, QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT))
        set_parameters = node.create_client(SetParameters, "/bad_audio_node/set_parameters")
        deadline = time.monotonic() + 90
        while (publisher.get_subscription_count() == 0 or not set_parameters.service_is_ready()) and (
                time.monotonic() < deadline):
            assert process.poll() is None, log.read_text()[-3000:]
            executor.spin_once(timeout_sec=0.1)
        assert publisher.get_subscription_count() > 0, log.read_text()[-3000:]

        speech = load_audio(demo_audio_file(), SR)
        speech48 = load_audio(demo_audio_file(), 48000)
        sent = {"seconds": 0.0, "non_finite": 0, "refused": 0}

        def play(samples, rate=SR, chunk_s=0.05, dims_of=None):
            """Publish in real-time-paced messages."""
            step = max(1, int(chunk_s * rate))
            for i in range(0, len(samples), step):
                piece = samples[i : i + step]
                publisher.publish(_message(piece, dims_of(piece) if dims_of else ()))
                time.sleep(len(piece) / rate)
            sent["seconds"] += len(samples) / rate
            sent["non_finite"] += int(np.count_nonzero(~np.isfinite(samples)))

        play(speech[:SR])  # clean
        broken = speech[SR : 2 * SR].copy()
        broken[::50] = np.nan
        broken[4000:4800] = np.inf
        broken[6000:6800] = -np.inf
        play(broken)  # NaN and inf
        play(np.clip(8 * speech[2 * SR : 3 * SR], -1, 1))  # clipped
        play(speech[3 * SR : 4 * SR] + 0.2)  # DC offset
        stereo = np.stack([speech[4 * SR : 5 * SR], speech[4 * SR : 5 * SR]], axis=1)
        play(stereo, dims_of=lambda piece: [("frames", len(piece)), ("channels", 2)])  # two channels
        for samples, dims, offset in [
            (speech[:800], [("samples", 900)], 0),  # the layout contradicts the data
            (speech[:800], [("a", 2), ("b", 20), ("c", 20)], 0),
            (speech[:800], [], 5000),
        ]:
            publisher.publish(_message(samples, dims, offset))
            sent["refused"] += 1
        publisher.publish(_message([]))  # empty: nothing to do
        request = SetParameters.Request(parameters=[Parameter(name="topic_sample_rate", value=ParameterValue(
            type=ParameterType.PARAMETER_INTEGER, integer_value=48000))])
        future = set_parameters.call_async(request)
        executor.spin_until_future_complete(future, timeout_sec=10)
        assert future.result().results[0].successful, future.result().results[0].reason
        play(speech48[5 * 48000 : 6 * 48000], rate=48000)  # 48 kHz
        odd = speech48[6 * 48000 : 8 * 48000]
        for n in (1, 7, 333):  # odd lengths
            publisher.publish(_message(odd[:n]))
        publisher.publish(_message(odd[341 : 341 + 72000]))  # 1.5 s in one message
        time.sleep(1.5)
        sent["seconds"] += 341 / 48000 + 1.5
        play(speech48[8 * 48000 : 9 * 48000], rate=48000)  # clean again
        time.sleep(3.0)  # the last hops and a diagnostics period
        assert process.poll() is None, "the node died: " + log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        executor.shutdown()
        node.destroy_node()
    output = log.read_text()
    assert process.returncode == 0, output[-3000:]

    joints = collector.messages[joints_topic]
    points = assert_valid_trajectories(joints, HUMANOID.dof_names, FPS)
    positions = np.array([p.positions for m in joints for p in m.points])
    assert np.isfinite(positions).all()
    # All audio streamed but the last hop's worth and the lookahead (best effort may drop a message or two).
    assert points >= (sent["seconds"] - 1.0) * FPS * 0.9, (points, sent["seconds"])

    statuses = [s for m in collector.messages[diagnostics_topic] for s in m.status if s.name.endswith("gesture_node")]
    assert statuses, "no diagnostics"
    last = _values(statuses[-1])
    assert 0 < int(last["audio_non_finite_samples"]) <= sent["non_finite"]
    assert 0 < int(last["audio_clipped_samples"])
    assert 0 < int(last["audio_rejected_messages"]) <= sent["refused"]
    assert int(last["audio_format_changes"]) == 2  # 1 -> 2 channels, then 2 channels at 16 kHz -> 1 at 48 kHz
    assert max(float(_values(s)["audio_dc_offset"]) for s in statuses) > 0.05  # 1 s of +0.2, a 1 s estimate
    assert abs(float(last["audio_dc_offset"])) < 0.02  # gone again once the offset is
    warned = [s for s in statuses if s.level == s.WARN and "bad audio" in s.message]
    assert warned and "non-finite samples replaced by silence" in " ".join(s.message for s in warned)
    assert "refused an 'audio' message" in output and "'audio' changed from" in output
