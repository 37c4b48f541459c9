"""The synthetic corpus: espeak-ng speech paired with rule-based motion that follows the speech's timing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from dimgestor_ros.corpus.gestures import JOINT_LIMITS, SpeakerStyle
from dimgestor_ros.corpus.sentences import SENTENCES, is_held_out
from dimgestor_ros.corpus.synthetic import SPEAKERS, VOICE_STYLES, build_corpus, style_for_voice
from dimgestor_ros.errors import UserError
from dimgestor_ros.motion.bvh import read_bvh
from dimgestor_ros.motion.kinematics import forward_kinematics
from dimgestor_ros.motion.skeleton import HUMANOID, neutral_pose

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng not installed (sudo apt-get install espeak-ng)")

FPS = 30.0
TINY = dict(clips_per_speaker=2, seed=3, speakers=("ana", "chen"), held_out_speakers=("chen",), max_sentences=1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("corpus")
    return out, build_corpus(out, **TINY)


def poses_of(folder: Path, clip: dict) -> np.ndarray:
    return read_bvh(folder / f"{clip['path']}.bvh").to_poses(0.01)  # (F, 63)


def hand_speed(poses: np.ndarray, sides: tuple[str, ...] = ("Left", "Right")) -> np.ndarray:
    """(F - 1,) summed wrist speed in m/s between consecutive frames."""
    positions = forward_kinematics(HUMANOID, poses)  # (F, B, 3)
    speed = np.zeros(len(poses) - 1)
    for side in sides:
        hand = positions[:, HUMANOID.bone_names.index(f"{side}Hand")]
        speed += np.linalg.norm(np.diff(hand, axis=0), axis=1) * FPS
    return speed


def test_tiny_corpus_writes_paired_wav_and_bvh_of_equal_duration(corpus):
    folder, manifest = corpus
    assert len(manifest["clips"]) == 4
    for clip in manifest["clips"]:
        audio, rate = soundfile.read(folder / f"{clip['path']}.wav")
        motion = read_bvh(folder / f"{clip['path']}.bvh")
        assert rate == 16000 and audio.ndim == 1
        assert motion.fps == pytest.approx(FPS)
        assert abs(len(audio) / rate - motion.num_frames / FPS) < 1.0 / FPS
        assert clip["duration"] == pytest.approx(len(audio) / rate, abs=1e-3)
        assert np.abs(audio).max() > 0.05  # speech (peak 0.5 at 0 dB, LEVEL_RANGE_DB below it), not silence


def test_manifest_and_readme_say_synthetic_and_split_by_speaker_and_sentence(corpus):
    folder, manifest = corpus
    assert manifest["synthetic"] is True and all(c["synthetic"] for c in manifest["clips"])
    assert "synthetic" in (folder / "README.md").read_text().lower()
    assert manifest["bvh_unit"] == "cm" and manifest["unit_scale"] == 0.01
    for clip in manifest["clips"]:
        held = clip["speaker"] == "chen"
        assert clip["split"] == ("held-out" if held else "train")
        assert clip["path"] == f"{clip['split']}/{clip['name']}"  # one folder per split
        for sentence in clip["sentence_ids"]:
            language, index = sentence.split("-")
            assert is_held_out(int(index)) == held
            assert SENTENCES[language][int(index)] in clip["text"]
        assert clip["voice"] == SPEAKERS[clip["speaker"]].voices[clip["language"]]
    assert {c["language"] for c in manifest["clips"]} == {"en", "cmn"}
    assert json.loads((folder / "manifest.json").read_text()) == manifest


def test_same_seed_gives_identical_files_and_another_seed_differs(corpus, tmp_path):
    folder, _ = corpus
    build_corpus(tmp_path / "again", **TINY)
    files = sorted(path.relative_to(folder) for path in folder.rglob("*") if path.is_file())
    assert len(files) == 2 + 2 * len(corpus[1]["clips"])  # manifest, README, a WAV and a BVH per clip
    for name in files:
        assert (tmp_path / "again" / name).read_bytes() == (folder / name).read_bytes(), name
    build_corpus(tmp_path / "other", **{**TINY, "clips_per_speaker": 1, "seed": 4})
    assert (tmp_path / "other" / "train" / "ana_0.bvh").read_bytes() != (folder / "train" / "ana_0.bvh").read_bytes()


def test_motion_is_smooth_and_within_joint_limits(corpus):
    folder, manifest = corpus
    for clip in manifest["clips"]:
        poses = poses_of(folder, clip)
        step = np.abs(np.diff(poses[:, 3:], axis=0))  # (F-1, 60) rad per frame
        assert step.max() < 0.3, clip["name"]  # < 9 rad/s: fast beats, no jumps
        assert np.abs(np.diff(poses[:, 3:], n=2, axis=0)).max() < 0.2
        assert hand_speed(poses).max() < 4.0  # m/s, both hands summed
        for dof, (low, high) in JOINT_LIMITS.items():
            column = poses[:, HUMANOID.dof_names.index(dof)]
            assert low - 1e-4 <= column.min() and column.max() <= high + 1e-4, dof


def test_moves_during_speech_and_rests_without_freezing_in_silence(corpus):
    folder, manifest = corpus
    for clip in manifest["clips"]:
        poses = poses_of(folder, clip)
        speed = hand_speed(poses)
        joint_speed = np.abs(np.diff(poses[:, 3:], axis=0)).sum(axis=1) * FPS  # (F-1,) rad/s over all joints
        (start, end), = clip["speech_segments"]
        talking = joint_speed[int(start * FPS):int(end * FPS)]  # joints, not hands: head nods count as gesture
        rest_head = slice(0, int(0.4 * FPS))  # the lead silence is >= 1.2 s, arms rise 0.75 s before speech
        rest_tail = slice(len(poses) - int(0.5 * FPS), len(poses))
        for rest in (rest_head, rest_tail):
            calm = 0.06 * max(1.0, SPEAKERS[clip["speaker"]].style.sway)  # m/s; breathing and weight shift scale it
            assert speed[rest].mean() < calm, clip["name"]  # calm: near-still hands
            assert talking.mean() > 4.0 * joint_speed[rest].mean()
            # Not frozen: breathing and weight shift keep the torso moving.
            assert np.abs(np.diff(poses[rest, 3:], axis=0)).max() > 1e-4
            hands = forward_kinematics(HUMANOID, poses[rest])[:, HUMANOID.bone_names.index("RightHand")]
            rest_hand = forward_kinematics(HUMANOID, neutral_pose()[None])[0, HUMANOID.bone_names.index("RightHand")]
            assert np.linalg.norm(hands - rest_hand, axis=1).max() < 0.06  # near the rest pose


def test_stroke_apexes_are_hand_speed_minima_at_the_manifest_beats(corpus):
    folder, manifest = corpus
    distances, ratios = [], []
    for clip in manifest["clips"]:
        speed = hand_speed(poses_of(folder, clip))  # speed[i] lies at time (i + 1) / FPS ... (i + 0.5)
        minima = np.array([i for i in range(1, len(speed) - 1) if speed[i] <= min(speed[i - 1], speed[i + 1])])
        minima_t = (minima + 0.5) / FPS
        assert len(clip["beat_times"]) >= 2
        for beat in clip["beat_times"]:
            distances.append(np.abs(minima_t - beat).min())
            k = int(beat * FPS)
            around = speed[max(0, k - 8):k + 8]
            ratios.append(speed[min(k, len(speed) - 1)] / around.max())
        (start, end), = clip["speech_segments"]
        assert all(start - 0.05 <= b <= end + 0.05 for b in clip["beat_times"])  # strokes only on speech
    assert np.median(distances) < 0.1
    assert np.median(ratios) < 0.5  # the beat is a dip in speed, not a random point on a stroke


def test_speaker_styles_differ_in_handedness(corpus):
    folder, manifest = corpus
    stats = {}
    for speaker in ("ana", "chen"):
        left = right = 0.0
        for clip in (c for c in manifest["clips"] if c["speaker"] == speaker):
            poses = poses_of(folder, clip)
            left += hand_speed(poses, ("Left",)).mean()
            right += hand_speed(poses, ("Right",)).mean()
        stats[speaker] = (left, right)
    assert SPEAKERS["ana"].style.handedness == "right" and SPEAKERS["chen"].style.handedness == "left"
    assert SPEAKERS["ana"].style.amplitude > 1.5 * SPEAKERS["chen"].style.amplitude
    assert stats["ana"][1] > 2.0 * stats["ana"][0]  # right-handed
    assert stats["chen"][0] > 1.3 * stats["chen"][1]  # left-handed


def test_roster_has_distinct_styles_and_held_out_voices_also_heard_in_training():
    assert len(SPEAKERS) == 24
    assert len({s.style for s in SPEAKERS.values()}) == len(SPEAKERS)
    assert {s.style.handedness for s in SPEAKERS.values()} == {"left", "right", "both"}
    held = [s for s in SPEAKERS.values() if s.held_out]
    training_voices = {s.voices["cmn"] for s in SPEAKERS.values() if not s.held_out}
    assert 0 < len(held) < len(SPEAKERS) // 2
    assert all(s.voices["cmn"] in training_voices for s in held)  # an unseen speaker, a voice type heard before
    for speaker in SPEAKERS.values():
        handedness, gestures = VOICE_STYLES[speaker.voices["cmn"].split("+")[1]]
        assert (speaker.style.handedness, speaker.style.gestures) == (handedness, gestures)
    with pytest.raises(ValueError, match="handedness"):
        SpeakerStyle(handedness="ambidextrous")


def test_style_follows_the_voice_higher_pitch_bigger_faster_rate_shorter_strokes():
    def style(pitch: float, rate: float) -> SpeakerStyle:
        return style_for_voice("m1", pitch, rate, np.random.default_rng(0))  # same draw of personal variation

    assert style(70, 160).amplitude > 1.5 * style(35, 160).amplitude
    assert style(50, 185).stroke_duration < 0.85 * style(50, 135).stroke_duration


def test_recording_conditions_put_a_noise_floor_under_the_pauses(corpus):
    folder, manifest = corpus
    floors = []
    for clip in manifest["clips"]:
        audio, rate = soundfile.read(folder / f"{clip['path']}.wav")
        lead = audio[: int(0.9 * clip["speech_segments"][0][0] * rate)]  # before the first sentence
        floors.append(20 * np.log10(np.sqrt(np.mean(lead**2))))
    assert all(-80.0 < f < -38.0 for f in floors), floors  # a room, not digital silence
    assert max(floors) - min(floors) > 3.0  # and not the same room every time


def test_missing_espeak_is_a_user_error_with_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no espeak-ng anywhere
    with pytest.raises(UserError, match="sudo apt-get install espeak-ng"):
        build_corpus(tmp_path / "out", 1, speakers=("ana",))


def test_refuses_to_write_into_a_folder_that_is_not_a_corpus(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a synthetic corpus"):
        build_corpus(tmp_path, 1, speakers=("ana",))
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_the_same_speech_spoken_louder_gets_bigger_strokes():
    from dimgestor_ros.corpus.gestures import generate_gestures
    from dimgestor_ros.corpus.synthetic import speak

    speech = speak("The quick brown fox jumps over the lazy dog.", "en-us", 160, 50, shutil.which("espeak-ng"))
    audio = np.concatenate([np.zeros(16000, np.float32), 0.5 * speech / np.abs(speech).max(), np.zeros(16000, np.float32)])
    style = SpeakerStyle(amplitude=1.0, stroke_duration=0.40, handedness="both", gestures=("beat", "open"))

    def stroke_speed(gain_db: float) -> float:
        track = generate_gestures(audio * 10 ** (gain_db / 20), 16000, style, np.random.default_rng(0))
        return float(hand_speed(track.poses).mean())  # the posture changes are the same; strokes differ

    assert stroke_speed(0.0) > 1.2 * stroke_speed(-12.0)  # measured 0.74 vs 0.58 m/s
