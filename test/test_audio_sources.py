"""Tests for reading speech files and the audio sources: resampling and downmixing, clear UserErrors for broken
files, FileSource ordering, pacing and looping, PushSource resampling, backlog, dropping the oldest audio and
pause/resume (what the overload policy and the lifecycle node rely on), and source-kind validation."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile

from dimgestor_ros.audio.io import AudioFileStream, load_audio, to_mono_float32
from dimgestor_ros.audio.sources import FileSource, PushSource, resolve_source_kind
from dimgestor_ros.errors import UserError

SR = 16000


def sine(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(int(round(seconds * rate))) / rate)).astype(np.float32)


def write_ramp(path, seconds: float, rate: int = SR) -> np.ndarray:
    """A distinct value per sample (a slow ramp) written as float WAV, so order and position are checkable."""
    samples = np.linspace(-0.9, 0.9, int(round(seconds * rate)), dtype=np.float32)
    soundfile.write(str(path), samples, rate, subtype="FLOAT")
    return samples


def drain(source, timeout: float = 0.05, limit: int = 10_000):
    chunks = []
    for _ in range(limit):
        if source.finished:
            break
        chunk = source.read(timeout)
        if chunk is not None:
            chunks.append(chunk)
    return chunks


def test_load_audio_resamples_44k1_stereo_to_16k_mono(tmp_path):
    tone = sine(300.0, 1.5, 44100)
    # Left carries the tone twice over, right cancels half of it: the mean of the channels is the tone.
    stereo = np.stack([2 * tone, np.zeros_like(tone)], axis=1)
    soundfile.write(str(tmp_path / "stereo.wav"), stereo * 0.5, 44100, subtype="FLOAT")
    audio = load_audio(tmp_path / "stereo.wav", SR)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == 24000  # 1.5 s at 16 kHz
    expected = sine(300.0, 1.5, SR) * 0.5
    inner = slice(800, -800)  # away from the resampler's edge transients
    np.testing.assert_allclose(audio[inner], expected[inner], atol=2e-3)


def test_load_audio_downmixes_opposite_channels_to_silence(tmp_path):
    tone = sine(440.0, 0.5, 48000)
    soundfile.write(str(tmp_path / "antiphase.wav"), np.stack([tone, -tone], axis=1), 48000, subtype="FLOAT")
    audio = load_audio(tmp_path / "antiphase.wav", SR)
    assert len(audio) == 8000
    assert np.abs(audio).max() < 1e-6


def test_load_audio_at_the_model_rate_is_unchanged(tmp_path):
    samples = write_ramp(tmp_path / "ramp.wav", 0.3)
    np.testing.assert_array_equal(load_audio(tmp_path / "ramp.wav", SR), samples)


@pytest.mark.reliability("bad input", "missing audio file", "UserError naming it")
def test_missing_audio_file_is_a_user_error_naming_it(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(UserError, match="not found") as error:
        load_audio(path, SR)
    assert str(path) in str(error.value)


@pytest.mark.reliability("bad input", "empty WAV (no samples)", "UserError naming it and the fix")
def test_empty_wav_is_a_user_error_naming_it(tmp_path):
    path = tmp_path / "empty.wav"
    soundfile.write(str(path), np.zeros(0, dtype=np.float32), SR)
    assert path.stat().st_size > 0  # a valid WAV header with no samples
    with pytest.raises(UserError, match="no samples") as error:
        load_audio(path, SR)
    assert str(path) in str(error.value)


@pytest.mark.reliability("bad input", "text or random data named .wav", "UserError 'cannot read FILE as audio'")
@pytest.mark.parametrize("content", [b"hello, this is not audio\n", b"", b"RIFF\x00\x00\x00\x00WAVEjunk"])
def test_non_audio_file_named_wav_is_a_user_error_naming_it(tmp_path, content):
    path = tmp_path / "speech.wav"
    path.write_bytes(content)
    with pytest.raises(UserError) as error:
        load_audio(path, SR)
    assert str(path) in str(error.value)


@pytest.mark.reliability("bad input", "a directory given as the audio file", "UserError naming it")
def test_a_directory_is_not_an_audio_file(tmp_path):
    with pytest.raises(UserError) as error:
        load_audio(tmp_path, SR)
    assert str(tmp_path) in str(error.value)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # inf + -inf while downmixing
def test_to_mono_turns_frames_with_non_finite_samples_into_silence():
    out = to_mono_float32(np.array([[0.5, 0.1], [np.nan, 0.2], [np.inf, 0.0], [np.inf, -np.inf]]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.3, 0.0, 0.0, 0.0], atol=1e-7)
    with pytest.raises(ValueError):
        to_mono_float32(np.zeros((2, 2, 2)))


def test_file_source_without_pacing_yields_the_file_once_in_order(tmp_path):
    samples = write_ramp(tmp_path / "ramp.wav", 0.55)
    source = FileSource(tmp_path / "ramp.wav", SR, chunk_seconds=0.1, realtime=False)
    assert not source.finished
    chunks = drain(source)
    assert source.finished
    assert [c.start_sample for c in chunks] == [0, 1600, 3200, 4800, 6400, 8000]
    assert [len(c.samples) for c in chunks] == [1600] * 5 + [800]
    np.testing.assert_array_equal(np.concatenate([c.samples for c in chunks]), samples)
    assert source.read(0.01) is None  # nothing more, ever


def test_file_source_resamples_the_file_to_the_model_rate(tmp_path):
    soundfile.write(str(tmp_path / "a.wav"), sine(200.0, 0.5, 22050), 22050, subtype="FLOAT")
    source = FileSource(tmp_path / "a.wav", SR, realtime=False)
    assert source.duration == pytest.approx(0.5, abs=1e-3)
    assert sum(len(c.samples) for c in drain(source)) == 8000


def test_file_source_gives_exactly_load_audio_samples_across_blocks_and_loops(tmp_path):
    """The file is decoded half a second at a time through one resampler: the stream is sample for sample what
    load_audio (and so `dimgestor generate`) reads, across block edges and when it wraps around."""
    rng = np.random.default_rng(0)
    stereo = (0.3 * rng.standard_normal((int(2.3 * 44100), 2))).astype(np.float32)
    soundfile.write(str(tmp_path / "a.wav"), stereo, 44100, subtype="FLOAT")
    whole = load_audio(tmp_path / "a.wav", SR)
    source = FileSource(tmp_path / "a.wav", SR, chunk_seconds=0.07, realtime=False, loop=True)
    streamed = np.concatenate([source.read(0.0).samples for _ in range(int(2 * len(whole) / 1120) + 2)])
    np.testing.assert_array_equal(streamed[: 2 * len(whole)], np.tile(whole, 2))


def test_file_source_does_not_hold_the_decoded_file(tmp_path):
    """Ten minutes of 16 kHz audio are 38 MB of float32; opening the file and streaming a few seconds of it stays
    within a few megabytes (numpy's allocations are traced)."""
    import tracemalloc

    with soundfile.SoundFile(str(tmp_path / "long.wav"), "w", samplerate=SR, channels=1, subtype="PCM_16") as out:
        for k in range(60):
            out.write(sine(150.0 + k, 10.0, SR))
    tracemalloc.start()
    try:
        source = FileSource(tmp_path / "long.wav", SR, chunk_seconds=0.05, realtime=False)
        for _ in range(100):
            source.read(0.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert source.duration == pytest.approx(600.0)
    assert peak < 4e6, peak


@pytest.mark.reliability("bad input", "audio file unreadable part-way (damaged data after a good start)",
                         "the file source ends there with what was readable; error says why")
def test_file_source_unreadable_part_way_ends_with_what_was_readable(tmp_path):
    """The file is decoded as it streams, so damage further in shows only then. libsndfile's error is simulated
    on the second read (a FLAC damaged that way cannot be written on purpose with libsndfile)."""
    write_ramp(tmp_path / "ramp.wav", 1.0)
    source = FileSource(tmp_path / "ramp.wav", SR, chunk_seconds=0.1, realtime=False)
    read = source._stream.read
    calls = {"n": 0}

    def failing_read(count):
        calls["n"] += 1
        if calls["n"] == 2:
            raise UserError("cannot read ramp.wav as audio (Internal psf_fseek() failed.)")
        return read(count)

    source._stream.read = failing_read
    chunks = drain(source)
    assert [len(c.samples) for c in chunks] == [1600]
    assert source.finished and "cannot read ramp.wav" in source.error
    assert source.read(0.0) is None


def test_file_stream_closes_its_file_when_the_first_block_cannot_be_decoded(tmp_path, monkeypatch):
    """The constructor's UserError must not leave the handle open until garbage collection (a node that retries a
    damaged file would hold one descriptor per try). libsndfile's decode error is simulated on the first read."""
    write_ramp(tmp_path / "ramp.wav", 0.5)
    opened = []
    real_init = soundfile.SoundFile.__init__

    def tracking_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        opened.append(self)

    def failing_read(self, *args, **kwargs):
        raise RuntimeError("Internal psf_fseek() failed.")

    monkeypatch.setattr(soundfile.SoundFile, "__init__", tracking_init)
    monkeypatch.setattr(soundfile.SoundFile, "read", failing_read)
    with pytest.raises(UserError, match="cannot read .*ramp.wav as audio"):
        AudioFileStream(tmp_path / "ramp.wav", SR)
    assert len(opened) == 1 and opened[0].closed


def test_file_source_paced_in_real_time_takes_the_audio_duration(tmp_path):
    write_ramp(tmp_path / "ramp.wav", 0.5)
    source = FileSource(tmp_path / "ramp.wav", SR, chunk_seconds=0.05, realtime=True)
    started = time.monotonic()
    source.start()
    chunks = drain(source, timeout=0.02)
    elapsed = time.monotonic() - started
    assert sum(len(c.samples) for c in chunks) == 8000
    assert elapsed >= 0.45
    assert elapsed < 2.0  # paced, not stalled


def test_file_source_paced_read_returns_none_before_the_chunk_is_due(tmp_path):
    write_ramp(tmp_path / "ramp.wav", 0.5)
    source = FileSource(tmp_path / "ramp.wav", SR, chunk_seconds=0.2, realtime=True)
    source.start()
    assert source.read(0.01) is None  # the first chunk is due only after 0.2 s
    assert not source.finished


def test_looping_file_source_wraps_around_and_keeps_counting(tmp_path):
    samples = write_ramp(tmp_path / "ramp.wav", 0.25)  # 4000 samples
    source = FileSource(tmp_path / "ramp.wav", SR, chunk_seconds=0.1, realtime=False, loop=True)
    chunks = [source.read(0.01) for _ in range(5)]
    assert [c.start_sample for c in chunks] == [0, 1600, 3200, 4800, 6400]
    np.testing.assert_array_equal(np.concatenate([c.samples for c in chunks]), np.tile(samples, 2)[:8000])
    assert not source.finished
    source.close()
    assert source.finished


@pytest.mark.reliability("bad input", "file source given a broken file", "UserError")
def test_file_source_of_a_broken_file_is_a_user_error(tmp_path):
    (tmp_path / "x.wav").write_text("not audio")
    with pytest.raises(UserError, match="x.wav"):
        FileSource(tmp_path / "x.wav", SR)


def test_push_source_resamples_pushed_audio_as_one_stream_and_downmixes():
    """One continuous 48 kHz tone pushed in uneven pieces, mono then stereo, then 16 kHz audio: the pieces come out
    as one resampled stream (no clicks at message edges, nothing lost), the rate change flushes the old resampler's
    tail before the new audio, and every push is mono float32."""
    source = PushSource(SR)
    tone = sine(300.0, 0.3, 48000)
    source.push(tone[:4800], 48000)
    source.push(np.stack([tone[4800:7200]] * 2, axis=1), 48000)
    source.push(tone[7200:], 48000)
    source.push(sine(300.0, 0.02, SR), SR)
    chunks = []
    while (chunk := source.read(0.01)) is not None:
        chunks.append(chunk)
    assert all(c.samples.dtype == np.float32 and c.samples.ndim == 1 for c in chunks)
    assert [c.start_sample for c in chunks] == list(np.cumsum([0] + [len(c.samples) for c in chunks[:-1]]))
    stream = np.concatenate([c.samples for c in chunks])
    assert len(stream) == 4800 + 320
    inner = slice(200, 4800 - 200)  # the message edges at 1600 and 2400 lie inside
    np.testing.assert_allclose(stream[inner], sine(300.0, 0.3, SR)[inner], atol=2e-3)
    np.testing.assert_array_equal(stream[4800:], sine(300.0, 0.02, SR))
    assert source.format_changes == 3  # mono -> stereo -> mono, 48 -> 16 kHz
    assert not source.finished


@pytest.mark.reliability("bad input", "audio topic flooding faster than inference", "oldest chunks dropped and counted")
def test_push_source_drops_and_counts_chunks_when_its_queue_is_full():
    source = PushSource(SR, max_queued_chunks=2)
    for value in (0.1, 0.2, 0.3):
        source.push(np.full(160, value, dtype=np.float32), SR)
    assert source.dropped_chunks == 1
    assert source.read(0.01).samples[0] == pytest.approx(0.1)
    assert source.read(0.01).samples[0] == pytest.approx(0.2)
    assert source.read(0.01) is None


def test_paced_file_source_reports_its_backlog_and_drops_the_oldest_audio(tmp_path):
    """A reader that fell 0.5 s behind a paced file sees 0.5 s of backlog; dropping all but the newest 0.1 s skips
    ahead in the file, as a microphone's dropped audio would be gone."""
    samples = write_ramp(tmp_path / "ramp.wav", 2.0)
    source = FileSource(tmp_path / "ramp.wav", SR, chunk_seconds=0.05, realtime=True)
    source.start()
    time.sleep(0.5)
    assert source.backlog_seconds() == pytest.approx(0.5, abs=0.1)
    dropped = source.drop_oldest(0.1)
    assert dropped / SR == pytest.approx(0.4, abs=0.1)
    assert source.backlog_seconds() == pytest.approx(0.1, abs=0.05)
    chunk = source.read(0.0)
    assert chunk.start_sample == dropped
    np.testing.assert_array_equal(chunk.samples, samples[dropped : dropped + 800])


def test_file_source_resumes_pacing_where_it_paused(tmp_path):
    write_ramp(tmp_path / "ramp.wav", 2.0)
    source = FileSource(tmp_path / "ramp.wav", SR, chunk_seconds=0.05, realtime=True)
    source.start()
    first = drain(source, timeout=0.02, limit=12)  # about 0.3 s, read as it came
    source.pause()
    time.sleep(0.5)
    source.start()
    assert source.backlog_seconds() < 0.05  # the pause is not owed: nothing piled up
    assert source.read(0.1).start_sample == sum(len(c.samples) for c in first)  # on from where it stopped


def test_unpaced_file_source_is_never_behind(tmp_path):
    write_ramp(tmp_path / "ramp.wav", 1.0)
    source = FileSource(tmp_path / "ramp.wav", SR, realtime=False)
    source.start()
    time.sleep(0.2)
    assert source.backlog_seconds() == 0.0 and source.drop_oldest(0.0) == 0


def test_push_source_reports_its_backlog_and_drops_whole_chunks_oldest_first():
    source = PushSource(SR)
    for k in range(10):
        source.push(np.full(800, k / 10, np.float32), SR)
    assert source.backlog_seconds() == pytest.approx(0.5)
    assert source.drop_oldest(0.2) == 6 * 800  # the newest 0.2 s (4 chunks) stay
    assert source.backlog_seconds() == pytest.approx(0.2)
    chunk = source.read(0.0)
    assert chunk.start_sample == 6 * 800 and chunk.samples[0] == pytest.approx(0.6)
    assert source.backlog_seconds() == pytest.approx(0.15)
    source.pause()  # a deactivated node: what waited is discarded
    assert source.backlog_seconds() == 0.0 and source.read(0.0) is None


@pytest.mark.reliability("bad input", "unknown audio_source kind", "UserError listing the kinds")
def test_unknown_source_kind_is_a_user_error():
    with pytest.raises(UserError, match="bogus"):
        resolve_source_kind("bogus")


@pytest.mark.parametrize("kind", ["mic", "file", "topic"])
def test_explicit_source_kinds_resolve_to_themselves(kind):
    assert resolve_source_kind(kind) == kind
