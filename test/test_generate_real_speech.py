"""The shipped weights on real recorded speech that is not in the synthetic corpus (a LibriVox reading, see
test/data/README.md): `dimgestor generate` gives motion that moves, stays within natural ranges, grows with
loudness, and renders a preview."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
from scipy.ndimage import uniform_filter1d
from scipy.stats import spearmanr

from conftest import REPO
from dimgestor_ros.corpus.gestures import JOINT_LIMITS
from dimgestor_ros.motion.bvh import read_bvh
from dimgestor_ros.motion.kinematics import forward_kinematics
from dimgestor_ros.motion.preview import loudness_db
from dimgestor_ros.motion.skeleton import HUMANOID, neutral_pose

SPEECH = REPO / "test" / "data" / "librivox_sense_and_sensibility_0870.wav"
DIMGESTOR = str(Path(__import__("sys").executable).parent / "dimgestor")
FPS = 30.0
HANDS = [HUMANOID.bone_names.index(name) for name in ("LeftHand", "RightHand")]


def generate(tmp_path: Path, speech: Path, name: str) -> np.ndarray:
    out = tmp_path / f"{name}.bvh"
    result = subprocess.run([DIMGESTOR, "generate", str(speech), "-o", str(out), "--preview",
                             str(tmp_path / f"{name}.png")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return read_bvh(out).to_poses(0.01)  # (F, 63)


def hand_speed(poses: np.ndarray) -> np.ndarray:
    """(F,) summed speed of both hands, m/s."""
    positions = forward_kinematics(HUMANOID, poses)[:, HANDS]  # (F, 2, 3)
    return np.linalg.norm(np.gradient(positions, 1.0 / FPS, axis=0), axis=2).sum(axis=1)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, np.ndarray]:
    folder = tmp_path_factory.mktemp("real_speech")
    return folder, generate(folder, SPEECH, "full")


def test_motion_covers_the_recording_and_moves(generated):
    folder, poses = generated
    audio, rate = soundfile.read(SPEECH)
    assert len(poses) == int(np.ceil(len(audio) / rate * FPS))
    hands = forward_kinematics(HUMANOID, poses)[:, HANDS]  # (F, 2, 3)
    assert hands.std(axis=0).max() > 0.02  # a hand travels more than 2 cm: not frozen
    assert hand_speed(poses).mean() > 0.05


def test_motion_stays_within_natural_ranges(generated):
    _, poses = generated
    names, rest = HUMANOID.dof_names, neutral_pose()
    for k, name in enumerate(names):
        low, high = JOINT_LIMITS.get(name, (rest[k] - 0.2, rest[k] + 0.2))  # unmoved DoFs: near the rest pose
        margin = 0.03 if name.endswith(("_tx", "_ty", "_tz")) else 0.15  # metres / radians
        assert low - margin <= poses[:, k].min() and poses[:, k].max() <= high + margin, name


def test_louder_speech_gives_bigger_motion(tmp_path):
    """The recording twice, at full level and 12 dB quieter, with pauses: the loud reading moves more, and over
    the speech, motion speed rises with loudness."""
    audio, rate = soundfile.read(SPEECH, dtype="float32")
    pause = np.zeros(rate, np.float32)
    quiet = audio * 10 ** (-12 / 20)
    composed = np.concatenate([pause, audio, pause, quiet, pause])
    path = tmp_path / "loud_then_quiet.wav"
    soundfile.write(path, composed, rate)
    speed = hand_speed(generate(tmp_path, path, "loud_then_quiet"))  # (F,)
    edge = int(0.5 * FPS)  # leave out the rise into and the fall out of each reading

    def frames(start_s: float) -> slice:
        return slice(int(start_s * FPS) + edge, int((start_s + len(audio) / rate) * FPS) - edge)

    loud, soft = frames(1.0), frames(2.0 + len(audio) / rate)
    assert speed[loud].mean() > 1.2 * speed[soft].mean(), (speed[loud].mean(), speed[soft].mean())
    level = loudness_db(composed, rate, FPS)
    speaking = np.r_[np.arange(len(speed))[loud], np.arange(len(speed))[soft]]
    correlation = spearmanr(uniform_filter1d(level, int(FPS))[speaking],
                            uniform_filter1d(speed, int(FPS))[speaking]).statistic
    assert correlation > 0.2, correlation


def test_preview_renders(generated):
    from PIL import Image

    folder, _ = generated
    with Image.open(folder / "full.png") as image:
        assert image.format == "PNG" and image.size == (800, 480)
