"""Preview renders of generated motion: a stick figure (front and side views) and joint curves against loudness.

Why: a BVH file needs Blender to look at; a user tuning parameters or checking a model wants to see in seconds
whether the motion moves with the speech. ``.png`` gives one still (key frames + curves), ``.gif`` and ``.mp4``
an animation with the curves' time cursor moving. matplotlib draws (Agg backend, no display needed); MP4 is
encoded by the ffmpeg binary that the imageio-ffmpeg wheel ships, so no system ffmpeg is needed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import UserError
from .kinematics import forward_kinematics
from .skeleton import HUMANOID, Skeleton

PREVIEW_SUFFIXES = (".png", ".gif", ".mp4")
CURVE_BONES = ("LeftHand", "RightHand", "Head")  # the joints whose height and speed are plotted
GIF_FPS = 15.0  # GIFs at half the motion rate: half the file size, still smooth enough to judge timing


def loudness_db(audio: np.ndarray, sample_rate: int, fps: float) -> np.ndarray:
    """(F,) RMS level in dBFS per motion frame (floor -80 dB), so curves and loudness share one time axis.

    The same per-frame level the streaming generator uses for its idle behaviour (FrameLoudness), floored for
    plotting.
    """
    from ..streaming.loudness import FrameLoudness

    levels = FrameLoudness(sample_rate, fps)
    levels.push(np.asarray(audio))
    return np.maximum(levels.db(0, math.ceil(len(audio) * fps / sample_rate)), -80.0)


def _figure(positions: np.ndarray, fps: float, loudness: np.ndarray | None, skeleton: Skeleton, title: str):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(10, 6), dpi=80)
    grid = figure.add_gridspec(2, 2, height_ratios=(3, 2))
    front, side, curves = figure.add_subplot(grid[0, 0]), figure.add_subplot(grid[0, 1]), figure.add_subplot(grid[1, :])
    low, high = positions.reshape(-1, 3).min(axis=0), positions.reshape(-1, 3).max(axis=0)
    centre, half = (low + high) / 2, max(float((high - low).max()) / 2 + 0.1, 0.5)
    for axes, (u, name) in ((front, (0, "x (m), left of the body is +x")), (side, (2, "z (m), forward is +z"))):
        axes.set_xlim(centre[u] - half, centre[u] + half)
        axes.set_ylim(centre[1] - half, centre[1] + half)
        axes.set_aspect("equal")
        axes.set_xlabel(name)
        axes.set_ylabel("height y (m)")
    front.set_title("front")
    side.set_title("side")
    figure.suptitle(title)
    time = np.arange(len(positions)) / fps
    speed = np.linalg.norm(np.gradient(positions, 1.0 / fps, axis=0), axis=2)  # (F, B) m/s
    for name in CURVE_BONES:
        if name in skeleton.bone_names:
            curves.plot(time, speed[:, skeleton.bone_names.index(name)], label=f"{name} speed (m/s)")
    curves.set_xlabel("time (s)")
    curves.set_ylabel("joint speed (m/s)")
    curves.set_xlim(0, max(time[-1], 1.0 / fps))
    if loudness is not None:
        level = curves.twinx()
        level.plot(time[: len(loudness)], loudness[: len(time)], color="0.6", linewidth=0.8, label="loudness (dBFS)")
        level.set_ylabel("loudness (dBFS)")
        level.set_ylim(-80, 0)
    curves.legend(loc="upper left", fontsize=8)
    cursor = curves.axvline(0.0, color="k", linewidth=0.8)
    return figure, front, side, cursor


def _bone_segments(skeleton: Skeleton) -> list[tuple[int, int]]:
    return [(bone.parent, index) for index, bone in enumerate(skeleton.bones) if bone.parent >= 0]


def render_preview(poses: np.ndarray, fps: float, path: str | Path, audio: np.ndarray | None = None,
                   sample_rate: int = 16000, skeleton: Skeleton = HUMANOID, title: str = "") -> Path:
    """Write a preview of poses (F, D) to ``path`` (.png still, .gif or .mp4 animation); return the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in PREVIEW_SUFFIXES:
        raise UserError(f"preview {path} must end in one of {', '.join(PREVIEW_SUFFIXES)}")
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 2 or len(poses) < 2:
        raise UserError(f"a preview needs at least two frames of motion, got shape {poses.shape}")
    positions = forward_kinematics(skeleton, poses)  # (F, B, 3) metres
    loudness = None if audio is None else loudness_db(audio, sample_rate, fps)
    figure, front, side, cursor = _figure(positions, fps, loudness, skeleton, title or path.stem)
    segments = _bone_segments(skeleton)
    path.parent.mkdir(parents=True, exist_ok=True)
    import matplotlib.pyplot as plt

    try:
        if suffix == ".png":
            keys = np.linspace(0, len(positions) - 1, 5).round().astype(int)
            for shade, frame in zip(np.linspace(0.75, 0.0, len(keys)), keys):  # later frames darker
                for axes, u in ((front, 0), (side, 2)):
                    for parent, child in segments:
                        axes.plot(positions[frame, [parent, child], u], positions[frame, [parent, child], 1],
                                  color=str(shade), linewidth=1.5)
            figure.savefig(path)
            return path
        lines = {(id(axes), k): axes.plot([], [], color="C0", linewidth=2)[0]
                 for axes in (front, side) for k in range(len(segments))}

        def draw(frame: int) -> list:
            for axes, u in ((front, 0), (side, 2)):
                for k, (parent, child) in enumerate(segments):
                    lines[(id(axes), k)].set_data(positions[frame, [parent, child], u],
                                                  positions[frame, [parent, child], 1])
            cursor.set_xdata([frame / fps, frame / fps])
            return list(lines.values()) + [cursor]

        from matplotlib.animation import FFMpegWriter, FuncAnimation, PillowWriter

        step = max(1, int(round(fps / GIF_FPS))) if suffix == ".gif" else 1
        animation = FuncAnimation(figure, draw, frames=range(0, len(positions), step), blit=False)
        if suffix == ".gif":
            animation.save(str(path), writer=PillowWriter(fps=fps / step))
        else:
            import imageio_ffmpeg
            import matplotlib

            matplotlib.rcParams["animation.ffmpeg_path"] = imageio_ffmpeg.get_ffmpeg_exe()
            animation.save(str(path), writer=FFMpegWriter(fps=fps, codec="libx264",
                                                          extra_args=["-pix_fmt", "yuv420p"]))
        return path
    finally:
        plt.close(figure)
