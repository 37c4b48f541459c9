"""PairedMotionDataset on the synthetic corpus and on hand-broken folders: windows, alignment, cache, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from dimgestor_ros.corpus.dataset import PairedMotionDataset
from dimgestor_ros.corpus.synthetic import build_corpus
from dimgestor_ros.errors import UserError
from dimgestor_ros.features.acoustic import AcousticFrontEnd
from dimgestor_ros.motion.bvh import BvhMotion, read_bvh, write_bvh
from dimgestor_ros.motion.kinematics import resample
from dimgestor_ros.motion.skeleton import HUMANOID, neutral_pose

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng not installed (sudo apt-get install espeak-ng)")
WINDOW, HOP = 60, 30


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    build_corpus(out, 2, seed=5, speakers=("ana", "eli"), held_out_speakers=("eli",), max_sentences=1)
    return out


@pytest.fixture(scope="module")
def encoder() -> AcousticFrontEnd:
    return AcousticFrontEnd()


def copy_pair(corpus: Path, target: Path, stem: str = "ana_0") -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for suffix in (".wav", ".bvh"):
        shutil.copy(corpus / "train" / f"{stem}{suffix}", target / f"{stem}{suffix}")
    return target


def test_windows_cover_each_clip_with_overlap_and_have_the_documented_shapes(corpus, encoder):
    dataset = PairedMotionDataset(corpus, encoder, window_frames=WINDOW, hop_frames=HOP)
    assert len(dataset.names) == 4 and not dataset.skipped
    expected = 0
    for motion, features in zip(dataset.motions, dataset.features):
        frames = min(motion.shape[0], features.shape[0] * 30 // 50)
        expected += (frames - WINDOW) // HOP + 1
    assert len(dataset) == expected
    item = dataset[len(dataset) - 1]
    assert item["motion"].shape == (WINDOW, 63) and item["motion"].dtype == np.float32
    assert item["speech"].shape == (WINDOW * 50 // 30, 43) and item["speech"].dtype == np.float32
    starts = [dataset[i]["start"] for i in range(len(dataset)) if dataset[i]["name"] == "ana_0"]
    assert starts == list(range(0, starts[-1] + 1, HOP))


def test_speech_window_is_the_same_time_span_as_the_motion_window(corpus, encoder):
    dataset = PairedMotionDataset(corpus, encoder, window_frames=WINDOW, hop_frames=HOP)
    clip = dataset.names.index("ana_1")
    audio, _ = soundfile.read(corpus / "train" / "ana_1.wav", dtype="float32")
    whole = encoder.encode(audio)  # (T, 43)
    poses = read_bvh(corpus / "train" / "ana_1.bvh").to_poses(0.01)
    for index, (c, start) in enumerate(dataset.windows):
        if c != clip:
            continue
        item = dataset[index]
        first = start * 50 // 30  # speech frame starting at start / 30 s
        assert first / 50 == pytest.approx(start / 30)  # exact for starts on a multiple of 3 frames
        np.testing.assert_array_equal(item["speech"], whole[first:first + 100])
        np.testing.assert_array_equal(item["motion"], poses[start:start + WINDOW])


def test_split_selects_clips_from_the_manifest_and_stats_come_from_those_windows(corpus, encoder):
    train = PairedMotionDataset(corpus, encoder, WINDOW, HOP, split="train")
    held = PairedMotionDataset(corpus, encoder, WINDOW, HOP, split="held-out")
    assert train.names == ["ana_0", "ana_1"] and held.names == ["eli_0", "eli_1"]
    mean, std = train.motion_stats()
    assert mean.shape == (63,) and std.shape == (63,) and (std > 0).all()
    frames = np.concatenate([m[:max(s for c, s in train.windows if c == i) + WINDOW]
                             for i, m in enumerate(train.motions)])
    np.testing.assert_allclose(mean, frames.mean(axis=0), atol=1e-5)
    moving = frames.std(axis=0) > 1e-3
    np.testing.assert_allclose(std[moving], frames.std(axis=0)[moving], rtol=1e-4)
    assert (std[~moving] == 1.0).all()  # constant DoFs (legs) are left unscaled
    with pytest.raises(UserError, match="no clips in split 'test'"):
        PairedMotionDataset(corpus, encoder, WINDOW, HOP, split="test")


def test_features_are_cached_on_disk_and_reused_by_the_next_dataset(corpus, encoder, tmp_path):
    first = PairedMotionDataset(corpus, encoder, WINDOW, HOP, cache_dir=tmp_path / "cache")
    assert first.feature_computations == 4 and len(list((tmp_path / "cache").glob("*.npy"))) == 4
    second = PairedMotionDataset(corpus, encoder, WINDOW, HOP, cache_dir=tmp_path / "cache")
    assert second.feature_computations == 0
    for a, b in zip(first.features, second.features):
        np.testing.assert_array_equal(a, b)
    # Another encoder configuration must not reuse those features.
    from dimgestor_ros.features.acoustic import AcousticConfig

    other = PairedMotionDataset(corpus, AcousticFrontEnd(AcousticConfig(n_mels=20)), WINDOW, HOP,
                                cache_dir=tmp_path / "cache")
    assert other.feature_computations == 4 and other[0]["speech"].shape[1] == 23


def test_genea_layout_pairs_across_subfolders_and_60fps_motion_is_resampled(corpus, encoder, tmp_path):
    (tmp_path / "wav").mkdir()
    (tmp_path / "bvh").mkdir()
    shutil.copy(corpus / "train" / "ana_0.wav", tmp_path / "wav" / "ana_0.wav")
    motion = read_bvh(corpus / "train" / "ana_0.bvh")
    upsampled = resample(motion, 60.0)
    write_bvh(upsampled, tmp_path / "bvh" / "ana_0.bvh")
    dataset = PairedMotionDataset(tmp_path, encoder, WINDOW, HOP)
    poses = motion.to_poses(0.01)
    assert dataset.motions[0].shape[0] == pytest.approx(poses.shape[0], abs=1)
    np.testing.assert_allclose(dataset.motions[0][:50], poses[:50], atol=2e-3)


@pytest.mark.reliability(
    "bad input",
    "data folder with an unmatched pair (WAV or BVH missing)",
    "UserError 'X.bvh: no matching X.wav' (and the reverse)",
)
def test_missing_partner_file_is_named(corpus, encoder, tmp_path):
    folder = copy_pair(corpus, tmp_path / "data")
    (folder / "ana_0.wav").unlink()
    with pytest.raises(UserError, match=r"ana_0\.bvh: no matching ana_0\.wav"):
        PairedMotionDataset(folder, encoder)
    copy_pair(corpus, folder)
    (folder / "ana_0.bvh").unlink()
    with pytest.raises(UserError, match=r"ana_0\.wav: no matching ana_0\.bvh"):
        PairedMotionDataset(folder, encoder)


@pytest.mark.reliability(
    "bad input",
    "data pair whose durations differ beyond tolerance",
    "UserError naming both files and durations",
)
def test_durations_that_differ_beyond_tolerance_are_refused(corpus, encoder, tmp_path):
    folder = copy_pair(corpus, tmp_path / "data")
    audio, rate = soundfile.read(folder / "ana_0.wav", dtype="float32")
    soundfile.write(folder / "ana_0.wav", audio[: len(audio) - rate], rate)  # one second short
    with pytest.raises(UserError, match=r"ana_0\.bvh: .* s of motion but ana_0\.wav"):
        PairedMotionDataset(folder, encoder)
    soundfile.write(folder / "ana_0.wav", audio[: len(audio) - rate // 4], rate)  # 0.25 s: within tolerance
    assert len(PairedMotionDataset(folder, encoder, WINDOW, HOP)) > 0


@pytest.mark.reliability("bad input", "data folder with an unreadable BVH", "UserError naming the BVH")
def test_unreadable_bvh_is_named(corpus, encoder, tmp_path):
    folder = copy_pair(corpus, tmp_path / "data")
    (folder / "ana_0.bvh").write_text("HIERARCHY\nROOT Hips\n{\n")
    with pytest.raises(UserError, match=r"ana_0\.bvh"):
        PairedMotionDataset(folder, encoder)


@pytest.mark.reliability(
    "bad input",
    "BVH with a different skeleton than the model's, or other channels",
    "UserError naming the file and the fix (retarget)",
)
def test_bvh_with_another_skeleton_or_channel_layout_is_named(corpus, encoder, tmp_path):
    folder = copy_pair(corpus, tmp_path / "data")
    motion = read_bvh(folder / "ana_0.bvh")
    # Another skeleton: the HUMANOID hierarchy with a renamed bone.
    bones = list(motion.skeleton.bones)
    bones[5] = type(bones[5])("Skull", *[getattr(bones[5], f) for f in ("parent", "offset", "rotation_order",
                                                                       "channels", "end_site")])
    renamed = BvhMotion(type(motion.skeleton)(motion.skeleton.name, tuple(bones)), motion.frame_time, motion.values)
    write_bvh(renamed, folder / "ana_0.bvh")
    with pytest.raises(UserError, match=r"ana_0\.bvh: skeleton .* retarget"):
        PairedMotionDataset(folder, encoder)
    # Channels that do not fit the pose layout: a translation channel on the Spine.
    text = (corpus / "train" / "ana_0.bvh").read_text().replace("CHANNELS 3 Zrotation Xrotation Yrotation",
                                                      "CHANNELS 4 Yposition Zrotation Xrotation Yrotation", 1)
    lines = text.split("\n")
    start = lines.index("MOTION") + 3
    lines[start:] = [row + " 0.0" if row else row for row in lines[start:]]
    (folder / "ana_0.bvh").write_text("\n".join(lines))
    with pytest.raises(UserError, match=r"ana_0\.bvh: its BVH channels do not fit the pose layout"):
        PairedMotionDataset(folder, encoder)


@pytest.mark.reliability("bad input", "clips shorter than one training window", "skipped and listed, not an error")
def test_clips_shorter_than_a_window_are_skipped_and_listed(corpus, encoder, tmp_path):
    folder = tmp_path / "short"
    folder.mkdir()
    write_bvh(BvhMotion.from_poses(HUMANOID, np.repeat(neutral_pose()[None], 30, axis=0), 1 / 30), folder / "s.bvh")
    soundfile.write(folder / "s.wav", np.zeros(16000, dtype=np.float32), 16000)
    dataset = PairedMotionDataset(folder, encoder, window_frames=60, hop_frames=30)
    assert len(dataset) == 0 and dataset.skipped == ["s"]
    with pytest.raises(UserError, match="no clip is as long as one window"):
        dataset.motion_stats()
