"""Preview renders: a still with key frames and curves, and GIF/MP4 animations with one image per shown frame."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dimgestor_ros.errors import UserError
from dimgestor_ros.motion.preview import loudness_db, render_preview
from dimgestor_ros.motion.skeleton import HUMANOID, neutral_pose

FPS = 30.0


def waving(frames: int = 20) -> np.ndarray:
    poses = np.repeat(neutral_pose()[None], frames, axis=0)
    poses[:, HUMANOID.dof_names.index("RightArm_rz")] += 0.8 * np.sin(np.arange(frames) / 3.0)
    return poses


def test_png_still_is_a_real_image_of_the_figure_size(tmp_path):
    path = render_preview(waving(), FPS, tmp_path / "p.png", np.zeros(16000, np.float32))
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (800, 480)
        pixels = np.asarray(image.convert("L"))
    assert (pixels < 50).mean() > 0.005  # dark strokes: figures and curves were drawn, not a blank canvas


def test_gif_has_one_frame_per_second_motion_frame(tmp_path):
    path = render_preview(waving(20), FPS, tmp_path / "p.gif")
    with Image.open(path) as image:
        assert image.format == "GIF" and image.n_frames == 10  # 30 fps motion shown at 15 fps
        first = np.asarray(image.convert("L")).copy()
        image.seek(5)
        later = np.asarray(image.convert("L"))
    assert (first != later).any()  # the arm moves between the frames


def test_mp4_holds_every_motion_frame_at_the_motion_rate(tmp_path):
    import imageio_ffmpeg

    path = render_preview(waving(20), FPS, tmp_path / "p.mp4")
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
    assert frames == 20 and seconds == pytest.approx(20 / FPS, abs=0.05)


def test_loudness_is_per_motion_frame_in_dbfs():
    audio = np.concatenate([np.zeros(16000), 0.5 * np.ones(16000)]).astype(np.float32)  # 1 s silence, 1 s -6 dB
    level = loudness_db(audio, 16000, FPS)
    assert len(level) == 60
    assert level[:29].max() == pytest.approx(-80.0) and level[31:] == pytest.approx(20 * np.log10(0.5))


@pytest.mark.reliability(
    "bad input",
    "preview with an unknown suffix or a single frame",
    "UserError naming the problem",
)
@pytest.mark.parametrize("name, poses, message", [
    ("p.jpg", waving(), "must end in one of .png, .gif, .mp4"),
    ("p.png", waving(1), "at least two frames"),
], ids=["jpg suffix", "one frame"])
def test_bad_preview_requests_are_user_errors(tmp_path, name, poses, message):
    with pytest.raises(UserError, match=message):
        render_preview(poses, FPS, tmp_path / name)
