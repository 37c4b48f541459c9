"""Fuzzing of the parsers users feed files to (issue 9): speech files (``load_audio``), BVH motion (``read_bvh``),
robot configs with their URDFs (``load_robot_config``), training configs (``TrainConfig.load``), a weights folder's
config.json (``ModelConfig.load``) and the launch arguments (``resolve_arguments``).

The property, for every input: the parser returns a well-formed result (finite arrays of the documented shapes and
dtypes, or a config object whose invariants hold) or raises the documented :class:`UserError`, one line naming the
file. Any other exception (IndexError, TypeError, ValueError, RecursionError, MemoryError, ...), a NaN that leaks
into the result, or a hang (pytest-timeout) is a bug. Inputs are (a) mutations of valid files, at the byte level
and at the level of their structure (header fields, tokens, YAML values), and (b) arbitrary bytes and text. Every
bug this found is fixed in its parser and kept fixed by an ``@example`` on the test that found it.

The node parameters YAML (config/gesture.yaml, ``params_file:=``) is not here: rclpy parses it, not this package
(launch_spec only checks that the file exists).
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import math
import os
import re
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import soundfile
import yaml
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st

from dimgestor_ros.audio.io import load_audio
from dimgestor_ros.errors import UserError
from dimgestor_ros.launch_spec import LAUNCH_ARGUMENTS, node_set, resolve_arguments
from dimgestor_ros.model.config import BACKBONES, DiffusionConfig, MambaSettings, ModelConfig
from dimgestor_ros.motion.bvh import BvhMotion, read_bvh, write_bvh
from dimgestor_ros.motion.skeleton import HUMANOID, POSITION_CHANNELS, ROTATION_CHANNELS, Bone, Skeleton
from dimgestor_ros.paths import config_dir, default_weights_dir
from dimgestor_ros.retarget.robot import AXES, RobotConfig, load_robot_config
from dimgestor_ros.training.config import TrainConfig

from audio_samples import wav_file

# --- settings ------------------------------------------------------------------------------------------------------

# CI services set the variable CI (GitHub Actions, GitLab, Travis, ...; Hypothesis loads its own "ci" profile on
# it too). There the examples are derandomized: every run of a commit tries the same inputs, so a red build is
# reproducible from its log, and a green one cannot turn red on a later, unrelated commit because the random draw
# changed. Elsewhere they are random, so every developer run explores new inputs; what it finds becomes an @example
# here. CI also skips shrinking: the derandomized failure replays (and shrinks) on any machine, and shrinking may
# take minutes, far past this file's time budget (60 s on 2 cores).
IN_CI = "CI" in os.environ
FUZZ = settings(
    max_examples=100,  # the per-test budget; tests with cheap parsers raise it
    deadline=None,  # a loaded 2-core machine varies 10x per example; hangs are caught by the timeout below
    derandomize=IN_CI,
    database=None if IN_CI else settings.default.database,  # locally, a failure replays first on the next run
    phases=(Phase.explicit, Phase.generate) if IN_CI else tuple(Phase),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    report_multiple_bugs=False,
)
# A hang is a bug too: every test here takes a few seconds, so a test that runs for minutes is stuck on an input.
pytestmark = pytest.mark.timeout(120)

RATE = 16_000  # the model's sample rate, what load_audio is asked for


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder per module, its files rewritten per example (hypothesis cannot use function-scoped tmp_path)."""
    return tmp_path_factory.mktemp("fuzz")


def parse_or_clear_error(parse: Callable[[Path], Any], path: Path) -> Any:
    """``parse(path)``, or None when it raised a UserError that is one line naming ``path``; anything else raises."""
    try:
        result = parse(path)
    except UserError as error:
        message = str(error)
        assert "\n" not in message and "\r" not in message, f"UserError is not one line: {message!r}"
        assert str(path) in message, f"UserError does not name {path}: {message!r}"
        # --hypothesis-show-statistics: how many inputs each check stops, i.e. how deep the fuzzing gets
        kind = re.sub(r"\d+|'[^']*'|\[[^]]*\]|\([^)]*\)", "_", message.replace(str(path), "FILE"))
        event("UserError: " + kind[:70])
        return None
    event("parsed")
    return result


# --- byte-level mutations, shared by every file type ---------------------------------------------------------------

INTERESTING_U32 = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]


@st.composite
def mutated_bytes(draw: st.DrawFn, bases: list[bytes], max_ops: int = 4) -> bytes:
    """A base file with 1..max_ops edits: bit flips, interesting bytes or 16/32-bit integers (chunk sizes, counts)
    in either byte order, truncation, inserted, deleted and duplicated ranges. Positions favour the first 64 bytes,
    where the headers are."""
    data = bytearray(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(1, max_ops))):
        end = max(len(data) - 1, 0)
        position = draw(st.integers(0, min(63, end)) | st.integers(0, end))
        op = draw(st.sampled_from(["flip", "byte", "int", "truncate", "insert", "delete", "duplicate"]))
        if op == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and data:
            data[position] = draw(st.sampled_from([0x00, 0x01, 0x0A, 0x20, 0x7F, 0x80, 0xFF]) | st.integers(0, 255))
        elif op == "int":
            fmt = draw(st.sampled_from(["<I", "<H", ">I", ">H"]))
            size = struct.calcsize(fmt)
            value = draw(st.sampled_from(INTERESTING_U32) | st.integers(0, 2**32 - 1)) % (1 << (8 * size))
            data[position:position + size] = struct.pack(fmt, value)
        elif op == "truncate":
            del data[position:]
        elif op == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[position:position + draw(st.integers(1, 16))]
        elif op == "duplicate":
            data[position:position] = data[position:position + draw(st.integers(1, 64))]
    return bytes(data)


# --- speech files: load_audio ---------------------------------------------------------------------------------------


def _encoded(samples: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def _audio_bases() -> list[bytes]:
    """Small valid files in what libsndfile writes: WAV PCM 16/24 bit and float (with NaN and inf samples), FLAC,
    AIFF and AU (load_audio recognises the format by content, so a .wav name may hold any of them)."""
    t = np.arange(300) / 16_000
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    stereo = np.stack([tone, -tone], axis=1)
    odd = tone.copy()
    odd[[3, 50, 51]] = [np.nan, np.inf, -np.inf]
    return [
        _encoded(tone, 16_000, "WAV", "PCM_16"),
        _encoded(stereo, 48_000, "WAV", "PCM_24"),
        _encoded(odd, 44_100, "WAV", "FLOAT"),
        _encoded(tone, 8_000, "FLAC", "PCM_16"),
        _encoded(stereo, 22_050, "AIFF", "PCM_16"),
        _encoded(tone, 16_000, "AU", "PCM_16"),
    ]


AUDIO_BASES = _audio_bases()


def _flac_claiming(frames: int) -> bytes:
    """A 300-sample FLAC whose STREAMINFO says it holds ``frames`` frames (a 36-bit field at bytes 18-25)."""
    data = bytearray(_encoded(np.zeros(300, np.float32), 16_000, "FLAC", "PCM_16"))
    info = int.from_bytes(data[18:26], "big")
    data[18:26] = ((info & ~(2**36 - 1)) | frames).to_bytes(8, "big")
    return bytes(data)


u32_or_consistent = st.none() | st.sampled_from(INTERESTING_U32) | st.integers(0, 2**32 - 1)


wav_headers = st.builds(
    wav_file,
    format_tag=st.sampled_from([1, 3, 6, 7, 2, 0x11, 0x55, 0xFFFE, 0]) | st.integers(0, 0xFFFF),
    channels=st.sampled_from([1, 2, 3, 8, 0, 255, 256, 1024, 1025, 0xFFFF]),
    rate=st.sampled_from([16_000, 48_000, 8_000, 4_000, 3_999, 768_000, 768_001, 1, 0, 2**31 - 1, 2**32 - 1])
    | st.integers(0, 2**32 - 1),
    bits=st.sampled_from([16, 8, 24, 32, 64, 0, 1, 12, 33, 0xFFFF]),
    payload=st.binary(max_size=1024) | st.lists(st.floats(width=32), max_size=200).map(
        lambda xs: struct.pack(f"<{len(xs)}f", *xs)),
    riff_size=u32_or_consistent,
    fmt_size=st.sampled_from([16, 18, 40, 0, 14, 1000]),
    data_size=u32_or_consistent,
    byte_rate=u32_or_consistent,
    block_align=st.none() | st.integers(0, 0xFFFF),
)


def check_audio(path: Path) -> None:
    """load_audio(path) is a non-empty, finite, mono float32 array no more than 4x the file's frames (a 16 kHz
    result from rates >= 4 kHz: a damaged rate must not blow the file up), or a clear UserError."""
    audio = parse_or_clear_error(lambda p: load_audio(p, RATE), path)
    if audio is None:
        return
    assert isinstance(audio, np.ndarray) and audio.dtype == np.float32 and audio.ndim == 1, (type(audio), audio.shape)
    assert audio.size > 0 and np.isfinite(audio).all()
    assert audio.size <= 4 * soundfile.info(str(path)).frames + 1, audio.size


@pytest.mark.reliability("fuzz", "speech file: mutated WAV/FLAC/AIFF/AU bytes (flips, sizes, truncation, splices)",
                         "finite mono float32 audio or a one-line UserError naming the file")
@settings(FUZZ, max_examples=300)
@given(content=mutated_bytes(AUDIO_BASES))
# Regressions: one sample at 48 kHz resampled to nothing, an empty array (now a UserError: too short); float
# samples near 3e38 (found as a float WAV whose data chunk was shifted) overflowed in the resampler: all NaN; a
# FLAC header claiming 2**36 - 1 frames made soundfile.read() allocate 256 GiB: MemoryError.
@example(content=_encoded(np.full(1, 0.5, np.float32), 48_000, "WAV", "PCM_16"))
@example(content=_flac_claiming(2**36 - 1))
@example(content=_encoded(np.full(300, 3e38, np.float32) * np.sign(np.sin(np.arange(300))).astype(np.float32),
                          44_100, "WAV", "FLOAT"))
def test_mutated_speech_files_load_or_raise_a_clear_error(workdir: Path, content: bytes) -> None:
    path = workdir / "speech.wav"
    path.write_bytes(content)
    check_audio(path)


@pytest.mark.reliability("fuzz", "speech file: WAV header fields (format tag, channels, rate, bits, chunk sizes)",
                         "finite mono float32 audio or a one-line UserError naming the file")
@settings(FUZZ, max_examples=300)
@given(content=wav_headers)
# Regression: a 1 Hz header made 16000x as many samples at 16 kHz (a 1 MB file: 32 GB); now a UserError.
@example(content=wav_file(1, 1, 1, 16, bytes(1000)))
def test_wav_header_fields_load_or_raise_a_clear_error(workdir: Path, content: bytes) -> None:
    path = workdir / "header.wav"
    path.write_bytes(content)
    check_audio(path)


@pytest.mark.reliability("fuzz", "speech file: arbitrary bytes, with and without a format's magic",
                         "finite mono float32 audio or a one-line UserError naming the file")
@settings(FUZZ, max_examples=200)
@given(content=st.tuples(st.sampled_from([b"", b"RIFF", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"fLaC", b"FORM", b".snd",
                                          b"OggS", b"ID3", b"\xff\xfb"]), st.binary(max_size=2048)).map(b"".join))
def test_arbitrary_bytes_as_speech_load_or_raise_a_clear_error(workdir: Path, content: bytes) -> None:
    path = workdir / "random.wav"
    path.write_bytes(content)
    check_audio(path)


# --- BVH motion: read_bvh ------------------------------------------------------------------------------------------

SMALL_BVH = """HIERARCHY
ROOT Hips
{
\tOFFSET 0 90 0
\tCHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
\tJOINT Arm
\t{
\t\tOFFSET 10 0 0
\t\tCHANNELS 4 Xposition Zrotation Xrotation Yrotation
\t\tEnd Site
\t\t{
\t\t\tOFFSET 0 -20 0
\t\t}
\t}
\tJOINT Head
\t{
\t\tOFFSET 0 20 0
\t\tCHANNELS 2 Yrotation Xrotation
\t}
}
MOTION
Frames: 3
Frame Time: 0.0333333
0 90 0 0 0 0 1.5 10 20 30 5 6
1 91 0 1 2 3 1.5 11 21 31 5 6
2 92 0 2 4 6 1.5 12 22 32 5 6
"""


def _humanoid_bvh() -> str:
    """The model's skeleton as write_bvh writes it (pose layout, 63 channels), 3 frames."""
    poses = np.random.default_rng(0).normal(0, 0.3, (3, HUMANOID.num_dofs))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "humanoid.bvh"
        write_bvh(BvhMotion.from_poses(HUMANOID, poses, 1 / 30), path, precision=3)
        return path.read_text()


BVH_BASES = [SMALL_BVH, _humanoid_bvh()]
NUMBERS = ["0", "1", "-1", "2.5", "-0", "nan", "NaN", "inf", "-inf", "1e999", "1e-320", "1e308", "-1e308", "1_0",
           "0x10", "٣", "²", "9" * 30, "9" * 5000, "abc", ""]
BVH_TOKENS = ["HIERARCHY", "ROOT", "JOINT", "End", "Site", "{", "}", "OFFSET", "CHANNELS", "MOTION", "Frames:",
              "Frame", "Time:", *POSITION_CHANNELS, *ROTATION_CHANNELS, "xROTATION", "Wrotation", "3", "6", "0",
              "Hips", "\x00", "\ufeff", "é"] + NUMBERS


@st.composite
def mutated_bvh(draw: st.DrawFn) -> str:
    """A valid BVH with 1..4 edits of its structure: a token replaced, deleted or inserted (channel names and
    counts, numbers, braces, keywords), lines deleted, duplicated or re-indented, the Frames count and Frame Time
    set to odd values, a truncation; joined with LF, CRLF or CR."""
    lines = draw(st.sampled_from(BVH_BASES)).splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        tokens = lines[i].split()
        j = draw(st.integers(0, max(len(tokens) - 1, 0)))
        op = draw(st.sampled_from(["token", "delete token", "insert token", "delete line", "duplicate line",
                                   "indent", "frames", "frame time", "truncate"]))
        if op == "token" and tokens:
            tokens[j] = draw(st.sampled_from(BVH_TOKENS) | st.text(max_size=6))
            lines[i] = " ".join(tokens)
        elif op == "delete token" and tokens:
            del tokens[j]
            lines[i] = " ".join(tokens)
        elif op == "insert token":
            tokens.insert(j, draw(st.sampled_from(BVH_TOKENS)))
            lines[i] = " ".join(tokens)
        elif op == "delete line":
            del lines[i]
        elif op == "duplicate line":
            lines.insert(i, lines[i])
        elif op == "indent":
            lines[i] = draw(st.sampled_from(["", " ", "\t\t\t", "\u00a0", "\x0c", "\u2028"])) + lines[i].strip()
        elif op in ("frames", "frame time"):
            key = "Frames:" if op == "frames" else "Frame Time:"
            for k, line in enumerate(lines):
                if line.startswith(key):
                    lines[k] = f"{key} {draw(st.sampled_from(NUMBERS + ['2', '4', '10000000000']))}"
        elif op == "truncate":
            text = "\n".join(lines)
            lines = text[:draw(st.integers(0, len(text)))].split("\n")
        if not lines:  # the only line deleted
            lines = [""]
    return draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines)


def nested_bvh(depth: int) -> str:
    """A valid BVH whose joints form one chain ``depth`` joints deep."""
    opening = "".join(f"JOINT j{k}\n{{\nOFFSET 0 1 0\nCHANNELS 1 Zrotation\n" for k in range(depth))
    return (f"HIERARCHY\nROOT r\n{{\nOFFSET 0 0 0\nCHANNELS 1 Zrotation\n{opening}{'}' * (depth + 1)}\n"
            f"MOTION\nFrames: 1\nFrame Time: 0.1\n{' '.join(['0'] * (depth + 1))}\n")


def check_bvh(path: Path) -> None:
    """read_bvh(path) is a motion with finite (F >= 1, C) float64 values, C the skeleton's channels, a positive
    finite frame time and rate, finite offsets, unique joint names and known channels; or a clear UserError."""
    motion = parse_or_clear_error(read_bvh, path)
    if motion is None:
        return
    skeleton = motion.skeleton
    assert isinstance(motion, BvhMotion) and isinstance(skeleton, Skeleton)
    values = motion.values
    assert values.dtype == np.float64 and values.ndim == 2, (values.dtype, values.shape)
    assert values.shape[0] == motion.num_frames >= 1 and values.shape[1] == skeleton.num_channels
    assert np.isfinite(values).all()
    assert 0 < motion.frame_time < math.inf and 0 < motion.fps < math.inf, motion.frame_time
    assert skeleton.num_bones >= 1 and len(set(skeleton.bone_names)) == skeleton.num_bones
    for index, bone in enumerate(skeleton.bones):
        assert isinstance(bone, Bone) and -1 <= bone.parent < index and (bone.parent == -1) == (index == 0)
        assert all(math.isfinite(v) for v in bone.offset + (bone.end_site or ()))
        assert set(bone.channels) <= set(POSITION_CHANNELS + ROTATION_CHANNELS)
        assert len(set(bone.channels)) == len(bone.channels)


@pytest.mark.reliability("fuzz", "BVH: mutated tokens, channel counts, numbers (nan/inf/huge), braces, indentation, "
                         "Frames and Frame Time", "finite (F, C) motion or a one-line UserError naming the file")
@settings(FUZZ, max_examples=400)
@given(text=mutated_bvh())
# Regressions: each of these raised ValueError, RecursionError or returned a non-finite skeleton or frame rate.
@example(text=SMALL_BVH.replace("CHANNELS 2", "CHANNELS ²"))  # isdigit() but not int(): ValueError
@example(text=SMALL_BVH.replace("Frames: 3", "Frames: " + "9" * 5000))  # int() refuses 5000 digits: ValueError
@example(text=SMALL_BVH.replace("OFFSET 10 0 0", "OFFSET nan 0 0"))  # NaN offset returned
@example(text=SMALL_BVH.replace("OFFSET 0 -20 0", "OFFSET 0 1e999 0"))  # inf End Site returned
@example(text=SMALL_BVH.replace("Frame Time: 0.0333333", "Frame Time: inf"))  # fps 0
@example(text=SMALL_BVH.replace("Frame Time: 0.0333333", "Frame Time: 1e-320"))  # fps inf
@example(text=nested_bvh(2000))  # RecursionError
@example(text=nested_bvh(200))  # deep, but a valid file: read
def test_mutated_bvh_reads_or_raises_a_clear_error(workdir: Path, text: str) -> None:
    path = workdir / "motion.bvh"
    path.write_text(text, encoding="utf-8")
    check_bvh(path)


@pytest.mark.reliability("fuzz", "BVH: mutated bytes (flips, sizes, truncation, invalid UTF-8)",
                         "finite (F, C) motion or a one-line UserError naming the file")
@settings(FUZZ, max_examples=200)
@given(content=mutated_bytes([text.encode() for text in BVH_BASES]))
def test_mutated_bvh_bytes_read_or_raise_a_clear_error(workdir: Path, content: bytes) -> None:
    path = workdir / "bytes.bvh"
    path.write_bytes(content)
    check_bvh(path)


bvh_soup = st.tuples(
    st.sampled_from(["", "HIERARCHY\n", "HIERARCHY\nROOT r\n{\n"]),
    st.lists(st.tuples(st.sampled_from(BVH_TOKENS) | st.text(max_size=4), st.sampled_from([" ", "\n", "\t"])),
             max_size=60).map(lambda pairs: "".join(token + sep for token, sep in pairs)),
    st.sampled_from(["", "\nMOTION\nFrames: 1\nFrame Time: 0.1\n0 0 0\n"]),
).map("".join)


@pytest.mark.reliability("fuzz", "BVH: arbitrary text and BVH keyword soup",
                         "finite (F, C) motion or a one-line UserError naming the file")
@settings(FUZZ, max_examples=300)
@given(text=st.text(max_size=300) | bvh_soup)
def test_arbitrary_text_as_bvh_reads_or_raises_a_clear_error(workdir: Path, text: str) -> None:
    path = workdir / "text.bvh"
    path.write_text(text, encoding="utf-8")
    check_bvh(path)


# --- YAML/JSON documents: structural mutations, shared by the config parsers ----------------------------------------

ODD_VALUES = [0, 1, -1, 2, 3, 0.5, -0.5, -0.0, 1e-320, 1e308, -1e308, math.nan, math.inf, -math.inf, 10**400,
              -(10**400), 2**63, 2**63 - 1, -(2**63) - 1, 2**31, True, False, None, "", "1", "5e-4", "1.0e+400", "nan",
              "\x00", "a\nb", "x" * 300]  # scalars only: the mutations change containers in place
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
                    st.sampled_from(ODD_VALUES))
garbage = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6) | st.integers(-3, 3),
                                                                      children, max_size=3),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every position in a nested document: () for the root, then keys and indices."""
    found = [prefix]
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        found += _paths(child, prefix + (key,))
    return found


def _at(node: Any, path: tuple) -> Any:
    for key in path:
        node = node[key]
    return node


@st.composite
def mutated_document(draw: st.DrawFn, bases: list[Any], vocabulary: list[str]) -> Any:
    """One of ``bases`` with 1..3 edits at random positions: a value replaced by garbage (wrong types, NaN, huge
    numbers, nested lists and mappings), by an odd value or by a name of ``vocabulary`` (so that some mutants get
    past the name checks into deeper ones); a key deleted; an unknown key added; a value wrapped in a list; a list
    item duplicated (the same object twice: YAML anchors and aliases)."""
    doc = copy.deepcopy(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        node = _at(doc, path)
        op = draw(st.sampled_from(["replace", "odd", "name", "delete", "add", "wrap", "duplicate"]))
        if op == "add" and isinstance(node, (dict, list)):
            value = draw(garbage)
            if isinstance(node, dict):
                node[draw(st.sampled_from(vocabulary) | st.text(max_size=8) | st.integers())] = value
            else:
                node.append(value)
            continue
        if op == "duplicate" and isinstance(node, list) and node:
            node.append(node[draw(st.integers(0, len(node) - 1))])
            continue
        if op == "delete" and path:
            del _at(doc, path[:-1])[path[-1]]
            continue
        value = {"replace": lambda: draw(garbage), "odd": lambda: copy.deepcopy(draw(st.sampled_from(ODD_VALUES))),
                 "name": lambda: draw(st.sampled_from(vocabulary)), "wrap": lambda: [node]}.get(op, lambda: node)()
        if path:
            _at(doc, path[:-1])[path[-1]] = value
        else:
            doc = value
    return doc


def yaml_text(doc: Any) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


def json_text(doc: Any) -> str:
    return json.dumps(doc, default=str)  # NaN and Infinity as Python writes them; dates as text


def check_finite_typed_fields(config: Any) -> None:
    """Each int/float/str/bool field of a config dataclass holds that type; floats are finite."""
    for spec in dataclasses.fields(config):
        value = getattr(config, spec.name)
        if spec.type == "int":
            assert isinstance(value, int) and not isinstance(value, bool), (spec.name, value)
        elif spec.type == "float":
            assert isinstance(value, float) and math.isfinite(value), (spec.name, value)
        elif spec.type == "str":
            assert isinstance(value, str), (spec.name, value)
        elif spec.type == "bool":
            assert isinstance(value, bool), (spec.name, value)


def check_model_config(config: Any) -> None:
    """The invariants a model can be built on: typed finite fields, positive sizes, known choices."""
    assert isinstance(config, ModelConfig)
    assert isinstance(config.mamba, MambaSettings) and isinstance(config.diffusion, DiffusionConfig)
    for part in (config, config.mamba, config.diffusion):
        check_finite_typed_fields(part)
    sizes = ("pose_dim", "speech_dim", "speech_fps", "motion_fps", "d_model", "n_blocks", "n_heads", "encoder_kernel")
    assert all(getattr(config, name) > 0 for name in sizes + ("mlp_ratio", "style_time_constant_s"))
    assert config.backbone in BACKBONES and config.speech_fps >= config.motion_fps
    assert config.d_model % config.n_heads == 0
    assert all(getattr(config.mamba, spec.name) > 0 for spec in dataclasses.fields(config.mamba))
    diffusion = config.diffusion
    assert diffusion.num_train_steps > 0 and diffusion.schedule in ("linear", "cosine")
    assert diffusion.prediction in ("x0", "eps") and 0 < diffusion.beta_start < 1 and 0 < diffusion.beta_end < 1
    assert 0 <= diffusion.cond_drop_prob <= 1 and 0 <= diffusion.context_prob <= 1 and diffusion.velocity_weight >= 0


def check_train_config(config: Any) -> None:
    assert isinstance(config, TrainConfig)
    check_finite_typed_fields(config)
    assert all(getattr(config, name) > 0 for name in ("steps", "batch_size", "window_frames", "hop_frames", "lr"))
    non_negative = ("warmup", "grad_clip", "weight_decay", "val_every", "checkpoint_every", "num_workers")
    assert all(getattr(config, name) >= 0 for name in non_negative)
    assert 0 <= config.ema_decay < 1
    check_model_config(config.model)


# Regression documents shared by the config tests: each once ended in an exception other than UserError.
# A 400-byte YAML value whose last item is 9**9 'x' by aliases (a list of lists of ...); its repr() is 2 GB.
ALIAS_BOMB = "[&a [x, x, x, x, x, x, x, x, x], " + ", ".join(
    f"&{chr(98 + k)} [{', '.join([f'*{chr(97 + k)}'] * 9)}]" for k in range(8)) + "]"
DEEP_BRACKETS = "[" * 3000 + "]" * 3000  # RecursionError in the YAML composer and the JSON decoder
HUGE_INT = "1" * 5000  # int() refuses more than 4300 digits: ValueError, not a YAML or JSON error

# --- training configs: TrainConfig.load ----------------------------------------------------------------------------

TRAIN_BASES = [yaml.safe_load(p.read_text()) for p in sorted((config_dir() / "training").glob("*.yaml"))]
TRAIN_BASES.append(TrainConfig().to_dict())
TRAIN_WORDS = ["steps", "lr", "model", "mamba", "diffusion", "d_model", "n_heads", "backbone", "mamba2", "transformer",
               "linear", "cosine", "x0", "eps", "acoustic"]


def check_train_file(path: Path) -> None:
    config = parse_or_clear_error(TrainConfig.load, path)
    if config is not None:
        check_train_config(config)


@pytest.mark.reliability("fuzz", "training config YAML/JSON: wrong types, missing and unknown keys, nested garbage, "
                         "huge numbers, NaN", "a TrainConfig whose invariants hold or a one-line UserError naming "
                         "the file")
@settings(FUZZ, max_examples=300)
@given(file=st.one_of(mutated_document(TRAIN_BASES, TRAIN_WORDS).map(lambda doc: ("train.yaml", yaml_text(doc))),
                      mutated_document(TRAIN_BASES, TRAIN_WORDS).map(lambda doc: ("train.json", json_text(doc)))))
# Regressions: before, these loaded with a float step count, an infinite grad_clip or a model that was None, a
# list or had an int for its mamba section, or raised TypeError (sorting int and str keys), ZeroDivisionError
# (n_heads 0), ValueError (huge int) or RecursionError, or hung in repr(); YAML syntax errors made two-line messages.
@example(file=("train.yaml", "steps: 1.5\n"))
@example(file=("train.yaml", "grad_clip: .inf\n"))
@example(file=("train.yaml", "model:\n"))
@example(file=("train.yaml", "model: [1, 2]\n"))
@example(file=("train.yaml", "model: {mamba: 5}\n"))
@example(file=("train.yaml", "1: 2\nfoo: 3\n"))
@example(file=("train.yaml", "model: {n_heads: 0}\n"))
@example(file=("train.yaml", f"steps: {HUGE_INT}\n"))
@example(file=("train.json", f'{{"steps": {HUGE_INT}}}'))
@example(file=("train.yaml", DEEP_BRACKETS))
@example(file=("train.json", DEEP_BRACKETS))
@example(file=("train.yaml", "steps: [\n"))
@example(file=("train.yaml", "---\n...\n---\n"))
@example(file=("train.yaml", f"model: {{backbone: {ALIAS_BOMB}}}\n"))
# Edge cases that were already a UserError (now with a message naming the field) or a valid config:
@example(file=("train.yaml", "lr: .nan\n"))
@example(file=("train.json", '{"lr": NaN}'))
@example(file=("train.yaml", "lr: 5e-4\n"))  # text to YAML 1.1
@example(file=("train.yaml", "model: {mamba: {1: 2, x: 3}}\n"))
@example(file=("train.yaml", ""))
def test_mutated_training_config_loads_or_raises_a_clear_error(workdir: Path, file: tuple[str, str]) -> None:
    name, text = file
    path = workdir / name
    path.write_text(text, encoding="utf-8")
    check_train_file(path)


@pytest.mark.reliability("fuzz", "training config: arbitrary text and bytes (.yaml and .json)",
                         "a TrainConfig whose invariants hold or a one-line UserError naming the file")
@settings(FUZZ, max_examples=200)
@given(content=st.text(max_size=200).map(str.encode) | st.binary(max_size=200)
       | mutated_bytes([p.read_bytes() for p in sorted((config_dir() / "training").glob("*.yaml"))]),
       suffix=st.sampled_from([".yaml", ".json"]))
@example(content=b"\xff\xfe\x00", suffix=".yaml")  # UnicodeDecodeError
def test_arbitrary_training_config_file_loads_or_raises_a_clear_error(workdir: Path, content: bytes,
                                                                       suffix: str) -> None:
    path = workdir / f"any{suffix}"
    path.write_bytes(content)
    check_train_file(path)


# --- a weights folder's config.json: ModelConfig.load ---------------------------------------------------------------

MODEL_BASES = [json.loads((default_weights_dir().parent / name / "config.json").read_text())
               for name in ("dimgestor_default", "dimgestor_transformer")]


def check_model_file(path: Path) -> None:
    config = parse_or_clear_error(ModelConfig.load, path)
    if config is not None:
        check_model_config(config)


@pytest.mark.reliability("fuzz", "weights config.json: mutated values and keys, arbitrary text and bytes",
                         "a ModelConfig whose invariants hold or a one-line UserError naming the file")
@settings(FUZZ, max_examples=300)
@given(content=mutated_document(MODEL_BASES, TRAIN_WORDS).map(json_text).map(str.encode)
       | mutated_bytes([json.dumps(doc, indent=2).encode() for doc in MODEL_BASES])
       | st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
# Regressions: ZeroDivisionError, RecursionError, ValueError (huge int, invalid UTF-8), a NaN or a non-mapping
# section accepted, a beta that makes the noise schedule NaN accepted. The last was already a UserError.
@example(content=b'{"n_heads": 0}')
@example(content=DEEP_BRACKETS.encode())
@example(content=f'{{"d_model": {HUGE_INT}}}'.encode())
@example(content=b"\xff{}")
@example(content=b'{"mlp_ratio": NaN}')
@example(content=b'{"mamba": 3}')
@example(content=b'{"diffusion": {"beta_end": 1.5}}')
@example(content=b'{"d_model": 1e999}')
def test_weights_config_json_loads_or_raises_a_clear_error(workdir: Path, content: bytes) -> None:
    path = workdir / "config.json"
    path.write_bytes(content)
    check_model_file(path)


# --- robot configs and their URDFs: load_robot_config ----------------------------------------------------------------

ROBOTS_DIR = config_dir() / "robots"
ROBOT_NAMES = sorted(p.stem for p in ROBOTS_DIR.glob("*.yaml"))
ROBOT_BASES = [yaml.safe_load((ROBOTS_DIR / f"{name}.yaml").read_text()) for name in ROBOT_NAMES]
_URDF_WORDS = sorted({w for name in ROBOT_NAMES for w in re.findall(r'name="([^"]+)"',
                                                                   (ROBOTS_DIR / f"{name}.urdf").read_text())})
ROBOT_WORDS = (HUMANOID.bone_names + _URDF_WORDS + list(AXES) + ["X", "XYZ", "YXZ", "ZZZ", "left_arm", "right_arm",
               "one_euro", "none", "lower", "upper", "velocity", "acceleration", "bone", "ik", "axis", "sign", "scale"]
               + [f"{name}.urdf" for name in ROBOT_NAMES])


@pytest.fixture(scope="module")
def robot_dir(workdir: Path) -> Path:
    """A folder with the shipped URDFs, for robot YAMLs that name them relative to themselves."""
    folder = workdir / "robots"
    folder.mkdir()
    for name in ROBOT_NAMES:
        shutil.copy(ROBOTS_DIR / f"{name}.urdf", folder)
    return folder


def check_robot_config(config: Any) -> None:
    """What the retargeting node relies on: mapped joints named once, each from a valid bone source or a defined
    IK group, finite limits with lower < upper inside the URDF's, positive velocity and acceleration limits, a home
    pose inside them and finite filter settings."""
    assert isinstance(config, RobotConfig) and isinstance(config.name, str)
    names = config.joint_names
    n = len(names)
    assert n >= 1 and len(set(names)) == n and all(isinstance(name, str) for name in names)
    for joint in config.joints:
        assert (joint.bone is None) != (joint.ik is None)
        if joint.bone is not None:
            source = joint.bone
            assert source.bone in HUMANOID.bone_names and source.relative_to in HUMANOID.bone_names
            assert source.axis in AXES and sorted(source.order) == ["X", "Y", "Z"] and source.sign in (1.0, -1.0)
            assert 0 < source.scale < math.inf and math.isfinite(source.offset)
        else:
            chain = config.ik[joint.ik]
            assert len(chain.bones) == 3 and all(bone in HUMANOID.bone_names for bone in chain.bones)
            assert math.isfinite(chain.regularization) and chain.regularization >= 0
    limits, urdf = config.limits, config.urdf_limits
    for array in (limits.lower, limits.upper, limits.velocity, limits.acceleration, config.home):
        assert isinstance(array, np.ndarray) and array.shape == (n,) and not np.isnan(array).any()
    assert np.isfinite(limits.lower).all() and np.isfinite(limits.upper).all() and (limits.lower < limits.upper).all()
    assert np.isfinite(limits.velocity).all() and (limits.velocity > 0).all() and (limits.acceleration > 0).all()
    assert (limits.lower >= urdf.lower).all() and (limits.upper <= urdf.upper).all()
    assert (limits.velocity <= urdf.velocity).all()
    assert ((config.home >= limits.lower) & (config.home <= limits.upper)).all()
    assert set(config.joint_types) <= {"revolute", "continuous", "prismatic"} and len(config.joint_types) == n
    smoothing, fade = config.smoothing, config.fade
    assert all(math.isfinite(v) for v in (smoothing.min_cutoff, smoothing.beta, smoothing.d_cutoff))
    assert all(math.isfinite(v) and v >= 0 for v in (fade.fade_in, fade.fade_out, fade.hold))


def check_robot_file(path: Path) -> None:
    config = parse_or_clear_error(lambda p: load_robot_config(str(p)), path)
    if config is not None:
        check_robot_config(config)


TWO_JOINTS = "urdf: generic_humanoid.urdf\njoints:\n  - {name: torso_yaw, bone: Spine2, relative_to: Hips, axis: y}\n"
ARM_IK = ("  - {name: l_elbow, ik: left_arm}\nik:\n  left_arm: {base_link: torso_link, shoulder_link: l_shoulder_link, "
          "elbow_link: l_forearm_link, wrist_link: l_hand_link, bones: [LeftArm, LeftForeArm, LeftHand]}\n")


@pytest.mark.reliability("fuzz", "robot config YAML: wrong types, missing and unknown keys, nested garbage, huge "
                         "numbers, NaN, aliases", "a RobotConfig whose invariants hold or a one-line UserError "
                         "naming the file")
@settings(FUZZ, max_examples=300)
@given(text=mutated_document(ROBOT_BASES, ROBOT_WORDS).map(yaml_text))
# Regressions: TypeError (sorting int and str keys; a list as a link name; joining int group names), OverflowError
# (an integer beyond float), ValueError (a NUL in the URDF name), OSError (the URDF a folder or a name too long),
# RecursionError, hangs in repr() of an alias chain, an infinite smoothing beta accepted (NaN cutoffs later), and
# a two-line message (found by this test). The list as 'urdf' was already a UserError (file not found).
@example(text=TWO_JOINTS + "1: 2\nfoo: 3\n")
@example(text=TWO_JOINTS + "smoothing: {1: 2, x: 3}\n")
@example(text=TWO_JOINTS + ARM_IK.replace("base_link: torso_link", "base_link: [torso_link]"))
@example(text=TWO_JOINTS + "  - {name: l_elbow, ik: foo}\nik: {1: {}}\n")
@example(text=TWO_JOINTS + "acceleration: " + "9" * 400 + "\n")
@example(text=TWO_JOINTS + "fade: {fade_in: " + "9" * 400 + "}\n")  # found: OverflowError in FadeConfig
@example(text=TWO_JOINTS.replace("urdf: generic_humanoid.urdf", 'urdf: "a\\0b"'))
@example(text=TWO_JOINTS.replace("urdf: generic_humanoid.urdf", "urdf: ."))
@example(text=TWO_JOINTS.replace("urdf: generic_humanoid.urdf", "urdf: " + "x" * 300))
@example(text=TWO_JOINTS.replace("urdf: generic_humanoid.urdf", "urdf: [generic_humanoid.urdf]"))
@example(text=TWO_JOINTS + "smoothing: {beta: .inf}\n")
@example(text=TWO_JOINTS + f"home: {{torso_yaw: {HUGE_INT}}}\n")
@example(text=TWO_JOINTS + f"home: {{torso_yaw: {ALIAS_BOMB}}}\n")
@example(text=TWO_JOINTS + f"  - {ALIAS_BOMB}\n")
@example(text=TWO_JOINTS + f"  - {{name: {ALIAS_BOMB}, bone: Head, axis: y}}\n")
@example(text=TWO_JOINTS + f"  - {{name: head, bone: {ALIAS_BOMB}, axis: y}}\n")
@example(text=DEEP_BRACKETS)
@example(text=TWO_JOINTS + '  - {name: l_elbow, ik: "a\\nb"}\nik: {"a\\nb": null}\n')  # found: a two-line message
def test_mutated_robot_config_loads_or_raises_a_clear_error(robot_dir: Path, text: str) -> None:
    path = robot_dir / "robot.yaml"
    path.write_text(text, encoding="utf-8")
    check_robot_file(path)


@pytest.mark.reliability("fuzz", "robot config YAML: mutated and arbitrary bytes (invalid UTF-8, broken syntax)",
                         "a RobotConfig whose invariants hold or a one-line UserError naming the file")
@settings(FUZZ, max_examples=200)
@given(content=mutated_bytes([(ROBOTS_DIR / f"{name}.yaml").read_bytes() for name in ROBOT_NAMES])
       | st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
@example(content=b"\xff\xfe")  # UnicodeDecodeError
def test_robot_config_bytes_load_or_raise_a_clear_error(robot_dir: Path, content: bytes) -> None:
    path = robot_dir / "bytes.yaml"
    path.write_bytes(content)
    check_robot_file(path)


URDF_NUMBERS = ["nan", "inf", "-inf", "1e999", "-1e999", "0", "-0", "1e-320", "-1", "0.5", "-0.5", "1e308", "", "abc"]
URDF_TYPES = ["revolute", "continuous", "prismatic", "fixed", "floating", "planar", ""]


@st.composite
def mutated_urdf(draw: st.DrawFn) -> tuple[str, str]:
    """(robot name, URDF text) with 1..4 edits: an attribute value replaced by one of its kind (limits by NaN,
    inf, huge or negative numbers, joint types by other types, parent and child links by other links of the
    robot: loops, detached chains; vectors by vectors of odd numbers), an element deleted or duplicated (a limit or
    a link lost, a joint's parent twice), or bytes mutated."""
    name = draw(st.sampled_from(ROBOT_NAMES))
    text = (ROBOTS_DIR / f"{name}.urdf").read_text()
    links = re.findall(r'<link name="([^"]+)"', text)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["attribute"] * 4 + ["delete element", "duplicate element", "bytes"]))
        attributes = list(re.finditer(r'(\w+)="([^"]*)"', text))
        lines = text.split("\n")
        elements = [i for i, line in enumerate(lines) if line.rstrip().endswith("/>")]  # one-line elements
        if op == "attribute" and attributes:
            found = draw(st.sampled_from(attributes))
            kind = found.group(1)
            if kind in ("xyz", "rpy"):
                value = " ".join(draw(st.lists(st.sampled_from(URDF_NUMBERS[:-2]), min_size=3, max_size=3)))
            else:
                values = (URDF_NUMBERS if kind in ("lower", "upper", "velocity", "effort") else URDF_TYPES
                          if kind == "type" else links if kind == "link" else URDF_NUMBERS + links)
                value = draw(st.sampled_from(values) | st.text(max_size=5)).replace('"', "").replace("&", "")
            text = text[:found.start(2)] + value + text[found.end(2):]
        elif op in ("delete element", "duplicate element") and elements:
            i = draw(st.sampled_from(elements))
            lines[i:i + 1] = [] if op == "delete element" else [lines[i], lines[i]]
            text = "\n".join(lines)
        else:
            text = draw(mutated_bytes([text.encode()], max_ops=1)).decode("utf-8", errors="replace")
    return name, text


def _urdf_with(name: str, old: str, new: str) -> tuple[str, str]:
    text = (ROBOTS_DIR / f"{name}.urdf").read_text()
    assert old in text, old
    return name, text.replace(old, new, 1)


@pytest.mark.reliability("fuzz", "robot URDF: mutated limits (NaN, inf), joint types, links (loops), lines, bytes",
                         "a RobotConfig whose invariants hold or a one-line UserError naming the file")
@settings(FUZZ, max_examples=200)
@given(robot_and_urdf=mutated_urdf())
# Regressions: a joint loop made the IK chain walk forever; NaN or infinite URDF limits were accepted.
@example(robot_and_urdf=_urdf_with("generic_humanoid",  # l_shoulder_link below l_hand_link: a loop off the base
                                   '<parent link="torso_link"/>\n    <child link="l_shoulder_link"/>',
                                   '<parent link="l_hand_link"/>\n    <child link="l_shoulder_link"/>'))
@example(robot_and_urdf=_urdf_with("generic_humanoid", 'velocity="2.0"', 'velocity="nan"'))
@example(robot_and_urdf=_urdf_with("generic_humanoid", 'lower="-0.8" upper="0.8"', 'lower="-inf" upper="inf"'))
def test_mutated_urdf_loads_or_raises_a_clear_error(robot_dir: Path, robot_and_urdf: tuple[str, str]) -> None:
    name, urdf = robot_and_urdf
    (robot_dir / "mutated.urdf").write_text(urdf, encoding="utf-8")
    doc = copy.deepcopy(ROBOT_BASES[ROBOT_NAMES.index(name)])
    doc["urdf"] = "mutated.urdf"
    path = robot_dir / "urdf_test.yaml"
    path.write_text(yaml_text(doc), encoding="utf-8")
    check_robot_file(path)


# --- launch arguments: resolve_arguments ---------------------------------------------------------------------------

ARGUMENT_NAMES = [argument.name for argument in LAUNCH_ARGUMENTS]
ARGUMENT_VALUES = ["", "0", "5", "-1", "nan", "inf", "1e999", "true", "false", "maybe", "mic", "file", "topic", "auto",
                   "none", *ROBOT_NAMES, str(ROBOTS_DIR / "nao.yaml"), str(config_dir() / "gesture.yaml"), "a" * 300,
                   "a\x00b", "x\ny", "robot.yaml", "/"]


@pytest.mark.reliability("fuzz", "launch arguments: arbitrary names and values (durations, paths, choices)",
                         "a node set with valid values or a one-line UserError")
@settings(FUZZ, max_examples=300)
@given(arguments=st.dictionaries(st.sampled_from(ARGUMENT_NAMES) | st.text(max_size=8),
                                 st.sampled_from(ARGUMENT_VALUES) | st.text(max_size=12), max_size=6))
# Regressions: duration nan or inf was accepted (the node got NaN seconds), a 300-character path raised OSError,
# and a newline in a value made a two-line message.
@example(arguments={"duration": "nan"})
@example(arguments={"duration": "inf"})
@example(arguments={"params_file": "a" * 300})
@example(arguments={"robot": "a" * 300})
@example(arguments={"autostart": "x\ny"})
def test_launch_arguments_resolve_or_raise_a_clear_error(arguments: dict[str, str]) -> None:
    try:
        values = resolve_arguments(arguments)
    except UserError as error:
        assert "\n" not in str(error) and "\r" not in str(error), str(error)
        event("UserError: " + str(error).split(":=")[0].split(" ")[0])
        return
    event("resolved")
    assert set(values) == set(ARGUMENT_NAMES)
    duration = float(values["duration"])
    assert math.isfinite(duration) and duration >= 0
    for argument in LAUNCH_ARGUMENTS:
        assert argument.choices is None or values[argument.name] in argument.choices
    assert Path(values["params_file"]).is_file()
    nodes = node_set(values)
    assert nodes[0].name == "gesture_node" and nodes[0].overrides["duration"] == duration
    assert (values["robot"] == "none") == (len(nodes) == 1)
