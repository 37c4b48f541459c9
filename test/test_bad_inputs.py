"""Bad inputs not pinned elsewhere: WAV encodings, rates and channel layouts users hand us, damaged WAV headers,
multi-hour recordings, unknown launch arguments and bad start-up parameters. Each is a row of docs/reliability.md."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile

from dimgestor_ros.audio.io import load_audio
from dimgestor_ros.errors import UserError

from audio_samples import tone, wav_file
from conftest import VENV_BIN

SR = 16000


def dominant_hz(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1.0 / rate)[spectrum.argmax()])


# --- encodings, rates and channel layouts: valid audio, read the same -----------------------------------------------


@pytest.mark.reliability("bad input", "WAV in 8-bit, 16-bit, 24-bit, 32-bit integer, 32-bit float and 64-bit float",
                         "read as the same signal, to within the encoding's quantisation")
@pytest.mark.parametrize("subtype, tolerance", [("PCM_U8", 1.5 / 128), ("PCM_16", 2.0 / 2**15), ("PCM_24", 1e-6),
                                                ("PCM_32", 1e-6), ("FLOAT", 1e-7), ("DOUBLE", 1e-7)])
def test_every_wav_sample_encoding_reads_as_the_same_signal(tmp_path, subtype, tolerance):
    signal = tone(0.5, SR, freq=440.0)
    path = tmp_path / f"{subtype}.wav"
    soundfile.write(str(path), signal, SR, subtype=subtype)
    assert soundfile.info(str(path)).subtype == subtype
    audio = load_audio(path, SR)
    assert audio.dtype == np.float32 and audio.shape == signal.shape
    np.testing.assert_allclose(audio, signal, atol=tolerance)


@pytest.mark.reliability("bad input", "WAV at 8, 22.05, 44.1 and 48 kHz",
                         "resampled to the model's 16 kHz: same duration, same pitch")
@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_any_sample_rate_is_resampled_keeping_duration_and_pitch(tmp_path, rate):
    path = tmp_path / f"{rate}.wav"
    soundfile.write(str(path), tone(1.0, rate, freq=440.0), rate, subtype="PCM_16")
    audio = load_audio(path, SR)
    assert abs(len(audio) - SR) <= 2
    assert dominant_hz(audio, SR) == pytest.approx(440.0, abs=2.0)
    assert np.abs(audio[SR // 10 : -SR // 10]).max() == pytest.approx(0.4, abs=0.02)  # level kept, no clipping


@pytest.mark.reliability("bad input", "stereo and multichannel WAV (2, 4, 6 channels)",
                         "downmixed to the mean of the channels")
@pytest.mark.parametrize("channels", [2, 4, 6])
def test_multichannel_wav_is_downmixed_to_the_channel_mean(tmp_path, channels):
    # channel c carries the tone at its own level, so a downmix that took one channel would be caught
    levels = np.linspace(1.0, 0.2, channels)
    frames = tone(0.5, SR, freq=440.0)[:, None] * levels[None, :]  # (N, channels)
    path = tmp_path / f"{channels}ch.wav"
    soundfile.write(str(path), frames, SR, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path, SR), frames.mean(axis=1), atol=1e-6)


# --- damaged WAV headers ----------------------------------------------------------------------------------------------


@pytest.mark.reliability("bad input", "corrupt WAV header: unknown format tag, zero channels, sample rate 0, "
                         "0 bits per sample, float tag with 16-bit samples, absurd sample rate",
                         "UserError naming the file and the fix (re-export or convert with sox)")
@pytest.mark.parametrize("fields", [{"format_tag": 0x1234}, {"channels": 0}, {"rate": 0}, {"bits": 0},
                                    {"format_tag": 3, "bits": 16}, {"rate": 2**31 - 1}],
                         ids=["unknown format tag", "zero channels", "rate 0", "0 bits", "float tag 16 bits",
                              "rate 2^31"])
def test_a_damaged_wav_header_is_a_user_error_naming_the_file(tmp_path, fields):
    path = tmp_path / "speech.wav"
    header = {"format_tag": 1, "channels": 1, "rate": SR, "bits": 16, "payload": bytes(2000)}  # 16-bit mono, valid
    path.write_bytes(wav_file(**{**header, **fields}))
    with pytest.raises(UserError) as error:
        load_audio(path, SR)
    message = str(error.value)
    assert str(path) in message and "\n" not in message
    assert "sox" in message or "re-export" in message, message  # the fix, not only the problem


# --- a multi-hour recording ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_hour_wav(tmp_path_factory):
    """Two hours of 8 kHz 8-bit mono (58 MB), written in blocks: quiet noise, as a forgotten recorder makes."""
    path = tmp_path_factory.mktemp("long") / "two_hours.wav"
    rng = np.random.default_rng(0)
    with soundfile.SoundFile(str(path), "w", samplerate=8000, channels=1, subtype="PCM_U8") as out:
        for _ in range(120):  # one minute per block
            out.write(rng.normal(0.0, 0.01, 8000 * 60))
    return path


@pytest.mark.reliability("bad input", "a multi-hour file (2 h) given to dimgestor generate",
                         "exit 2 at once, one line: its length, the --max-minutes cap and three ways on")
def test_generate_refuses_a_multi_hour_file_before_decoding_it(tmp_path, two_hour_wav):
    result = subprocess.run([str(VENV_BIN / "dimgestor"), "generate", str(two_hour_wav), "-o",
                             str(tmp_path / "x.bvh")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "120.0 min of audio" in lines[0] and "--max-minutes 121" in lines[0] and "audio_source:=file" in lines[0]
    assert not (tmp_path / "x.bvh").exists()


# --- launch arguments and start-up parameters -----------------------------------------------------------------------


@pytest.mark.reliability("bad input", "unknown or malformed launch argument to dimgestor-launch",
                         "exit 2, one line naming it and listing the known arguments; no node started")
@pytest.mark.parametrize("argument, named", [("robt:=nao", "robt"), ("nao", "'nao' is not name:=value")],
                         ids=["misspelt name", "not name:=value"])
def test_unknown_launch_arguments_are_refused_naming_the_known_ones(argument, named):
    result = subprocess.run([str(VENV_BIN / "dimgestor-launch"), argument], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "audio_source" in lines[0] and "robot" in lines[0], lines
    assert "Traceback" not in result.stderr


@pytest.mark.reliability("bad input", "wrong-type or out-of-range parameter given to the gesture node at start-up",
                         "exit 2, one line naming the parameter and the expected type or range")
@pytest.mark.parametrize("param, named", [("amplitude:=big", "expecting type 'DOUBLE'"),
                                          ("amplitude:=50.0", "out of range"),
                                          ("sampling_steps:=2.5", "expecting type 'INTEGER'")],
                         ids=["string for a double", "out of range", "double for an integer"])
def test_bad_start_up_parameters_stop_the_gesture_node_with_one_line(param, named):
    result = subprocess.run(
        [sys.executable, "-m", "dimgestor_ros.nodes.gesture_node", "--ros-args", "-r", "__node:=bad_param_node",
         "-p", "audio_source:=file", "-p", "num_threads:=1", "-p", param],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and param.split(":=")[0] in lines[0] and named in lines[0], result.stderr
