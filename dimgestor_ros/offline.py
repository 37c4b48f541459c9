"""Whole-clip sampling: the motion of a recording sampled in one pass over the clip, not hop by hop.

Why: the streaming generator has to publish every half second, so it samples overlapping 2-s windows and stitches
them. Each seam is where one window's gesture hands over to the next one's, and on the held-out corpus the
motion's speed minima (its beats) gather at the seams, every 0.5 s, whatever the speech says. Offline the whole
clip is known, so the denoiser samples it at once (Mamba-2 scans any length in linear time): there are no seams,
every frame sees the speech on both sides, and it is several times faster. Clips longer than ``segment_frames``
are sampled in segments that continue the previous one's last ``context_frames`` as clean context, the way the
model was trained to continue motion (``context_prob``), so memory stays bounded for the attention baseline too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .diffusion.gaussian import SAMPLERS
from .features.factory import SpeechEncoder, make_speech_encoder
from .model.gesture_model import DiMGestor
from .streaming.generator import check_encoder_fits, seam_offset, smooth_motion
from .streaming.loudness import FrameLoudness


@dataclass
class OfflineConfig:
    steps: int = 8  # sampling steps (network evaluations) per segment
    sampler: str = "ddim"
    eta: float = 0.0
    guidance: float = 1.0  # classifier-free guidance scale (1 = off)
    # Scale of the sampler's starting noise. 1 draws from the learned distribution; below 1 the sample keeps
    # closer to what the speech determines (0: the same motion for the same speech, seed or not), trading
    # diversity for gestures that follow the speech more closely (see the model card's temperature table).
    temperature: float = 1.0
    amplitude: float = 1.0  # scales motion around the mean pose
    smoothing: float = 3.0  # Gaussian sigma in frames where there is speech (as the streaming generator)
    idle_smoothing: float = 5.0  # ... and where the frame is quieter than silence_threshold_db
    silence_threshold_db: float = -45.0
    segment_frames: int = 1800  # the longest stretch sampled in one pass (60 s at 30 fps)
    context_frames: int = 30  # frames of the previous segment a later segment continues
    seam_blend: float = 4.0  # inertialization time constant at segment joins, frames (0: off)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {self.temperature}")
        if not 0.0 <= self.smoothing <= 10.0 or not 0.0 <= self.idle_smoothing <= 10.0:
            raise ValueError(f"smoothing and idle_smoothing must be in [0, 10] frames, got {self.smoothing} and "
                             f"{self.idle_smoothing}")
        if not 1 <= self.context_frames < self.segment_frames:
            raise ValueError(f"context_frames ({self.context_frames}) must be between 1 and segment_frames - 1 "
                             f"({self.segment_frames - 1})")


def sample_clip(audio: np.ndarray, model: DiMGestor, config: OfflineConfig | None = None,
                encoder: SpeechEncoder | None = None) -> np.ndarray:
    """Poses (F, pose_dim) for mono float32 ``audio`` at the encoder's rate, F = ceil(seconds x fps) as the
    streaming generator gives; ``encoder`` defaults to the model's."""
    config = config or OfflineConfig()
    encoder = encoder or make_speech_encoder(model.config.speech_encoder)
    check_encoder_fits(model, encoder)
    model = model.eval()
    fps, rate = model.config.motion_fps, encoder.sample_rate
    frames = math.ceil(len(audio) * fps / rate)
    if frames == 0:
        return np.zeros((0, model.config.pose_dim), np.float32)
    # Silence after the clip, so the speech features cover its last, partial motion frame (as flush() pads).
    covered = math.ceil((frames + 1) * rate / fps) + rate // 10
    padded = np.concatenate([np.asarray(audio, np.float32), np.zeros(max(0, covered - len(audio)), np.float32)])
    loudness = FrameLoudness(rate, fps)
    loudness.push(audio)
    levels = loudness.db(0, frames)  # (F,) frames past the clip's end count as silent
    features = torch.from_numpy(encoder.encode(padded))[None]  # (1, T, speech_dim)

    generator = torch.Generator().manual_seed(config.seed)
    noise = config.temperature * torch.randn(1, frames, model.config.pose_dim, generator=generator)
    fuzzy = model.fuzzy
    state = fuzzy.init_state(1)
    local = torch.zeros(1, 0, model.config.d_model)  # (1, n, D) local features of frames [0, n)
    generated = torch.zeros(1, 0, model.config.pose_dim)  # normalised, frames [0, n)
    while generated.shape[1] < frames:
        done = generated.shape[1]
        start = max(0, done - config.context_frames)
        end = min(frames, start + config.segment_frames)
        # Speech up to the segment's end: its local features, and the style heard by then.
        needed = end * fuzzy.speech_fps // fuzzy.motion_fps + 1 - state.speech_frames
        if local.shape[1] < end and needed > 0:
            with torch.no_grad():
                new_local, style, state = fuzzy.forward_stream(features[:, state.speech_frames:][:, :needed], state)
            local = torch.cat([local, new_local], dim=1)
        known_frames = done - start
        known = mask = None
        if known_frames:
            known = torch.zeros(1, end - start, model.config.pose_dim)
            known[:, :known_frames] = generated[:, start:]
            mask = torch.zeros(1, end - start, 1, dtype=torch.bool)
            mask[:, :known_frames] = True
        segment = model.sample(local[:, start:end], style, steps=config.steps, sampler=config.sampler, eta=config.eta,
                               guidance=config.guidance, generator=generator, initial_noise=noise[:, start:end],
                               known=known, known_mask=mask)
        segment = torch.from_numpy(smooth_motion(segment[0].numpy(), levels[start:end], config.smoothing,
                                                 config.idle_smoothing, config.silence_threshold_db))[None]
        if known_frames and config.seam_blend > 0:
            segment[:, known_frames:] += seam_offset(known[:, :known_frames], segment[:, known_frames:],
                                                     config.seam_blend)
        generated = torch.cat([generated, segment[:, known_frames:]], dim=1)
    poses = model.pose_mean + config.amplitude * generated[0] * model.pose_std  # (F, pose_dim)
    return poses.numpy().astype(np.float32)
