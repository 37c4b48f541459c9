"""Paired speech + motion windows for training, from a folder of ``<stem>.bvh`` + ``<stem>.wav`` files.

Works for the BEAT / ZEGGS layout (pairs side by side, possibly in per-speaker subfolders), the GENEA layout
(``bvh/`` and ``wav/`` subfolders) and the synthetic corpus, since pairing is by file stem anywhere below the
folder. Motion is resampled to 30 fps; speech features are computed once per file and cached, because the encoder
(HuBERT especially) costs far more than reading BVH.

Alignment: motion frame f covers [f/30, (f+1)/30) s and speech frame i covers [i/50, (i+1)/50) s, so a window of
motion frames [s, s + W) pairs with speech frames [s*50//30, s*50//30 + W*50//30) (exact when s is a multiple
of 3, e.g. the default hop of 60).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dimgestor_ros.audio.io import load_audio
from dimgestor_ros.errors import UserError
from dimgestor_ros.motion.bvh import read_skeleton_bvh
from dimgestor_ros.motion.kinematics import resample
from dimgestor_ros.motion.skeleton import HUMANOID, Skeleton

MOTION_FPS = 30.0


def _encoder_id(encoder: Any) -> str:
    """Names the encoder and its settings, so a cache made by another encoder or config is never reused."""
    config = getattr(encoder, "config", None)
    return f"{type(encoder).__name__}|{encoder.dim}|{encoder.frame_rate}|{config!r}"


def pair_files(folder: Path) -> list[tuple[str, Path, Path]]:
    """(stem, bvh, wav) sorted by stem; UserError naming the file whose partner is missing or duplicated."""
    found: dict[str, dict[str, Path]] = {".bvh": {}, ".wav": {}}
    for suffix, by_stem in found.items():
        for path in sorted(folder.rglob(f"*{suffix}")):
            if path.stem in by_stem:
                raise UserError(f"{path}: stem {path.stem!r} also names {by_stem[path.stem]}; stems must be unique")
            by_stem[path.stem] = path
    for suffix, other in ((".bvh", ".wav"), (".wav", ".bvh")):
        for stem, path in found[suffix].items():
            if stem not in found[other]:
                raise UserError(f"{path}: no matching {stem}{other} below {folder}; add it or remove this file")
    if not found[".bvh"]:
        raise UserError(f"{folder}: no <stem>.bvh + <stem>.wav pairs found; point at a BEAT/ZEGGS/GENEA-style folder")
    return [(stem, found[".bvh"][stem], found[".wav"][stem]) for stem in sorted(found[".bvh"])]


def load_motion(path: Path, unit_scale: float, skeleton: Skeleton = HUMANOID) -> np.ndarray:
    """(F, D) poses at 30 fps; UserError naming the file when the skeleton cannot give ``skeleton``'s layout."""
    motion = read_skeleton_bvh(path, skeleton, "retarget it first")
    if abs(motion.fps - MOTION_FPS) > 1e-3:
        motion = resample(motion, MOTION_FPS)
    return motion.to_poses(unit_scale)


class PairedMotionDataset(torch.utils.data.Dataset):
    """Overlapping windows of (motion (W, D), speech features (S, dim)) from paired BVH + WAV files.

    ``split``: keep only clips whose ``manifest.json`` entry has this split (synthetic corpus). ``cache_dir``:
    speech features are stored there as ``<stem>-<hash>.npy`` keyed by the WAV's bytes and the encoder, and reused
    by later datasets; None keeps them in memory only. ``feature_computations`` counts encoder runs (a hook to
    check the cache works).
    """

    def __init__(self, folder: str | Path, encoder: Any = None, window_frames: int = 120, hop_frames: int = 60,
                 cache_dir: str | Path | None = None, split: str | None = None, unit_scale: float = 0.01,
                 duration_tolerance_s: float = 0.5, skeleton: Skeleton = HUMANOID) -> None:
        if window_frames < 1 or hop_frames < 1:
            raise UserError(f"window_frames and hop_frames must be positive, got {window_frames}, {hop_frames}")
        if encoder is None:
            from dimgestor_ros.features.acoustic import AcousticFrontEnd

            encoder = AcousticFrontEnd()
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise UserError(f"{self.folder}: no such dataset folder")
        self.encoder = encoder
        self.window_frames, self.hop_frames = window_frames, hop_frames
        self.speech_rate = float(encoder.frame_rate)
        self.speech_frames = int(window_frames * self.speech_rate // MOTION_FPS)  # S
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.feature_computations = 0
        pairs = pair_files(self.folder)
        if split is not None:
            pairs = self._filter_split(pairs, split)
        self.names: list[str] = []
        self.motions: list[np.ndarray] = []  # per clip (F, D) float32
        self.features: list[np.ndarray] = []  # per clip (T, dim) float32
        self.windows: list[tuple[int, int]] = []  # (clip index, start motion frame)
        self.skipped: list[str] = []  # clips shorter than one window
        for stem, bvh, wav in pairs:
            motion = load_motion(bvh, unit_scale, skeleton)
            audio = load_audio(wav, encoder.sample_rate)  # (N,)
            audio_s, motion_s = len(audio) / encoder.sample_rate, motion.shape[0] / MOTION_FPS
            if abs(audio_s - motion_s) > duration_tolerance_s:
                raise UserError(f"{bvh}: {motion_s:.2f} s of motion but {wav.name} has {audio_s:.2f} s of speech "
                                f"(tolerance {duration_tolerance_s} s); they are not a pair, or one is cut")
            features = self._features(stem, wav, audio)
            clip = len(self.names)
            starts = [s for s in range(0, motion.shape[0] - window_frames + 1, hop_frames)
                      if self._speech_start(s) + self.speech_frames <= features.shape[0]]
            if not starts:
                self.skipped.append(stem)
            self.windows += [(clip, s) for s in starts]
            self.names.append(stem)
            self.motions.append(motion.astype(np.float32))
            self.features.append(features)

    def _filter_split(self, pairs: list[tuple[str, Path, Path]], split: str) -> list[tuple[str, Path, Path]]:
        manifest = self.folder / "manifest.json"
        if not manifest.is_file():
            raise UserError(f"{manifest}: split={split!r} needs a manifest.json with a split per clip; pass split=None")
        splits = {clip["name"]: clip["split"] for clip in json.loads(manifest.read_text(encoding="utf-8"))["clips"]}
        if split not in set(splits.values()):
            raise UserError(f"{manifest}: no clips in split {split!r}; splits there: {sorted(set(splits.values()))}")
        return [pair for pair in pairs if splits.get(pair[0]) == split]

    def _speech_start(self, start: int) -> int:
        return int(start * self.speech_rate // MOTION_FPS)

    def _features(self, stem: str, wav: Path, audio: np.ndarray) -> np.ndarray:
        cache = None
        if self.cache_dir is not None:
            digest = hashlib.sha256(wav.read_bytes() + _encoder_id(self.encoder).encode()).hexdigest()[:20]
            cache = self.cache_dir / f"{stem}-{digest}.npy"
            if cache.is_file():
                return np.load(cache)
        features = np.asarray(self.encoder.encode(audio), dtype=np.float32)  # (T, dim)
        self.feature_computations += 1
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            partial = cache.with_suffix(".tmp.npy")
            np.save(partial, features)
            partial.replace(cache)  # atomic: a killed run never leaves a truncated cache file
        return features

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip, start = self.windows[index]
        speech_start = self._speech_start(start)
        return {
            "motion": self.motions[clip][start:start + self.window_frames],  # (W, D) float32
            "speech": self.features[clip][speech_start:speech_start + self.speech_frames],  # (S, dim) float32
            "name": self.names[clip],
            "start": start,
        }

    def motion_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std (D,) over every frame the windows cover (each frame once); constant DoFs get std 1.

        Computed on this dataset, so build it with the training split to normalise without test leakage.
        """
        frames = []
        for clip, motion in enumerate(self.motions):
            starts = [s for c, s in self.windows if c == clip]
            if starts:
                frames.append(motion[:max(starts) + self.window_frames])
        if not frames:
            raise UserError(f"{self.folder}: no clip is as long as one window ({self.window_frames} frames)")
        stacked = np.concatenate(frames).astype(np.float64)  # (N, D)
        std = stacked.std(axis=0)
        std[std < 1e-4] = 1.0
        return stacked.mean(axis=0).astype(np.float32), std.astype(np.float32)

    def speech_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std (dim,) of the speech features over every clip, for the model's input standardisation."""
        stacked = np.concatenate(self.features).astype(np.float64)  # (N, dim)
        std = stacked.std(axis=0)
        std[std < 1e-4] = 1.0
        return stacked.mean(axis=0).astype(np.float32), std.astype(np.float32)
