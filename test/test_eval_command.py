"""`dimgestor eval` on tiny BVH/WAV folders: the JSON it writes, the side-by-side table, and the user errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from dimgestor_ros.evaluation.report import COLUMNS, add_eval_parser, main
from dimgestor_ros.motion.bvh import BvhMotion, write_bvh
from dimgestor_ros.motion.skeleton import HUMANOID, Skeleton, neutral_pose
from test_metrics import DURATION, FPS, ONSETS, SAMPLE_RATE, beat_motion, click_track

CLIPS = {"clip_a": ONSETS, "clip_b": ONSETS[::2] + 0.1}


def poses_with_beats(beats: np.ndarray, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """(F, D) HUMANOID poses: the root travels with speed minima at ``beats``, the arms swing, optional jitter."""
    frames = int(DURATION * FPS)
    poses = np.tile(neutral_pose(HUMANOID).astype(np.float64), (frames, 1))
    poses[:, 0] += beat_motion(beats)[:, 0, 0]
    names = HUMANOID.dof_names
    swing = 0.3 * np.sin(2 * np.pi * 0.4 * np.arange(frames) / FPS)
    poses[:, names.index("LeftArm_rx")] += swing
    poses[:, names.index("RightArm_rx")] -= swing
    poses[:, 3:] += noise * np.random.default_rng(seed).normal(size=(frames, poses.shape[1] - 3))
    return poses


def write_clip(folder: Path, stem: str, poses: np.ndarray, skeleton: Skeleton = HUMANOID) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_bvh(BvhMotion.from_poses(skeleton, poses, 1.0 / FPS), folder / f"{stem}.bvh")


@pytest.fixture
def folders(tmp_path):
    """reference/ (BVH + WAV), same/ (a copy of the reference motion), shifted/ (beats 0.3 s late, jittery)."""
    for stem, beats in CLIPS.items():
        write_clip(tmp_path / "reference", stem, poses_with_beats(beats))
        soundfile.write(tmp_path / "reference" / f"{stem}.wav", click_track(beats), SAMPLE_RATE)
        write_clip(tmp_path / "same", stem, poses_with_beats(beats))
        write_clip(tmp_path / "shifted", stem, poses_with_beats(beats + 0.3, noise=0.02))
    return tmp_path


def run(argv: list[str]) -> int:
    """Parse and run through add_eval_parser, as `dimgestor eval` will once cli.py wires it in."""
    parser = argparse.ArgumentParser(prog="dimgestor")
    add_eval_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["eval", *argv])
    return args.handler(args)


def test_eval_writes_a_side_by_side_report_that_ranks_the_copy_first(folders, capsys):
    out = folders / "report" / "eval.json"
    code = run(["--reference", str(folders / "reference"), "--generated", f"copy={folders / 'same'}",
                str(folders / "shifted"), "--seam-every", "15", "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert [m["name"] for m in report["models"]] == ["copy", "shifted"]
    copy, shifted = (m["metrics"] for m in report["models"])
    for values in (copy, shifted, report["reference"]["metrics"]):
        assert set(COLUMNS) <= set(values)
    assert copy["fgd_pose"] == pytest.approx(0.0, abs=1e-6) and copy["fgd_kinetic"] == pytest.approx(0.0, abs=1e-6)
    assert shifted["fgd_pose"] > 1e-3 and shifted["fgd_kinetic"] > 1.0
    assert copy["beat_align"] > 0.9 > 0.5 > shifted["beat_align"]
    assert set(copy["beat_align_per_clip"]) == set(CLIPS)
    assert shifted["jerk"] > 10 * copy["jerk"]  # the jitter
    assert copy["seam_continuity"] == pytest.approx(1.0, abs=0.5)
    assert copy["diversity"] > 0
    assert report["settings"]["beat_sigma_s"] == 0.1 and report["settings"]["beat_average_over"] == "motion beats"
    table = capsys.readouterr().out
    assert all(column in table for column in COLUMNS) and "copy" in table and "shifted" in table


def test_main_without_wav_needs_no_beats_flag(folders, capsys):
    for wav in (folders / "reference").glob("*.wav"):
        wav.unlink()
    args = ["--reference", str(folders / "reference"), "--generated", str(folders / "same")]
    assert main(args) == 2
    assert "clip_a.wav" in capsys.readouterr().err
    out = folders / "r.json"
    assert main([*args, "--no-beats", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["models"][0]["metrics"]["beat_align"] is None


@pytest.mark.reliability("bad input", "dimgestor eval with an empty folder", "UserError naming it")
def test_empty_generated_folder_is_a_user_error(folders, capsys):
    (folders / "empty").mkdir()
    assert main(["--reference", str(folders / "reference"), "--generated", str(folders / "empty")]) == 2
    assert "holds no .bvh files" in capsys.readouterr().err


@pytest.mark.reliability("bad input", "dimgestor eval with clips missing from one side", "UserError naming the clips")
def test_unmatched_stems_are_named(folders, capsys):
    (folders / "same" / "clip_b.bvh").rename(folders / "same" / "clip_c.bvh")
    assert main(["--reference", str(folders / "reference"), "--generated", str(folders / "same")]) == 2
    error = capsys.readouterr().err
    assert "unmatched clip stems" in error and "clip_c" in error and "clip_b" in error


@pytest.mark.reliability("bad input", "dimgestor eval given a BVH of another skeleton", "UserError naming the file")
def test_a_bvh_of_another_skeleton_is_refused(folders, capsys):
    other = Skeleton("other", HUMANOID.bones[:-1])  # no RightFoot
    write_clip(folders / "same", "clip_b", poses_with_beats(CLIPS["clip_b"])[:, :other.num_dofs], other)
    assert main(["--reference", str(folders / "reference"), "--generated", str(folders / "same")]) == 2
    error = capsys.readouterr().err
    assert "clip_b.bvh" in error and "skeleton differs" in error and "Traceback" not in error


def test_the_same_model_name_twice_is_refused(folders, capsys):
    same = str(folders / "same")
    assert main(["--reference", str(folders / "reference"), "--generated", f"x={same}", f"x={same}"]) == 2
    assert "given twice" in capsys.readouterr().err


def test_plots_are_written_as_png_and_listed_in_the_report(folders):
    from PIL import Image

    out, plots = folders / "eval.json", folders / "plots"
    assert run(["--reference", str(folders / "reference"), "--generated", f"copy={folders / 'same'}",
                str(folders / "shifted"), "--out", str(out), "--plots", str(plots)]) == 0
    listed = json.loads(out.read_text())["plots"]
    assert listed == [str(plots / "metrics.png"), str(plots / "speed_clip_a.png")]
    for path in listed:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 500
            assert len(image.convert("RGB").getcolors(maxcolors=100_000)) > 10  # drawn, not blank
