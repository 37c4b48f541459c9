"""Tests for the fuzzy feature extractor: chunk-fed streaming equals one pass, the motion frame count, and the
pooling of speech frames into motion frames (every speech frame lands in exactly one motion frame)."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import pytest
import torch

from dimgestor_ros.model.config import MambaSettings, ModelConfig
from dimgestor_ros.model.gesture_model import DiMGestor

TOL = 1e-5


def tiny_config(**overrides) -> ModelConfig:
    kw = dict(d_model=32, n_blocks=1, mamba=MambaSettings(d_state=16, headdim=16, chunk_size=16), pose_dim=63)
    kw.update(overrides)
    return ModelConfig(**kw)


def make_fuzzy(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return DiMGestor(tiny_config(**overrides)).fuzzy.eval()


def stream(fuzzy, speech: torch.Tensor, sizes: list[int]):
    state = fuzzy.init_state(speech.shape[0])
    locals_, styles, i, k = [], [], 0, 0
    while i < speech.shape[1]:
        n = sizes[k % len(sizes)]
        local, style, state = fuzzy.forward_stream(speech[:, i : i + n], state)
        locals_.append(local)
        styles.append(style)
        i += n
        k += 1
    return torch.cat(locals_, dim=1), styles, state


def expected_motion_frames(speech_frames: int, speech_fps: int, motion_fps: int) -> int:
    """Motion frames m whose speech span [floor(m r), floor((m + 1) r)) is complete, r = speech/motion, exactly."""
    r = Fraction(speech_fps, motion_fps)
    m = 0
    while int((m + 1) * r) <= speech_frames:  # int() floors a non-negative Fraction
        m += 1
    return m


@torch.no_grad()
@pytest.mark.parametrize("sizes", [[1], [7], [16], [3, 1, 16, 5, 31], [200]])
def test_chunk_fed_stream_equals_one_pass(sizes):
    fuzzy = make_fuzzy()
    speech = torch.randn(2, 137, 43, generator=torch.Generator().manual_seed(1))
    local, style = fuzzy(speech)
    streamed, styles, state = stream(fuzzy, speech, sizes)
    assert streamed.shape == local.shape == (2, fuzzy.motion_frames_for(137), 32)
    torch.testing.assert_close(streamed, local, rtol=0, atol=TOL)
    torch.testing.assert_close(styles[-1], style, rtol=0, atol=TOL)
    assert state.speech_frames == 137 and state.motion_frames == local.shape[1]


@torch.no_grad()
def test_style_after_each_chunk_equals_one_pass_over_the_speech_so_far():
    fuzzy = make_fuzzy()
    speech = torch.randn(1, 60, 43, generator=torch.Generator().manual_seed(2))
    _, styles, _ = stream(fuzzy, speech, [10])
    for k, style in enumerate(styles):
        _, expected = fuzzy(speech[:, : 10 * (k + 1)])
        torch.testing.assert_close(style, expected, rtol=0, atol=TOL)


@torch.no_grad()
def test_style_is_causal_and_tracks_later_speech():
    fuzzy = make_fuzzy()
    g = torch.Generator().manual_seed(3)
    speech = torch.randn(1, 100, 43, generator=g)
    changed = speech.clone()
    changed[:, 50:] = torch.randn(1, 50, 43, generator=g) * 3
    local_a, _ = fuzzy(speech)
    local_b, _ = fuzzy(changed)
    first = fuzzy.motion_frames_for(50)  # motion frames built only from speech frames < 50
    torch.testing.assert_close(local_a[:, :first], local_b[:, :first], rtol=0, atol=0)
    assert (local_a[:, first:] - local_b[:, first:]).abs().max() > 1e-2
    assert (fuzzy(speech)[1] - fuzzy(changed)[1]).abs().max() > 1e-3


def test_50_speech_frames_make_30_motion_frames():
    fuzzy = make_fuzzy()
    assert fuzzy.motion_frames_for(50) == 30
    with torch.no_grad():
        local, _ = fuzzy(torch.randn(1, 50, 43))
    assert local.shape[1] == 30


@pytest.mark.parametrize("speech_fps,motion_fps", [(50, 30), (50, 25), (50, 50), (60, 25), (50, 20)])
def test_motion_frame_count_matches_complete_speech_spans(speech_fps, motion_fps):
    fuzzy = make_fuzzy(speech_fps=speech_fps, motion_fps=motion_fps)
    for s in range(0, 160):
        assert fuzzy.motion_frames_for(s) == expected_motion_frames(s, speech_fps, motion_fps), s
    with torch.no_grad():
        local, _ = fuzzy(torch.randn(1, 97, 43))
    assert local.shape[1] == fuzzy.motion_frames_for(97)


@pytest.mark.parametrize("speech_fps,motion_fps", [(50, 30), (50, 25), (60, 25), (50, 50)])
@pytest.mark.parametrize("sizes", [[1], [4, 9, 2], [113]])
def test_pooling_averages_each_speech_frame_into_exactly_one_motion_frame(speech_fps, motion_fps, sizes):
    """Feed one-hot 'local features' (speech frame j -> unit vector j) through the pooling as the stream does:
    motion frame m must be the mean of exactly the speech frames [floor(m r), floor((m + 1) r))."""
    fuzzy = make_fuzzy(speech_fps=speech_fps, motion_fps=motion_fps)
    total = 113
    onehot = torch.eye(total)[None]  # (1, S, S)
    state = dataclasses.replace(fuzzy.init_state(1), pending=torch.zeros(1, 0, total))
    pooled, i, k = [], 0, 0
    while i < total:
        n = min(sizes[k % len(sizes)], total - i)
        motion, pending, motion_frames = fuzzy._pool_to_motion_rate(onehot[:, i : i + n], state)
        assert motion.shape[1] == motion_frames - state.motion_frames
        state = dataclasses.replace(
            state, pending=pending, speech_frames=state.speech_frames + n, motion_frames=motion_frames
        )
        pooled.append(motion)
        i += n
        k += 1
    pooled = torch.cat(pooled, dim=1)[0]  # (M, S)
    r = Fraction(speech_fps, motion_fps)
    m_total = expected_motion_frames(total, speech_fps, motion_fps)
    assert pooled.shape == (m_total, total)
    for m in range(m_total):
        lo, hi = int(m * r), int((m + 1) * r)
        expected = torch.zeros(total)
        expected[lo:hi] = 1.0 / (hi - lo)
        torch.testing.assert_close(pooled[m], expected, rtol=0, atol=1e-6)
    used = (pooled > 0).sum(dim=0)
    end = int(m_total * r)
    assert (used[:end] == 1).all()  # every completed speech frame counted once
    assert (used[end:] == 0).all()  # the rest waits in `pending` for the next motion frame
    assert state.pending.shape[1] == total - end
