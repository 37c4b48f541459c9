"""Rule-based co-speech motion on ``HUMANOID``: beat strokes timed to syllable onsets, sized by loudness.

Why rules: no gesture capture can be downloaded here, yet the model, its data loader and its training loop need
motion that is *causally tied to the speech* (strokes on onsets, stillness in silence) so that tests and smoke
training have a signal to learn. The rules follow what gesture studies report: the stroke's apex (a speed minimum
of the hand) lands on the stressed syllable, gesture size grows with loudness, hands rise into the gesture space
shortly before a phrase and sink back to rest after it, and a resting speaker still breathes and shifts weight.

All motion is built from C1-smooth pieces (raised-cosine strokes, quintic smoothstep posture changes,
low-passed noise for sway), so there are no jumps; every moved DoF is kept inside ``JOINT_LIMITS``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_closing, binary_opening, gaussian_filter1d

from dimgestor_ros.motion.skeleton import HUMANOID, neutral_pose

FPS = 30.0
LOUDNESS_FULL_DB = -12.0  # RMS level (dBFS, 40 ms frames) of loud speech: strokes at full size
LOUDNESS_RANGE_DB = 25.0  # strokes shrink to their smallest size this far below it
PHRASE_LIFT_QUIET = 0.55  # how far a phrase at the bottom of the loudness range lifts the arms, relative to a loud one
GESTURES = ("beat", "open", "point", "nod")
HANDEDNESS = ("left", "right", "both")

_NAMES = HUMANOID.dof_names
_INDEX = {name: i for i, name in enumerate(_NAMES)}
_ARM_DOFS = ("Arm_rz", "Arm_rx", "Arm_ry", "ForeArm_rz", "ForeArm_rx", "ForeArm_ry", "Hand_rz", "Hand_rx", "Hand_ry")

# Left-arm offsets from the neutral pose (radians, the DoF order above), found by inverse kinematics on HUMANOID for
# hand targets in metres: beat-ready in front of the belly (0.20, 1.09, 0.31), arms wide (0.55, 1.15, 0.20),
# pointing forward at chest height (0.13, 1.35, 0.50), and a low relaxed hold for the idle hand (0.22, 0.99, 0.21).
# The right arm mirrors them (x-mirror: rx kept, ry and rz negated).
_POSE_OFFSETS = {
    "beat": (0.04, -0.13, -0.39, -0.50, 0.25, -0.96, 0.0, 0.10, 0.0),
    "open": (0.46, -0.12, -0.46, 0.29, 0.01, -0.20, 0.0, -0.15, 0.0),
    "point": (-0.18, 0.11, -1.40, -0.01, 0.00, -0.35, 0.0, 0.0, 0.0),
    "hold": (0.05, -0.10, -0.23, -0.49, 0.17, -0.65, 0.0, 0.0, 0.0),
}
# Left-arm stroke directions at amplitude 1: beat drops the hand ~7 cm with a wrist flick, open pushes the open
# arms down and out, point jabs forward by extending the elbow, nod keeps the hands nearly still.
_STROKES = {
    "beat": (-0.10, 0.08, -0.15, 0.17, -0.17, 0.46, 0.0, 0.25, 0.0),
    "open": (-0.12, 0.00, 0.10, 0.10, 0.00, 0.25, 0.0, 0.15, 0.0),
    "point": (0.00, 0.00, -0.12, 0.00, 0.00, 0.30, 0.0, 0.10, 0.0),
    "nod": (-0.03, 0.02, -0.04, 0.04, -0.04, 0.12, 0.0, 0.06, 0.0),
}
_TRANSITION_S, _LEAD_S, _LAG_S = 0.6, 0.45, 0.35  # posture change duration, its centre before / after speech
_NOD = {"Neck_rx": 0.07, "Head_rx": 0.14}  # radians at amplitude 1; positive rx tips the head forward

# Natural ranges (radians; metres for root translation) of every DoF the generator moves; others stay neutral.
JOINT_LIMITS: dict[str, tuple[float, float]] = {
    "Hips_tx": (-0.05, 0.05), "Hips_ty": (0.93, 0.97), "Hips_tz": (-0.05, 0.05),
    "Hips_rz": (-0.08, 0.08), "Hips_rx": (-0.08, 0.08), "Hips_ry": (-0.15, 0.15),
    "Spine_rx": (-0.1, 0.2), "Spine1_rx": (-0.1, 0.2), "Spine2_rx": (-0.1, 0.2),
    "Spine_rz": (-0.1, 0.1), "Spine1_ry": (-0.2, 0.2), "Neck_rx": (-0.3, 0.4), "Head_rx": (-0.4, 0.5),
    "Head_ry": (-0.5, 0.5), "Head_rz": (-0.3, 0.3),
    "LeftShoulder_rz": (-0.15, 0.25), "RightShoulder_rz": (-0.25, 0.15),
    "LeftArm_rz": (-1.6, 0.3), "RightArm_rz": (-0.3, 1.6), "LeftArm_rx": (-0.8, 0.8), "RightArm_rx": (-0.8, 0.8),
    "LeftArm_ry": (-1.8, 0.3), "RightArm_ry": (-0.3, 1.8),
    "LeftForeArm_rz": (-0.8, 0.8), "RightForeArm_rz": (-0.8, 0.8),
    "LeftForeArm_rx": (-0.6, 0.6), "RightForeArm_rx": (-0.6, 0.6),
    "LeftForeArm_ry": (-1.2, 0.4), "RightForeArm_ry": (-0.4, 1.2),
    "LeftHand_rz": (-0.5, 0.5), "RightHand_rz": (-0.5, 0.5), "LeftHand_rx": (-0.7, 0.7), "RightHand_rx": (-0.7, 0.7),
    "LeftHand_ry": (-0.5, 0.5), "RightHand_ry": (-0.5, 0.5),
}


@dataclass(frozen=True)
class SpeakerStyle:
    """How one synthetic speaker gestures (the speaker roster in corpus/synthetic.py draws one per speaker)."""

    amplitude: float = 1.0  # stroke size multiplier (loudness scales it further per stroke)
    stroke_duration: float = 0.45  # s from stroke start to end of retraction; also the minimum beat spacing
    handedness: str = "both"  # which arm strokes: left, right or both
    gestures: tuple[str, ...] = ("beat",)  # favoured gesture set, one drawn per phrase, from GESTURES
    sway: float = 1.0  # breathing and weight-shift scale
    lift: float = 1.0  # how far the stroking arm(s) rise into the gesture pose (0: stay at rest)

    def __post_init__(self) -> None:
        if self.handedness not in HANDEDNESS:
            raise ValueError(f"handedness must be one of {HANDEDNESS}, got {self.handedness!r}")
        unknown = [g for g in self.gestures if g not in GESTURES]
        if unknown or not self.gestures:
            raise ValueError(f"gestures must be a non-empty subset of {GESTURES}, got {self.gestures!r}")
        if not 0.2 <= self.stroke_duration <= 1.5:
            raise ValueError(f"stroke_duration must be within 0.2-1.5 s, got {self.stroke_duration}")


@dataclass(frozen=True)
class SpeechAnalysis:
    """The speech cues the rules use, on the motion's frame grid."""

    loudness: np.ndarray  # (F,) 0..1: 1 at LOUDNESS_FULL_DB RMS, 0 at LOUDNESS_RANGE_DB below it
    speaking: np.ndarray  # (F,) bool, voice activity with short pauses closed
    onsets: np.ndarray  # (K,) seconds, candidate stroke times (acoustic onsets inside speech)
    onset_strength: np.ndarray  # (K,) onset envelope at each onset, to rank candidates


@dataclass(frozen=True)
class GestureTrack:
    poses: np.ndarray  # (F, 63) float32 HUMANOID poses at FPS
    beats: np.ndarray  # (B,) seconds, stroke apexes (hand speed minima)
    phrases: list[tuple[float, float, str]]  # (start s, end s, gesture) per speech phrase


def num_motion_frames(num_samples: int, sample_rate: int) -> int:
    """Frames at FPS covering the audio: frame f spans [f / FPS, (f + 1) / FPS), like the 50 fps speech frames."""
    return int(num_samples * FPS // sample_rate)


def analyse_speech(audio: np.ndarray, sample_rate: int) -> SpeechAnalysis:
    """Loudness, voice activity and onsets of mono speech, resampled onto the FPS motion grid."""
    import librosa

    audio = np.asarray(audio, dtype=np.float32)
    frames = num_motion_frames(len(audio), sample_rate)
    hop = sample_rate // 100  # 100 Hz analysis, then onto the 30 fps grid
    rms = librosa.feature.rms(y=audio, frame_length=4 * hop, hop_length=hop, center=True)[0]  # (N,)
    db = 20.0 * np.log10(rms + 1e-8)
    peak = float(np.percentile(db, 99)) if db.size else -80.0
    analysis_times = np.arange(len(db)) / 100.0
    times = (np.arange(frames) + 0.5) / FPS
    db_grid = np.interp(times, analysis_times, db)
    # Absolute loudness (dBFS), not relative to the clip's peak: the same words spoken louder get bigger strokes.
    loudness = np.clip((db_grid - (LOUDNESS_FULL_DB - LOUDNESS_RANGE_DB)) / LOUDNESS_RANGE_DB, 0.0, 1.0)
    active = db_grid > max(peak - 30.0, -60.0)
    active = binary_closing(active, structure=np.ones(int(0.3 * FPS) | 1))  # bridge short word gaps
    active = binary_opening(active, structure=np.ones(3)) & active  # drop clicks shorter than 0.1 s
    envelope = librosa.onset.onset_strength(y=audio, sr=sample_rate, hop_length=hop)
    onsets = librosa.onset.onset_detect(onset_envelope=envelope, sr=sample_rate, hop_length=hop, units="frames",
                                        backtrack=False)
    onset_times = onsets * hop / sample_rate
    inside = np.array([active[min(int(t * FPS), frames - 1)] for t in onset_times], dtype=bool) if frames else []
    return SpeechAnalysis(loudness.astype(np.float32), np.asarray(active, dtype=bool),
                          onset_times[inside], envelope[onsets][inside])


def select_beats(analysis: SpeechAnalysis, style: SpeakerStyle, duration: float) -> np.ndarray:
    """Strongest onsets first, at least one stroke duration apart, with room for the stroke inside the clip."""
    pre, post = 0.4 * style.stroke_duration, 0.6 * style.stroke_duration
    chosen: list[float] = []
    for k in np.argsort(-analysis.onset_strength, kind="stable"):
        t = float(analysis.onsets[k])
        if t - pre < 0 or t + post > duration:
            continue
        if all(abs(t - c) >= style.stroke_duration for c in chosen):
            chosen.append(t)
    return np.sort(np.asarray(chosen, dtype=np.float64))


def speech_phrases(speaking: np.ndarray, min_gap_s: float = 0.4) -> list[tuple[int, int]]:
    """[start, end) frame ranges of speech, pauses shorter than ``min_gap_s`` bridged."""
    mask = binary_closing(speaking, structure=np.ones(int(min_gap_s * FPS) | 1)) | speaking
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.nonzero(edges == 1)[0].tolist(), np.nonzero(edges == -1)[0].tolist()))


def smoothstep(x: np.ndarray) -> np.ndarray:
    """Quintic 0 -> 1 ramp on [0, 1] with zero velocity and acceleration at both ends (C2), flat outside."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (x * (6.0 * x - 15.0) + 10.0)


def blend_steps(times: np.ndarray, changes: list[tuple[float, np.ndarray]], transition_s: float) -> np.ndarray:
    """(F, D) sum of step changes (centre time, delta (D,)), each eased in over ``transition_s`` by smoothstep.

    Unlike a low-pass filter this has finite support: before a transition starts the pose is exactly at rest, so
    silence is calm and the next stroke's apex is not blurred by the tail of a posture change.
    """
    out = np.zeros((len(times), HUMANOID.num_dofs))
    for centre, delta in changes:
        out += smoothstep((times - centre) / transition_s + 0.5)[:, None] * delta[None, :]
    return out


def _stroke_shape(times: np.ndarray, apex: float, pre: float, post: float) -> np.ndarray:
    """(F,) raised-cosine bump: 0 -> 1 at the apex -> 0; zero velocity at apex and both ends (C1)."""
    u = np.where(times < apex, (times - apex) / pre, (times - apex) / post)
    return np.where(np.abs(u) < 1.0, 0.5 * (1.0 + np.cos(np.pi * np.clip(u, -1.0, 1.0))), 0.0)


def _arm_vector(values: tuple[float, ...], side: str, scale: float = 1.0) -> np.ndarray:
    """(63,) offset with the left-arm ``values`` placed on ``side``, mirrored for the right arm."""
    out = np.zeros(HUMANOID.num_dofs)
    for dof, value in zip(_ARM_DOFS, values):
        mirrored = -value if side == "Right" and dof[-1] in "yz" else value
        out[_INDEX[f"{side}{dof}"]] = scale * mirrored
    return out


def _sides(style: SpeakerStyle) -> tuple[list[str], list[str]]:
    """(stroking sides, idle sides) from handedness."""
    if style.handedness == "both":
        return ["Left", "Right"], []
    active = style.handedness.capitalize()
    return [active], ["Right" if active == "Left" else "Left"]


def _sway(frames: int, style: SpeakerStyle, rng: np.random.Generator) -> np.ndarray:
    """(F, 63) breathing (0.2-0.3 Hz chest and shoulder rise) and slow weight shifts from low-passed noise."""
    t = np.arange(frames) / FPS
    out = np.zeros((frames, HUMANOID.num_dofs))
    breath = np.sin(2.0 * np.pi * rng.uniform(0.2, 0.3) * t + rng.uniform(0.0, 2.0 * np.pi))
    for dof, amount in (("Spine1_rx", -0.012), ("Spine2_rx", -0.015), ("Neck_rx", 0.01),
                        ("LeftShoulder_rz", 0.02), ("RightShoulder_rz", -0.02)):
        out[:, _INDEX[dof]] = style.sway * amount * breath
    for dof, amount in (("Hips_tx", 0.012), ("Hips_rz", 0.02), ("Hips_ry", 0.03), ("Spine_rz", 0.015),
                        ("Head_ry", 0.06), ("Head_rz", 0.03)):
        noise = gaussian_filter1d(rng.standard_normal(frames + 120), sigma=1.2 * FPS, mode="wrap")[60:-60]
        noise /= max(float(np.std(noise)), 1e-6) * 2.0
        out[:, _INDEX[dof]] = style.sway * amount * noise
    return out


def _phrase_loudness(analysis: SpeechAnalysis, start: int, end: int) -> float:
    """0..1: the phrase's loudness, the 90th percentile of its frames (pauses between words do not lower it)."""
    frames = analysis.loudness[start:end][analysis.speaking[start:end]]
    return float(np.percentile(frames, 90)) if frames.size else 0.0


def generate_gestures(audio: np.ndarray, sample_rate: int, style: SpeakerStyle,
                      rng: np.random.Generator) -> GestureTrack:
    """HUMANOID poses (F, 63) at FPS for mono ``audio``; F = floor(samples * FPS / sample_rate)."""
    audio = np.asarray(audio, dtype=np.float32)
    frames = num_motion_frames(len(audio), sample_rate)
    duration = len(audio) / sample_rate
    analysis = analyse_speech(audio, sample_rate)
    times = np.arange(frames) / FPS
    stroking, idle = _sides(style)

    # Posture: per phrase, the stroking arm(s) rise into the phrase's gesture pose, idle arm into a low hold.
    # Pauses under 1.5 s keep the arms up (a hold), so rise and fall of neighbouring phrases never overlap.
    phrases = speech_phrases(analysis.speaking, min_gap_s=1.5)
    kinds = [str(rng.choice(style.gestures)) for _ in phrases]
    changes: list[tuple[float, np.ndarray]] = []
    for (start, end), kind in zip(phrases, kinds):
        pose = "hold" if kind == "nod" else kind
        # A loud phrase lifts the arms further into the gesture space than a quiet one: louder is bigger in the
        # posture as well as in the strokes.
        lift = style.lift * (PHRASE_LIFT_QUIET + (1.0 - PHRASE_LIFT_QUIET) * _phrase_loudness(analysis, start, end))
        offset = sum((_arm_vector(_POSE_OFFSETS[pose], side, lift) for side in stroking), np.zeros(63))
        offset += sum((_arm_vector(_POSE_OFFSETS["hold"], side, 0.5 * lift) for side in idle), np.zeros(63))
        offset[_INDEX["Spine_rx"]] += 0.03  # lean in while talking
        # Preparation is done 0.15 s before the first syllable; retraction starts 0.05 s after the last one.
        changes += [(start / FPS - _LEAD_S, offset), (end / FPS + _LAG_S, -offset)]
    offsets = blend_steps(times, changes, _TRANSITION_S)  # (F, 63)

    # Strokes: a bump whose apex (speed minimum) is on the beat, size from loudness.
    beats = select_beats(analysis, style, duration)
    pre, post = 0.4 * style.stroke_duration, 0.6 * style.stroke_duration
    for beat in beats:
        frame = min(int(beat * FPS), frames - 1)
        phrase = next((i for i, (s, e) in enumerate(phrases) if s <= frame < e), None)
        kind = kinds[phrase] if phrase is not None else "beat"
        # The syllable's loudness: the loudest frame within 0.1 s of the onset (at the onset itself it is still rising).
        loudness = float(analysis.loudness[max(0, frame - 3) : frame + 4].max())
        size = style.amplitude * (0.35 + 0.65 * loudness)
        stroke = sum((_arm_vector(_STROKES[kind], side, size) for side in stroking), np.zeros(63))
        nod = 1.0 if kind == "nod" else 0.25
        for dof, amount in _NOD.items():
            stroke[_INDEX[dof]] += nod * size * amount
        offsets += _stroke_shape(times, beat, pre, post)[:, None] * stroke[None, :]

    poses = neutral_pose()[None, :].astype(np.float64) + offsets + _sway(frames, style, rng)
    for dof, (low, high) in JOINT_LIMITS.items():
        poses[:, _INDEX[dof]] = np.clip(poses[:, _INDEX[dof]], low, high)
    phrase_times = [(s / FPS, e / FPS, kind) for (s, e), kind in zip(phrases, kinds)]
    return GestureTrack(poses.astype(np.float32), beats, phrase_times)
