"""Streaming generation: audio chunks in, hops of motion out, windows stitched by inpainting.

Speech features and the fuzzy extractor's Mamba-2 state are carried across chunks exactly. Every ``hop_frames``
new motion frames, the denoiser samples a window of ``window_frames`` ending at the newest frame; the frames the
window shares with already published motion are pinned (clean context or inpainting, see diffusion/gaussian.py),
so hops join without seams. The newest ``lookahead_frames`` of a window are sampled but not published: they let
the hop's last frames see a little of the speech after them, because a gesture stroke starts before the syllable
it lands on. That costs exactly their duration in latency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from ..diffusion.gaussian import SAMPLERS
from ..features.factory import SpeechEncoder
from ..model.gesture_model import DiMGestor
from .loudness import FrameLoudness


@dataclass
class StreamingConfig:
    window_frames: int = 60  # frames the denoiser sees at once (2 s at 30 fps)
    hop_frames: int = 15  # new frames per generated hop (0.5 s at 30 fps)
    lookahead_frames: int = 4  # frames after the hop sampled for context but not published (adds their latency)
    steps: int = 8  # sampling steps (network evaluations) per window
    sampler: str = "ddim"  # "ddim", "ddpm" or "dpmpp2m" (see diffusion/gaussian.py)
    eta: float = 0.0
    guidance: float = 1.0  # classifier-free guidance scale (1 = off)
    amplitude: float = 1.0  # scales motion around the mean pose
    style_blend: float = 0.0  # 0: the style heard in the speech; 1: the fixed style set with set_style()
    # Gaussian smoothing of each new hop, sigma in frames (0: off). It uses the published frames before the hop as
    # context, so it adds no latency and no seam; it removes the frame-to-frame jitter few-step sampling leaves.
    smoothing: float = 3.0
    # Seam blending time constant in frames (0: off). The new frames are shifted by an offset that starts at the
    # gap between them and the continuation (position and velocity) of the published motion and decays like a
    # critically damped spring (inertialization, Bollo 2016), so a hop never starts with a jump or a kink.
    seam_blend: float = 4.0
    # Idle: frames quieter than silence_threshold_db (RMS dBFS per motion frame) are smoothed with idle_smoothing
    # (sigma in frames) instead of `smoothing`, blended over a few frames, so silence gives a calm rest that still
    # breathes rather than the small restless wiggles of a few-step sampler.
    silence_threshold_db: float = -45.0
    # Give each frame one initial noise draw for every window it is in, instead of fresh noise per window: the
    # sampler (deterministic for eta 0) then keeps the gesture it began in the lookahead rather than changing its
    # mind every hop, which otherwise shows as restless direction changes.
    consistent_noise: bool = True
    idle_smoothing: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.hop_frames <= self.window_frames:
            raise ValueError(
                f"hop_frames ({self.hop_frames}) must be between 1 and window_frames ({self.window_frames})"
            )
        if not 0 <= self.lookahead_frames <= self.window_frames - self.hop_frames:
            raise ValueError(f"lookahead_frames ({self.lookahead_frames}) must be between 0 and window_frames - "
                             f"hop_frames ({self.window_frames - self.hop_frames})")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if not 0.0 <= self.style_blend <= 1.0:
            raise ValueError(f"style_blend must be in [0, 1], got {self.style_blend}")
        if not 0.0 <= self.smoothing <= 10.0:
            raise ValueError(f"smoothing must be in [0, 10] frames, got {self.smoothing}")
        if not 0.0 <= self.seam_blend <= 30.0:
            raise ValueError(f"seam_blend must be in [0, 30] frames, got {self.seam_blend}")
        if not 0.0 <= self.idle_smoothing <= 10.0:
            raise ValueError(f"idle_smoothing must be in [0, 10] frames, got {self.idle_smoothing}")
        if not -120.0 <= self.silence_threshold_db <= 0.0:
            raise ValueError(f"silence_threshold_db must be in [-120, 0] dBFS, got {self.silence_threshold_db}")


@dataclass
class MotionHop:
    poses: np.ndarray  # (H, pose_dim): radians and metres, the skeleton's degrees of freedom
    first_frame: int  # index of poses[0] since the stream started


def seam_offset(published: torch.Tensor, new: torch.Tensor, time_constant: float) -> torch.Tensor:
    """(B, N, D) offset that makes ``new`` (B, N, D) continue ``published`` (B, K, D) in position, velocity and
    acceleration, then fades out.

    Inertialization (Bollo 2016): the gap between the new frames and the published motion extrapolated one frame
    (position x0, velocity v0, acceleration a0, from finite differences) is decayed to zero over
    T = 3 x time_constant frames by the quintic that starts at (x0, v0, a0) and ends at rest. Matching the
    acceleration too is what keeps jerk at the seam at the level of the rest of the motion.
    """
    last = published[:, -1]  # (B, D)
    velocity = last - published[:, -2] if published.shape[1] > 1 else torch.zeros_like(last)
    accel = last - 2 * published[:, -2] + published[:, -3] if published.shape[1] > 2 else torch.zeros_like(last)
    new_velocity = new[:, 1] - new[:, 0] if new.shape[1] > 1 else velocity
    new_accel = new[:, 2] - 2 * new[:, 1] + new[:, 0] if new.shape[1] > 2 else accel
    x0 = last + velocity + accel - new[:, 0]
    v0 = velocity + accel - new_velocity
    a0 = accel - new_accel
    duration = 3.0 * time_constant
    t = torch.arange(new.shape[1], dtype=new.dtype)[None, :, None].clamp(max=duration)  # (1, N, 1)
    x0, v0, a0 = x0[:, None], v0[:, None], a0[:, None]  # (B, 1, D)
    big_t = duration
    c5 = -(a0 * big_t**2 + 6 * v0 * big_t + 12 * x0) / (2 * big_t**5)
    c4 = (3 * a0 * big_t**2 + 16 * v0 * big_t + 30 * x0) / (2 * big_t**4)
    c3 = -(3 * a0 * big_t**2 + 12 * v0 * big_t + 20 * x0) / (2 * big_t**3)
    return ((((c5 * t + c4) * t + c3) * t + a0 / 2) * t + v0) * t + x0


def check_encoder_fits(model: DiMGestor, encoder: SpeechEncoder) -> None:
    """ValueError unless ``encoder`` gives the features the model was trained on (dimension and frame rate)."""
    if encoder.dim != model.config.speech_dim or encoder.frame_rate != model.config.speech_fps:
        raise ValueError(
            f"speech encoder gives {encoder.dim}-d features at {encoder.frame_rate} fps but the model expects "
            f"{model.config.speech_dim}-d at {model.config.speech_fps} fps"
        )


def smooth_motion(frames: np.ndarray, levels_db: np.ndarray | None, smoothing: float, idle_smoothing: float,
                  silence_threshold_db: float) -> np.ndarray:
    """Gaussian smoothing along time of frames (L, pose_dim): sigma ``smoothing`` where there is speech and
    ``idle_smoothing`` where the frame's level (``levels_db``, (L,) dBFS) is below the threshold, blended over a
    few frames so there is no hard switch at speech edges. ``levels_db`` None: no idle smoothing. Float32 out."""
    smoothed = gaussian_filter1d(frames, smoothing, axis=0, mode="nearest") if smoothing > 0 else frames
    if levels_db is not None and idle_smoothing > smoothing:
        silent = (np.asarray(levels_db) < silence_threshold_db).astype(np.float32)
        weight = gaussian_filter1d(silent, 2.0, mode="nearest")[:, None]  # (L, 1)
        if weight.max() > 0:
            idle = gaussian_filter1d(frames, idle_smoothing, axis=0, mode="nearest")
            smoothed = (1.0 - weight) * smoothed + weight * idle
    return np.ascontiguousarray(smoothed, dtype=np.float32)


def _from_frame(frames: torch.Tensor, first: int, frame: int) -> tuple[torch.Tensor, int]:
    """Drop the frames of ``frames`` (1, n, ...), which start at frame ``first``, that come before ``frame``."""
    return frames[:, max(0, frame - first) :], max(first, frame)


class StreamingGestureGenerator:
    def __init__(self, model: DiMGestor, encoder: SpeechEncoder, config: StreamingConfig | None = None) -> None:
        check_encoder_fits(model, encoder)
        self.model = model.eval()
        self.encoder = encoder
        self.config = config or StreamingConfig()
        self.fps = model.config.motion_fps
        self.fixed_style: torch.Tensor | None = None  # (1, D) a style to blend in, e.g. one extracted from a clip
        self.reset()

    def set_style(self, style: torch.Tensor | np.ndarray | None) -> None:
        """Fix or blend a style (a global fuzzy feature of shape (D,), e.g. from ``style_of`` on another clip);
        ``config.style_blend`` says how much of it replaces the style heard in the speech. None clears it."""
        if style is None:
            self.fixed_style = None
            return
        style = torch.as_tensor(style, dtype=torch.float32).reshape(1, -1)
        if style.shape[1] != self.model.config.d_model:
            raise ValueError(f"a style vector has {self.model.config.d_model} values, got {style.shape[1]}")
        self.fixed_style = style

    def style_of(self, audio: np.ndarray) -> torch.Tensor:
        """The global fuzzy style (D,) of a whole clip: what a speaker 'sounds like' to the model."""
        features = torch.from_numpy(self.encoder.encode(audio))[None]
        with torch.no_grad():
            _, style = self.model.fuzzy(features)
        return style[0]

    def current_style(self) -> torch.Tensor:
        """(1, D) the style the next window is generated with."""
        blend = self.config.style_blend
        if self.fixed_style is None or blend == 0.0:
            return self._style
        return (1.0 - blend) * self._style + blend * self.fixed_style

    def reset(self) -> None:
        """Forget the stream: the next sample pushed is sample 0 again."""
        d = self.model.config.d_model
        self._audio_state = self.encoder.init_state()
        self._fuzzy_state = self.model.fuzzy.init_state(1)
        self._local = torch.zeros(1, 0, d)  # (1, n, D) local features of frames [local_start, local_start + n)
        self._local_start = 0
        self._style = torch.zeros(1, d)
        self._generated = torch.zeros(1, 0, self.model.config.pose_dim)  # normalised, frames [gen_start, emitted)
        self._generated_start = 0
        self.frames_emitted = 0
        self.samples_pushed = 0
        self._loudness = FrameLoudness(self.encoder.sample_rate, self.fps)
        self._rng = torch.Generator().manual_seed(self.config.seed)
        self._noise = torch.zeros(1, 0, self.model.config.pose_dim)  # initial noise of frames [noise_start, ...)
        self._noise_start = 0
        self.feature_state_resets = 0  # times a NaN/inf in the speech features' recurrent state was cleared

    @property
    def frames_available(self) -> int:
        return self._fuzzy_state.motion_frames

    def push(self, audio: np.ndarray) -> list[MotionHop]:
        """Consume mono float32 samples at the encoder's rate; return every hop they complete."""
        self.samples_pushed += len(audio)
        self._loudness.push(audio)
        features, self._audio_state = self.encoder.encode_stream(audio, self._audio_state)
        features_t = torch.from_numpy(features)[None]  # (1, n, speech_dim)
        fuzzy = self.model.fuzzy
        hops = []
        while features_t.shape[1]:
            # Feed speech only up to the frame that completes the next hop, so every hop is generated with the
            # style of exactly the speech before its end, whatever the chunking of the audio (a large chunk must
            # not hand early hops a style computed from later speech).
            hop_end = self.frames_emitted + self.config.hop_frames + self.config.lookahead_frames
            needed = max(1, hop_end * fuzzy.speech_fps // fuzzy.motion_fps - self._fuzzy_state.speech_frames)
            piece, features_t = features_t[:, :needed], features_t[:, needed:]
            with torch.no_grad():
                local, style, state = fuzzy.forward_stream(piece, self._fuzzy_state)
                local, self._style, self._fuzzy_state, cleared = fuzzy.recover_non_finite(local, style, state)
            self.feature_state_resets += int(cleared)
            self._local = torch.cat([self._local, local], dim=1)
            while self.frames_available >= self.frames_emitted + self.config.hop_frames + self.config.lookahead_frames:
                hops.append(self._generate_hop())
        return hops

    def flush(self) -> list[MotionHop]:
        """Finish the stream: pad with silence until motion covers every pushed sample, then trim to it."""
        rate = self.encoder.sample_rate
        target = math.ceil(self.samples_pushed * self.fps / rate)
        pushed = self.samples_pushed
        hops: list[MotionHop] = []
        hop_samples = int(math.ceil(self.config.hop_frames * rate / self.fps))
        while self.frames_emitted < target:
            hops += self.push(np.zeros(hop_samples, dtype=np.float32))
        self.samples_pushed = pushed
        trimmed = []
        for hop in hops:
            keep = target - hop.first_frame
            if keep > 0:
                trimmed.append(MotionHop(hop.poses[:keep], hop.first_frame))
        return trimmed

    def _initial_noise(self, start: int, end: int) -> torch.Tensor:
        """(1, end - start, pose_dim) the sampler's starting noise for frames [start, end), drawn once per frame."""
        missing = end - (self._noise_start + self._noise.shape[1])
        if missing > 0:
            fresh = torch.randn(1, missing, self.model.config.pose_dim, generator=self._rng)
            self._noise = torch.cat([self._noise, fresh], dim=1)
        return self._noise[:, start - self._noise_start : end - self._noise_start]

    def _smooth(self, window: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """Gaussian smoothing along time of window (1, L, pose_dim) covering frames [start, end): `smoothing` where
        there is speech, `idle_smoothing` in silence. Frames before the hop are published and act as context."""
        c = self.config
        levels = None
        if c.idle_smoothing > c.smoothing:
            # The newest frame's audio may be incomplete when its speech features are (up to 2/3 of a speech
            # frame short), so it takes the level of the frame before it: levels must not depend on chunking.
            levels = self._loudness.db(start, end - 1)
            levels = np.append(levels, levels[-1] if len(levels) else -np.inf)  # (L,)
        smoothed = smooth_motion(window[0].numpy(), levels, c.smoothing, c.idle_smoothing, c.silence_threshold_db)
        return torch.from_numpy(smoothed)[None]

    def _generate_hop(self) -> MotionHop:
        c = self.config
        end = self.frames_emitted + c.hop_frames + c.lookahead_frames  # the window's end: the newest frame
        start = max(0, end - c.window_frames)
        local = self._local[:, start - self._local_start : end - self._local_start]  # (1, L, D)
        length = end - start
        known_frames = self.frames_emitted - start
        known = torch.zeros(1, length, self.model.config.pose_dim)
        mask = torch.zeros(1, length, 1, dtype=torch.bool)
        if known_frames > 0:
            known[:, :known_frames] = self._generated[:, start - self._generated_start :]
            mask[:, :known_frames] = True
        window = self.model.sample(
            local,
            self.current_style(),
            steps=c.steps,
            sampler=c.sampler,
            eta=c.eta,
            guidance=c.guidance,
            generator=self._rng,
            initial_noise=self._initial_noise(start, end) if c.consistent_noise else None,
            known=known if known_frames > 0 else None,
            known_mask=mask if known_frames > 0 else None,
        )
        # Smooth first, then blend: the blend matches the new frames' velocity and acceleration, which finite
        # differences of unsmoothed samples would give as noise that no later step could remove at the seam.
        window = self._smooth(window, start, end)
        if c.seam_blend > 0 and known_frames > 0:
            window = window.clone()  # the published frames stay as they are
            # relative to what was published (smoothing changed the window's copy of those frames)
            window[:, known_frames:] += seam_offset(known[:, :known_frames], window[:, known_frames:], c.seam_blend)
        new = window[:, known_frames : known_frames + c.hop_frames]  # (1, hop, pose_dim); the lookahead is dropped
        self._generated = torch.cat([self._generated, new], dim=1)
        first = self.frames_emitted
        self.frames_emitted = first + c.hop_frames
        # Keep only what the next window can reach.
        next_start = max(0, end + c.hop_frames - c.window_frames)
        self._generated, self._generated_start = _from_frame(self._generated, self._generated_start, next_start)
        self._local, self._local_start = _from_frame(self._local, self._local_start, next_start)
        self._noise, self._noise_start = _from_frame(self._noise, self._noise_start, next_start)
        self._loudness.forget_before(next_start)
        poses = self.model.pose_mean + c.amplitude * new[0] * self.model.pose_std  # (hop, pose_dim)
        return MotionHop(poses.numpy().astype(np.float32), first)
