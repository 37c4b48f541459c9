"""PNG plots of an evaluation: the metric table as bars, and one clip's joint speed against its speech onsets.

Why both: the bars compare models at a glance, and the speed curve shows *why* a beat-alignment number is what
it is (strokes landing on onsets, restless wiggles in pauses, late strokes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dimgestor_ros.evaluation import metrics

METRIC_LABELS = {
    "fgd_pose": "pose FGD (lower is better)",
    "fgd_kinetic": "kinetic FGD (lower is better)",
    "beat_align": "beat alignment (reference is the target)",
    "diversity": "diversity, m",
    "jerk": "jerk, m/s^3 (reference is the target)",
    "seam_continuity": "seam continuity (1 = seamless)",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(report: dict, path: Path) -> Path:
    """One bar chart per metric, a bar per row of the report (the reference first)."""
    plt = _pyplot()
    rows = [("reference", report["reference"]["metrics"])] + [(m["name"], m["metrics"]) for m in report["models"]]
    shown = [key for key in METRIC_LABELS if any(_finite(values.get(key)) for _, values in rows)]
    figure, axes = plt.subplots(1, max(1, len(shown)), figsize=(3.2 * max(1, len(shown)), 3.6), squeeze=False)
    for ax, key in zip(axes[0], shown):
        names = [name for name, values in rows if _finite(values.get(key))]
        values = [float(values[key]) for _, values in rows if _finite(values.get(key))]
        ax.bar(range(len(values)), values, color=[f"C{k}" for k in range(len(values))])
        ax.set_xticks(range(len(values)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(METRIC_LABELS[key], fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def plot_speed(curves: dict[str, np.ndarray], fps: float, onsets: np.ndarray | None, path: Path,
               title: str) -> Path:
    """Mean joint speed (m/s) of each named motion (F, B, 3) over time, kinematic beats dotted, onsets as lines."""
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(10, 3.2))
    if onsets is not None:
        for k, onset in enumerate(onsets):
            ax.axvline(onset, color="0.8", linewidth=0.8, label="speech onset" if k == 0 else None)
    for k, (name, positions) in enumerate(curves.items()):
        speed = metrics.joint_speed(positions, fps)
        time = np.arange(len(speed)) / fps
        ax.plot(time, speed, color=f"C{k}", label=name)
        beats = metrics.kinematic_beats(positions, fps)
        ax.plot(beats, np.interp(beats, time, speed), "o", color=f"C{k}", markersize=3)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mean joint speed (m/s)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and np.isfinite(value)
