"""`dimgestor eval`: score folders of generated BVH clips against a reference folder, one or several models.

Reference and generated clips are paired by file stem so that beat alignment can use the speech of the reference
clip (``<stem>.wav`` next to ``<stem>.bvh``); the distribution metrics (FGD) pool all clips of a folder. All clips
must share the first reference clip's skeleton, since pose vectors of different skeletons are not comparable.
Generated clips at another frame rate are resampled to the reference rate.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dimgestor_ros.errors import UserError
from dimgestor_ros.evaluation import metrics
from dimgestor_ros.motion.bvh import BvhMotion, read_bvh
from dimgestor_ros.motion.kinematics import forward_kinematics, resample

AUDIO_RATE = 16000
COLUMNS = ("fgd_pose", "fgd_kinetic", "beat_align", "diversity", "jerk", "acceleration", "seam_continuity")
DEFINITIONS = {
    "fgd_pose": "Fréchet distance between Gaussian fits of per-frame pose vectors (root m + Euler rad), "
                "reference vs generated, all clips pooled",
    "fgd_kinetic": "Fréchet distance of per-window (window_s, half hop) per-joint mean/std of speed and of "
                   "acceleration magnitude, centred on the reference mean and each of the four groups scaled by "
                   "its reference RMS spread (FID_k style, no network)",
    "beat_align": "mean over motion beats (local minima of smoothed mean joint speed, within the audio) of "
                  "exp(-d^2 / (2 sigma^2)), d = distance to the nearest librosa audio onset; mean over clips",
    "diversity": "mean pairwise RMS per-joint distance (m) between window_s windows of root-relative joint "
                 "positions",
    "jerk": "mean |third difference| * fps^3 of joint positions over frames and joints, m/s^3",
    "acceleration": "mean |second difference| * fps^2 of joint positions over frames and joints, m/s^2",
    "seam_continuity": "mean jerk of stencils crossing frames k*seam_every / mean jerk elsewhere (1 = seamless)",
}


@dataclass
class Clip:
    stem: str
    path: Path
    poses: np.ndarray  # (F, D) pose vectors
    positions: np.ndarray  # (F, B, 3) joint positions, metres


def add_eval_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand (handler: :func:`run_eval`) to a ``dimgestor`` subparsers object."""
    parser = subparsers.add_parser(
        "eval", help="score generated gestures against reference motion",
        description="Compare folders of generated BVH clips with a reference folder of BVH (+ WAV by stem): "
                    "FGD on poses and kinetics, beat alignment, diversity, jerk, seam continuity.")
    _add_arguments(parser)
    parser.set_defaults(handler=run_eval)
    return parser


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reference", type=Path, required=True,
                        help="folder of reference <stem>.bvh, with <stem>.wav speech for beat alignment")
    parser.add_argument("--generated", nargs="+", required=True, metavar="[NAME=]DIR",
                        help="one or more folders of generated <stem>.bvh (stems as in the reference); several "
                             "give a side-by-side table; NAME= labels a folder (default: the folder name)")
    parser.add_argument("--out", type=Path, help="write the report as JSON to this file")
    parser.add_argument("--unit-scale", type=float, default=0.01,
                        help="metres per BVH length unit (default 0.01: centimetres)")
    parser.add_argument("--sigma", type=float, default=metrics.BEAT_SIGMA_S,
                        help=f"beat alignment tolerance, seconds (default {metrics.BEAT_SIGMA_S})")
    parser.add_argument("--window", type=float, default=2.0,
                        help="window length for kinetic FGD and diversity, seconds (default 2)")
    parser.add_argument("--seam-every", type=int, metavar="FRAMES",
                        help="frames between window seams of the generated motion (e.g. the streaming hop, 15); "
                             "omit to skip seam continuity")
    parser.add_argument("--no-beats", action="store_true",
                        help="skip beat alignment (no WAV files needed)")
    parser.add_argument("--plots", type=Path, metavar="DIR",
                        help="also draw PNG plots into DIR: metrics.png (a bar chart per metric) and "
                             "speed_<stem>.png (the first clip's joint speed against its speech onsets)")


def run_eval(args: argparse.Namespace) -> int:
    """Run the evaluation described by parsed ``eval`` arguments; print the table, write JSON; 0 on success."""
    report = evaluate(args.reference, _parse_generated(args.generated), unit_scale=args.unit_scale,
                      sigma_s=args.sigma, window_s=args.window, seam_every=args.seam_every, beats=not args.no_beats)
    if args.plots is not None:
        report["plots"] = [str(path) for path in _draw_plots(report, args)]
    print(format_table(report))
    for path in report.get("plots", []):
        print(f"wrote {path}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


def evaluate(reference_dir: Path, generated: list[tuple[str, Path]], *, unit_scale: float = 0.01,
             sigma_s: float = metrics.BEAT_SIGMA_S, window_s: float = 2.0, seam_every: int | None = None,
             beats: bool = True) -> dict:
    """The report (a JSON-ready dict) of every generated folder against the reference folder."""
    if not unit_scale > 0:
        raise UserError(f"--unit-scale must be positive metres per BVH unit, got {unit_scale}")
    if not sigma_s > 0 or not window_s > 0:
        raise UserError("--sigma and --window must be positive seconds")
    if seam_every is not None and seam_every < 1:
        raise UserError(f"--seam-every must be a positive frame count, got {seam_every}")
    reference_paths = _bvh_files(reference_dir, "reference")
    first = read_bvh(next(iter(reference_paths.values())))
    fps = first.fps
    signature = _signature(first)
    reference = _load_clips(reference_paths, signature, first, fps, unit_scale)
    onsets = _onsets(reference_dir, reference_paths) if beats else {}

    settings = {"fps": fps, "unit_scale": unit_scale, "beat_sigma_s": sigma_s, "beat_average_over": "motion beats",
                "speed_smoothing_s": metrics.SPEED_SMOOTHING_S,
                "minima_order": 1,  # every local minimum of the smoothed speed (argrelextrema order 1), ends excluded
                "window_s": window_s, "seam_every": seam_every,
                "audio_onsets": "librosa.onset.onset_detect, 16 kHz, hop 160" if beats else None}
    reference_kinetic = np.concatenate([metrics.kinetic_features(c.positions, fps, window_s) for c in reference])
    reference_poses = np.concatenate([metrics.pose_features(c.poses) for c in reference])
    report = {
        "reference": {"dir": str(reference_dir), "clips": len(reference), "frames": int(len(reference_poses)),
                      "metrics": _motion_metrics(reference, onsets, fps, sigma_s, window_s, seam_every)},
        "models": [],
        "settings": settings,
        "definitions": DEFINITIONS,
        "notes": ["plots: drawn by --plots DIR (metrics.png, speed_<stem>.png)"],
    }
    report["reference"]["metrics"].update({"fgd_pose": 0.0, "fgd_kinetic": 0.0})
    for name, directory in generated:
        paths = _bvh_files(directory, f"generated ({name})")
        _check_stems(reference_paths, paths, reference_dir, directory)
        clips = _load_clips(paths, signature, first, fps, unit_scale)
        model_metrics = _motion_metrics(clips, onsets, fps, sigma_s, window_s, seam_every)
        model_metrics["fgd_pose"] = metrics.frechet_distance(
            reference_poses, np.concatenate([metrics.pose_features(c.poses) for c in clips]))
        model_metrics["fgd_kinetic"] = metrics.kinetic_fgd(
            reference_kinetic, np.concatenate([metrics.kinetic_features(c.positions, fps, window_s) for c in clips]))
        report["models"].append({"name": name, "dir": str(directory), "clips": len(clips),
                                 "frames": int(sum(len(c.poses) for c in clips)), "metrics": model_metrics})
    return _json_ready(report)


def _draw_plots(report: dict, args: argparse.Namespace) -> list[Path]:
    from dimgestor_ros.evaluation.plots import plot_metrics, plot_speed

    paths = [plot_metrics(report, args.plots / "metrics.png")]
    reference_paths = _bvh_files(args.reference, "reference")
    stem = next(iter(reference_paths))
    first = read_bvh(reference_paths[stem])
    fps, signature = first.fps, _signature(first)
    curves = {"reference": _load_clips({stem: reference_paths[stem]}, signature, first, fps, args.unit_scale)[0]}
    for name, directory in _parse_generated(args.generated):
        curves[name] = _load_clips({stem: directory / f"{stem}.bvh"}, signature, first, fps, args.unit_scale)[0]
    onsets = None if args.no_beats else _onsets(args.reference, {stem: reference_paths[stem]})[stem][0]
    paths.append(plot_speed({name: clip.positions for name, clip in curves.items()}, fps, onsets,
                            args.plots / f"speed_{stem}.png", f"{stem}: mean joint speed, kinematic beats (dots), "
                            "speech onsets (grey lines)"))
    return paths


def format_table(report: dict) -> str:
    """A plain-text table: one row for the reference and one per model, the metric columns in COLUMNS order."""
    rows = [("reference", report["reference"]["metrics"])] + [(m["name"], m["metrics"]) for m in report["models"]]
    header = ["model", *COLUMNS]
    cells = [[name] + [_cell(values.get(column)) for column in COLUMNS] for name, values in rows]
    widths = [max(len(str(row[k])) for row in [header, *cells]) for k in range(len(header))]
    lines = ["  ".join(str(text).rjust(width) if k else str(text).ljust(width)
                       for k, (text, width) in enumerate(zip(row, widths))) for row in [header, *cells]]
    settings = report["settings"]
    lines.append(f"beat_align: sigma {settings['beat_sigma_s']} s, averaged over {settings['beat_average_over']}; "
                 f"jerk m/s^3, acceleration m/s^2, diversity m; fps {settings['fps']:g}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m dimgestor_ros.evaluation.report`` entry point, the same as ``dimgestor eval``."""
    parser = argparse.ArgumentParser(prog="dimgestor eval", description="Score generated gestures.")
    _add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_eval(args)
    except UserError as error:
        print(f"dimgestor: error: {error}", file=sys.stderr)
        return 2


# --- loading -----------------------------------------------------------------------------------------------------

def _parse_generated(specs: list[str]) -> list[tuple[str, Path]]:
    result: list[tuple[str, Path]] = []
    for spec in specs:
        name, sep, directory = spec.partition("=")
        if not sep or "/" in name or not name:
            name, directory = Path(spec).name or spec, spec
        result.append((name, Path(directory)))
    names = [name for name, _ in result]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise UserError(f"--generated: model name(s) {', '.join(duplicates)} given twice; label folders NAME=DIR")
    return result


def _bvh_files(directory: Path, role: str) -> dict[str, Path]:
    if not directory.is_dir():
        raise UserError(f"{role} folder {directory} does not exist; pass a folder of .bvh files")
    files = {path.stem: path for path in sorted(directory.iterdir()) if path.suffix.lower() == ".bvh"}
    if not files:
        raise UserError(f"{role} folder {directory} holds no .bvh files; pass a folder of BVH clips")
    return files


def _check_stems(reference: dict[str, Path], generated: dict[str, Path], reference_dir: Path,
                 generated_dir: Path) -> None:
    extra = sorted(set(generated) - set(reference))
    missing = sorted(set(reference) - set(generated))
    if extra or missing:
        parts = []
        if extra:
            parts.append(f"{generated_dir} has {', '.join(extra[:5])} not in {reference_dir}")
        if missing:
            parts.append(f"{generated_dir} lacks {', '.join(missing[:5])} from {reference_dir}")
        raise UserError("unmatched clip stems: " + "; ".join(parts) +
                        "; generate one clip per reference clip, named like it")


def _signature(motion: BvhMotion) -> tuple:
    return tuple((bone.name, bone.parent, channels)
                 for bone, channels in zip(motion.skeleton.bones, motion.skeleton.bone_channels))


def _load_clips(paths: dict[str, Path], signature: tuple, first: BvhMotion, fps: float,
                unit_scale: float) -> list[Clip]:
    clips = []
    for stem, path in paths.items():
        motion = read_bvh(path)
        if _signature(motion) != signature:
            raise UserError(f"{path}: its skeleton differs from the reference's ({_difference(motion, first)}); "
                            "evaluate motion of one skeleton (retarget it first)")
        if abs(motion.fps - fps) > 1e-3:
            motion = resample(motion, fps)
        if motion.num_frames < 4:
            raise UserError(f"{path}: {motion.num_frames} frames; jerk needs at least 4, export a longer clip")
        positions = forward_kinematics(motion.skeleton, motion.values, degrees=True) * unit_scale  # (F, B, 3)
        clips.append(Clip(stem, path, motion.to_poses(unit_scale), positions))
    return clips


def _difference(motion: BvhMotion, reference: BvhMotion) -> str:
    names, reference_names = motion.skeleton.bone_names, reference.skeleton.bone_names
    if len(names) != len(reference_names):
        return f"{len(names)} joints instead of {len(reference_names)}"
    for ours, theirs in zip(_signature(motion), _signature(reference)):
        if ours != theirs:
            return f"joint {ours[0]!r} (parent {ours[1]}, channels {' '.join(ours[2])}) where the reference has " \
                   f"{theirs[0]!r} (parent {theirs[1]}, channels {' '.join(theirs[2])})"
    return "hierarchy differs"


def _onsets(reference_dir: Path, reference_paths: dict[str, Path]) -> dict[str, tuple[np.ndarray, float]]:
    """Per stem: audio onset times (s) and the audio's duration (s)."""
    from dimgestor_ros.audio.io import load_audio

    wavs = {path.stem: path for path in reference_dir.iterdir() if path.suffix.lower() == ".wav"}
    missing = sorted(set(reference_paths) - set(wavs))
    if missing:
        raise UserError(f"{reference_dir}: no speech for {', '.join(m + '.wav' for m in missing[:5])}; beat "
                        "alignment needs <stem>.wav beside each reference <stem>.bvh (or pass --no-beats)")
    result = {}
    for stem in reference_paths:
        audio = load_audio(wavs[stem], AUDIO_RATE)
        result[stem] = (metrics.audio_onsets(audio, AUDIO_RATE), len(audio) / AUDIO_RATE)
    return result


# --- metrics per folder ------------------------------------------------------------------------------------------

def _motion_metrics(clips: list[Clip], onsets: dict[str, tuple[np.ndarray, float]], fps: float, sigma_s: float,
                    window_s: float, seam_every: int | None) -> dict:
    """The metrics that need no reference motion: beat alignment, diversity, jerk, acceleration, seams."""
    frames = np.asarray([len(c.positions) for c in clips], dtype=np.float64)
    weights = frames / frames.sum()  # frame-weighted means over clips
    result = {
        "diversity": metrics.diversity([c.positions for c in clips], fps, window_s),
        "jerk": float(np.dot(weights, [metrics.mean_jerk(c.positions, fps) for c in clips])),
        "acceleration": float(np.dot(weights, [metrics.acceleration_magnitude(c.positions, fps) for c in clips])),
        "beat_align": None,
        "seam_continuity": None,
    }
    if onsets:
        per_clip = {}
        for clip in clips:
            audio_beats, duration = onsets[clip.stem]
            motion_beats = metrics.kinematic_beats(clip.positions, fps)
            motion_beats = motion_beats[motion_beats <= duration]  # beats after the speech ends have no onsets
            per_clip[clip.stem] = metrics.beat_alignment(motion_beats, audio_beats, sigma_s, over="motion")
        scores = [v for v in per_clip.values() if not math.isnan(v)]
        result["beat_align"] = float(np.mean(scores)) if scores else None
        result["beat_align_per_clip"] = per_clip
    if seam_every:
        values = [metrics.seam_continuity(c.positions, fps, np.arange(seam_every, len(c.positions), seam_every))
                  for c in clips]
        values = [v for v in values if not math.isnan(v)]
        result["seam_continuity"] = float(np.mean(values)) if values else None
    return result


def _json_ready(value):
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}"


if __name__ == "__main__":
    raise SystemExit(main())
