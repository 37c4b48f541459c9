"""Gesture-quality metrics on pose vectors and joint positions, with no pretrained network.

Published gesture metrics (FGD, BEAT's beat consistency) embed motion with an autoencoder trained on one dataset,
so their numbers only compare within that dataset and skeleton. These metrics use the motion itself (raw pose
vectors, joint kinematics), so any skeleton and dataset can be scored, and every number has a unit or a known
value for a known input, which the tests pin.

Conventions: ``poses`` are (F, D) pose vectors (root translation in metres, Euler angles in radians; see
``motion/skeleton.py``); ``positions`` are (F, B, 3) joint positions in metres from ``forward_kinematics``;
``fps`` is frames per second.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import linalg
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks
from scipy.spatial.distance import pdist

BEAT_SIGMA_S = 0.1  # tolerance of beat alignment, seconds (Li et al. 2021 use 3 frames at 60 fps = 0.05 s)
SPEED_SMOOTHING_S = 0.05  # Gaussian smoothing of joint speed before picking kinematic beats, seconds


# --- Fréchet distances -------------------------------------------------------------------------------------------

def frechet_distance(reference: np.ndarray, generated: np.ndarray) -> float:
    """Fréchet distance between Gaussian fits of two feature sets (N, K) and (M, K), as in FID/FGD.

    ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)). The trace of the square root is taken in the symmetric
    form Tr((S_r^(1/2) S_g S_r^(1/2))^(1/2)) (same eigenvalues) with scipy.linalg.eigh, not scipy.linalg.sqrtm of
    the product: pose covariances are often singular (bones a dataset never moves, fewer windows than features),
    and sqrtm of a singular non-symmetric product is inaccurate, which pytorch-fid patches with a diagonal offset
    that biases the result; the symmetric form is exact for any positive semi-definite covariances.
    """
    reference = np.asarray(reference, dtype=np.float64)
    generated = np.asarray(generated, dtype=np.float64)
    if reference.ndim != 2 or generated.ndim != 2 or reference.shape[1] != generated.shape[1]:
        raise ValueError(f"feature sets must be (N, K) with the same K, got {reference.shape} and {generated.shape}")
    if min(len(reference), len(generated)) < 2:
        raise ValueError("each feature set needs at least two samples to fit a covariance")
    mu_r, mu_g = reference.mean(axis=0), generated.mean(axis=0)
    cov_r = np.atleast_2d(np.cov(reference, rowvar=False))  # (K, K)
    cov_g = np.atleast_2d(np.cov(generated, rowvar=False))
    root_r = _psd_sqrt(cov_r)
    middle = root_r @ cov_g @ root_r
    trace_covmean = np.sqrt(np.clip(linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    diff = mu_r - mu_g
    value = diff @ diff + np.trace(cov_r) + np.trace(cov_g) - 2.0 * trace_covmean
    return float(max(value, 0.0))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (round-off negative eigenvalues clipped to 0)."""
    values, vectors = linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def pose_features(poses: np.ndarray) -> np.ndarray:
    """(F, D) features for raw-pose FGD: one sample per frame, the pose vector itself.

    Per frame rather than per flattened window: a flattened 2 s window of a 63-DoF skeleton has ~4000 dimensions,
    whose covariance needs far more windows than an evaluation set holds; per-frame poses give a full-rank
    covariance from a minute of motion. Temporal quality is measured by the kinetic FGD instead.
    """
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 2:
        raise ValueError(f"poses must be (frames, dofs), got {poses.shape}")
    return poses


def kinetic_features(positions: np.ndarray, fps: float, window_s: float = 2.0) -> np.ndarray:
    """(W, 4B) per-window kinetic statistics: per joint mean and std of speed, mean and std of acceleration magnitude.

    Windows of ``window_s`` seconds with half-window hop; a clip shorter than one window gives one window of its
    whole length. Derivatives are central differences (np.gradient) in m/s and m/s^2. Like AIST++'s FID_k, this
    compares how bodies move without a learned embedding, but per window so that a few clips give enough samples.
    """
    positions = _check_positions(positions)
    dt = 1.0 / fps
    velocity = np.gradient(positions, dt, axis=0)  # (F, B, 3)
    acceleration = np.gradient(velocity, dt, axis=0)
    speed = np.linalg.norm(velocity, axis=2)  # (F, B)
    accel = np.linalg.norm(acceleration, axis=2)
    rows = []
    for start, stop in _windows(len(positions), max(3, int(round(window_s * fps)))):
        s, a = speed[start:stop], accel[start:stop]
        rows.append(np.concatenate([s.mean(0), s.std(0), a.mean(0), a.std(0)]))
    return np.stack(rows)  # (W, 4B)


def kinetic_fgd(reference: np.ndarray, generated: np.ndarray) -> float:
    """Fréchet distance of kinetic features (W, 4B) after scaling each of their four groups by one reference scale.

    The groups (per-joint speed mean, speed std, acceleration mean, acceleration std; see kinetic_features) differ
    in scale by an order of magnitude, so each is divided by the root-mean-square over joints of its reference
    spread, which weighs the groups alike. One scale per group rather than per joint: joints a reference barely
    moves (the feet of a standing speaker) have a spread near zero, and dividing by it would turn a millimetre of
    foot motion into a distance of thousands that drowns every other feature. Both sets are centred on the
    reference mean, so the reference stays fixed.
    """
    reference = np.asarray(reference, dtype=np.float64)
    generated = np.asarray(generated, dtype=np.float64)
    if reference.shape[1] % 4:
        raise ValueError(f"kinetic features have 4 groups of per-joint values, got {reference.shape[1]} columns")
    joints = reference.shape[1] // 4
    spread = reference.std(axis=0).reshape(4, joints)  # (4, B)
    scale = np.sqrt((spread**2).mean(axis=1))  # (4,) one per group
    scale = np.repeat(np.where(scale > 1e-12, scale, 1.0), joints)  # (4B,)
    mean = reference.mean(axis=0)
    return frechet_distance((reference - mean) / scale, (generated - mean) / scale)


# --- Beat alignment ----------------------------------------------------------------------------------------------

def audio_onsets(audio: np.ndarray, sample_rate: int, hop_length: int = 160) -> np.ndarray:
    """Onset times in seconds of mono speech audio, from librosa's spectral-flux onset detector.

    A 10 ms hop at 16 kHz (librosa's default hop is 23 ms at 22 kHz) keeps detection error well below the
    0.1 s tolerance of :func:`beat_alignment`.
    """
    import librosa

    audio = np.asarray(audio, dtype=np.float32)
    return librosa.onset.onset_detect(y=audio, sr=sample_rate, hop_length=hop_length, units="time")


def joint_speed(positions: np.ndarray, fps: float) -> np.ndarray:
    """(F,) mean over joints of joint speed (m/s), central differences so value t belongs to frame t."""
    positions = _check_positions(positions)
    return np.linalg.norm(np.gradient(positions, 1.0 / fps, axis=0), axis=2).mean(axis=1)


def kinematic_beats(positions: np.ndarray, fps: float, smoothing_s: float = SPEED_SMOOTHING_S) -> np.ndarray:
    """Motion beat times in seconds: local minima of the Gaussian-smoothed mean joint speed (Li et al. 2021).

    A gesture stroke ends when the hands stop, so speed minima are the motion's beats. scipy's find_peaks on the
    negated speed also finds flat minima (a held pose) once, at their middle; minima at the clip's ends are not
    beats.
    """
    speed = joint_speed(positions, fps)
    if smoothing_s > 0:
        speed = gaussian_filter1d(speed, smoothing_s * fps, mode="nearest")
    minima, _ = find_peaks(-speed)
    return minima / fps


def beat_alignment(
    motion_beats: np.ndarray,
    audio_beats: np.ndarray,
    sigma_s: float = BEAT_SIGMA_S,
    over: Literal["motion", "audio"] = "motion",
) -> float:
    """Beat alignment score in [0, 1]: mean of exp(-d^2 / (2 sigma^2)), d the distance to the nearest other beat.

    ``over="motion"`` (default, the AI Choreographer paper's formula): averaged over motion beats, d to the nearest
    audio onset, so it asks "does each gesture beat land on a speech onset". ``over="audio"`` averages over audio
    onsets instead (the AIST++/Bailando code and BEAT do this). NaN when the averaged set is empty or the other
    set has no beats.
    """
    motion_beats = np.asarray(motion_beats, dtype=np.float64).ravel()
    audio_beats = np.asarray(audio_beats, dtype=np.float64).ravel()
    if over not in ("motion", "audio"):
        raise ValueError(f"over must be 'motion' or 'audio', got {over!r}")
    averaged, other = (motion_beats, audio_beats) if over == "motion" else (audio_beats, motion_beats)
    if len(averaged) == 0 or len(other) == 0:
        return float("nan")
    distance = np.abs(averaged[:, None] - other[None, :]).min(axis=1)  # (len(averaged),)
    return float(np.exp(-(distance**2) / (2.0 * sigma_s**2)).mean())


# --- Smoothness, diversity and seams -----------------------------------------------------------------------------

def acceleration_magnitude(positions: np.ndarray, fps: float) -> float:
    """Mean over frames and joints of |second difference| * fps^2, m/s^2."""
    positions = _check_positions(positions, min_frames=3)
    return float(np.linalg.norm(np.diff(positions, n=2, axis=0), axis=2).mean() * fps**2)


def jerk_per_frame(positions: np.ndarray, fps: float) -> np.ndarray:
    """(F - 3,) mean over joints of |third difference| * fps^3 (m/s^3); value i spans frames i .. i+3."""
    positions = _check_positions(positions, min_frames=4)
    return np.linalg.norm(np.diff(positions, n=3, axis=0), axis=2).mean(axis=1) * fps**3


def mean_jerk(positions: np.ndarray, fps: float) -> float:
    """Mean jerk magnitude over frames and joints, m/s^3: jitter and abrupt changes raise it."""
    return float(jerk_per_frame(positions, fps).mean())


def seam_continuity(positions: np.ndarray, fps: float, seams: np.ndarray | list[int]) -> float:
    """Jerk across seams over jerk elsewhere: ~1 when windowed output joins smoothly, >> 1 for a visible jump.

    A seam s means frame s is the first frame of a new window. The third differences whose stencil (frames
    i .. i+3) crosses the boundary between s - 1 and s are i = s-3 .. s-1; their mean jerk, averaged over the
    seams, is divided by the mean jerk of all other stencils. Seams too close to the clip's ends are ignored; NaN
    when no seam is usable.
    """
    jerk = jerk_per_frame(positions, fps)  # (F - 3,)
    crossing = np.zeros(len(jerk), dtype=bool)
    seam_values = []
    for seam in np.asarray(seams, dtype=int).ravel():
        if 3 <= seam <= len(jerk):
            seam_values.append(jerk[seam - 3:seam].mean())
            crossing[seam - 3:seam] = True
    baseline = jerk[~crossing]
    if not seam_values or len(baseline) == 0:
        return float("nan")
    return float(np.mean(seam_values) / max(baseline.mean(), 1e-12))


def diversity(positions_by_clip: list[np.ndarray], fps: float, window_s: float = 2.0,
              max_windows: int = 2000, seed: int = 0) -> float:
    """Mean pairwise distance between motion windows, as an RMS joint distance in metres.

    Windows of ``window_s`` seconds (half-window hop) of root-relative joint positions (posture, not where the
    body stands) are flattened, and scipy's pdist gives Euclidean distances, divided by sqrt(frames * joints) so
    the value is a root-mean-square per-joint distance. At most ``max_windows`` windows (a seeded random subset)
    keep the pair count bounded. NaN with fewer than two windows.
    """
    flat = []
    for positions in positions_by_clip:
        positions = _check_positions(positions)
        relative = positions - positions[:, :1]  # (F, B, 3) relative to the root joint
        length = max(1, int(round(window_s * fps)))
        if len(relative) < length:
            continue
        for start in range(0, len(relative) - length + 1, max(1, length // 2)):
            flat.append(relative[start:start + length].reshape(-1))
    if len(flat) < 2:
        return float("nan")
    samples = np.stack(flat)  # (N, length * B * 3)
    if len(samples) > max_windows:
        samples = samples[np.random.default_rng(seed).choice(len(samples), max_windows, replace=False)]
    joints_frames = samples.shape[1] / 3
    return float(pdist(samples).mean() / np.sqrt(joints_frames))


def _windows(frames: int, length: int) -> list[tuple[int, int]]:
    if frames <= length:
        return [(0, frames)]
    hop = max(1, length // 2)
    return [(start, start + length) for start in range(0, frames - length + 1, hop)]


def _check_positions(positions: np.ndarray, min_frames: int = 2) -> np.ndarray:
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[2] != 3:
        raise ValueError(f"positions must be (frames, joints, 3), got {positions.shape}")
    if len(positions) < min_frames:
        raise ValueError(f"need at least {min_frames} frames, got {len(positions)}")
    return positions
