"""Tests for the streaming gesture generator: contiguous hops, exact frame count after flush, independence from
audio chunking, the inpainting window stitch, reset, amplitude, and config/encoder validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dimgestor_ros.audio.io import load_audio
from dimgestor_ros.features.acoustic import AcousticConfig, AcousticFrontEnd
from dimgestor_ros.model.config import MambaSettings, ModelConfig
from dimgestor_ros.model.gesture_model import DiMGestor
from dimgestor_ros.paths import demo_audio_file
from dimgestor_ros.streaming.generator import MotionHop, StreamingConfig, StreamingGestureGenerator, seam_offset

SR = 16000
FPS = 30
WINDOW, HOP = 20, 5


def tiny_config(**overrides) -> ModelConfig:
    kw = dict(d_model=32, n_blocks=1, mamba=MambaSettings(d_state=16, headdim=16, chunk_size=16), pose_dim=63)
    kw.update(overrides)
    return ModelConfig(**kw)


class RecordingDiMGestor(DiMGestor):
    """The real model, also keeping every window it sampled with the known frames it was given."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.calls: list[dict] = []

    def sample(self, local, style, **kwargs):
        window = super().sample(local, style, **kwargs)
        known, mask = kwargs.get("known"), kwargs.get("known_mask")
        noise = kwargs.get("initial_noise")
        self.calls.append(
            dict(
                noise=None if noise is None else noise.clone(),
                window=window.clone(),
                known=None if known is None else known.clone(),
                mask=None if mask is None else mask.clone(),
            )
        )
        return window


def perturbed_model(seed: int = 0, cls=DiMGestor, **overrides) -> DiMGestor:
    """Non-zero final and modulation layers, so motion varies with input and noise (untrained, it is constant),
    and a non-trivial pose normalisation so published poses differ from the normalised windows."""
    torch.manual_seed(seed)
    model = cls(tiny_config(**overrides))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    g = torch.Generator().manual_seed(seed + 100)
    model.set_normalization(torch.randn(63, generator=g) * 0.3, torch.rand(63, generator=g) * 0.5 + 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def encoder() -> AcousticFrontEnd:
    return AcousticFrontEnd()


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """3 s of the shipped speech clip plus an odd tail, so the last hop is partial."""
    return load_audio(demo_audio_file(), SR)[: 3 * SR + 77]


def config(**overrides) -> StreamingConfig:
    kw = dict(window_frames=WINDOW, hop_frames=HOP, steps=2, lookahead_frames=0, smoothing=0.0, seam_blend=0.0,
              idle_smoothing=0.0)
    kw.update(overrides)
    return StreamingConfig(**kw)


def run_stream(generator: StreamingGestureGenerator, audio: np.ndarray, chunk_sizes) -> list[MotionHop]:
    hops, i, k = [], 0, 0
    while i < len(audio):
        n = chunk_sizes[k % len(chunk_sizes)]
        hops += generator.push(audio[i : i + n])
        i += n
        k += 1
    return hops + generator.flush()


def stacked(hops: list[MotionHop]) -> np.ndarray:
    return np.concatenate([hop.poses for hop in hops])


def test_hops_are_contiguous_and_flush_covers_every_pushed_sample(encoder, speech):
    generator = StreamingGestureGenerator(perturbed_model(), encoder, config())
    hops = run_stream(generator, speech, [1600])
    assert hops[0].first_frame == 0
    for previous, hop in zip(hops, hops[1:]):
        assert hop.first_frame == previous.first_frame + len(previous.poses)
    assert all(len(hop.poses) == HOP for hop in hops[:-1]) and 1 <= len(hops[-1].poses) <= HOP
    total = sum(len(hop.poses) for hop in hops)
    assert total == math.ceil(len(speech) * FPS / SR) == 91
    poses = stacked(hops)
    assert poses.shape == (91, 63) and poses.dtype == np.float32 and np.isfinite(poses).all()


@pytest.mark.parametrize("lookahead, samples", [(0, 2560), (3, 4160)])
def test_push_returns_hops_as_soon_as_their_audio_is_in(encoder, speech, lookahead, samples):
    generator = StreamingGestureGenerator(perturbed_model(), encoder, config(lookahead_frames=lookahead))
    # 5 motion frames need floor(5 * 50 / 30) = 8 speech frames = 2560 samples; with 3 frames of lookahead the
    # hop waits for 8 motion frames: 13 speech frames = 4160 samples.
    assert generator.push(speech[: samples - 1]) == []
    hops = generator.push(speech[samples - 1 : samples])
    assert [hop.first_frame for hop in hops] == [0]
    assert generator.frames_emitted == HOP


@pytest.mark.parametrize("samples", [0, 1, 319, 5333, SR])
def test_flush_emits_exactly_ceil_of_pushed_duration(encoder, speech, samples):
    generator = StreamingGestureGenerator(perturbed_model(), encoder, config())
    hops = run_stream(generator, speech[:samples], [997])
    assert sum(len(hop.poses) for hop in hops) == math.ceil(samples * FPS / SR)
    assert generator.flush() == []  # a second flush has nothing left to add


@pytest.mark.parametrize("chunks", [[160], [997], [4097, 13, 320], [3 * SR + 77]])
def test_chunk_size_of_pushed_audio_does_not_change_the_motion(encoder, speech, chunks):
    reference = stacked(run_stream(StreamingGestureGenerator(perturbed_model(), encoder, config()), speech, [1600]))
    poses = stacked(run_stream(StreamingGestureGenerator(perturbed_model(), encoder, config()), speech, chunks))
    assert poses.shape == reference.shape
    # Identical up to float32 rounding: the FFT of differently sized frame batches differs by ~5e-7 in the
    # features. A hop given the style of different speech (e.g. all of it when pushed at once) differs by ~0.1.
    np.testing.assert_allclose(poses, reference, rtol=0, atol=1e-4)


@pytest.mark.parametrize("lookahead, smoothing", [(0, 0.0), (3, 0.0), (3, 1.5)])
def test_window_stitch_pins_published_frames_and_never_changes_them(encoder, speech, lookahead, smoothing):
    from scipy.ndimage import gaussian_filter1d

    model = perturbed_model(cls=RecordingDiMGestor)
    generator = StreamingGestureGenerator(model, encoder, config(lookahead_frames=lookahead, smoothing=smoothing))
    hops, published_copies = [], []
    for i in range(0, len(speech), 1234):
        for hop in generator.push(speech[i : i + 1234]):
            hops.append(hop)
            published_copies.append(hop.poses.copy())
    assert len(model.calls) == len(hops) >= 15

    # Frames published in a hop are never changed afterwards.
    for hop, copy in zip(hops, published_copies):
        np.testing.assert_array_equal(hop.poses, copy)

    timeline = torch.zeros(len(hops) * HOP, 63)  # normalised motion of every published frame
    for i, call in enumerate(model.calls):
        emitted, end = i * HOP, (i + 1) * HOP + lookahead  # the window ends `lookahead` frames after the hop
        start = max(0, end - WINDOW)
        known_frames = emitted - start
        window = call["window"][0]
        assert window.shape == (end - start, 63)
        if known_frames == 0:
            assert call["known"] is None and call["mask"] is None
        else:
            # The overlap is pinned to exactly the frames published before, and only the overlap.
            mask = call["mask"][0, :, 0]
            assert mask[:known_frames].all() and not mask[known_frames:].any()
            torch.testing.assert_close(call["known"][0, :known_frames], timeline[start:emitted], rtol=0, atol=0)
            torch.testing.assert_close(window[:known_frames], timeline[start:emitted], rtol=0, atol=0)
        if smoothing:
            # Smoothed along time over the whole window: published frames before the hop are its left context.
            window = torch.from_numpy(gaussian_filter1d(window.numpy(), smoothing, axis=0, mode="nearest"))
        new = window[known_frames : known_frames + HOP]  # the lookahead frames are not published
        timeline[emitted : emitted + HOP] = new
        # What was published is the window's new frames, denormalised.
        expected = (model.pose_mean + new * model.pose_std).numpy()
        np.testing.assert_allclose(hops[i].poses, expected, rtol=0, atol=1e-6)


def test_reset_replays_the_same_motion_and_seed_changes_it(encoder, speech):
    audio = speech[: SR + 500]
    generator = StreamingGestureGenerator(perturbed_model(), encoder, config(seed=1))
    first = stacked(run_stream(generator, audio, [1600]))
    generator.reset()
    assert generator.frames_emitted == 0 and generator.samples_pushed == 0
    again = stacked(run_stream(generator, audio, [1600]))
    np.testing.assert_array_equal(again, first)
    other = stacked(run_stream(StreamingGestureGenerator(perturbed_model(), encoder, config(seed=2)), audio, [1600]))
    assert np.abs(other - first).mean() > 1e-2


@pytest.mark.reliability("fault", "NaN in the speech features' recurrent state (forced)",
                         "the state restarts from zero, counted in feature_state_resets; the motion is finite again "
                         "from the next chunk")
def test_nan_in_the_feature_state_is_cleared_instead_of_holding_the_stream_for_ever(encoder, speech):
    """A NaN that reaches the fuzzy extractor's Mamba-2 state would stay there for the rest of the stream (every
    later window NaN, the node holding its pose for ever). One chunk's local mixer output is forced to NaN: that
    chunk's frames may be lost, but the state is restarted and the stream's later motion is finite."""
    model = perturbed_model()
    calls = {"n": 0}

    def poison(module, inputs, output):
        calls["n"] += 1
        if calls["n"] == 3:  # the third chunk: the stream is under way
            y, state = output
            return y, type(state)(torch.full_like(state.conv_state, float("nan")),
                                  torch.full_like(state.ssm_state, float("nan")))
        return None

    handle = model.fuzzy.local_mixer.register_forward_hook(poison)
    generator = StreamingGestureGenerator(model, encoder, config())
    try:
        motion = stacked(run_stream(generator, speech, [1600]))
    finally:
        handle.remove()
    assert calls["n"] > 6
    assert generator.feature_state_resets == 1
    assert np.isfinite(motion).all()  # the state's NaN never reached a feature: it was cleared on arrival
    clean = stacked(run_stream(StreamingGestureGenerator(perturbed_model(), encoder, config()), speech, [1600]))
    assert motion.shape == clean.shape
    assert np.abs(motion - clean).max() > 0  # the restart did change what followed (the state really was reset)


def test_amplitude_scales_motion_around_the_mean_pose(encoder, speech):
    audio = speech[:SR]
    model = perturbed_model()
    mean = model.pose_mean.numpy()
    base = stacked(run_stream(StreamingGestureGenerator(model, encoder, config(amplitude=1.0)), audio, [1600]))
    half = stacked(run_stream(StreamingGestureGenerator(model, encoder, config(amplitude=0.5)), audio, [1600]))
    still = stacked(run_stream(StreamingGestureGenerator(model, encoder, config(amplitude=0.0)), audio, [1600]))
    np.testing.assert_allclose(half - mean, 0.5 * (base - mean), rtol=0, atol=1e-5)
    np.testing.assert_allclose(still, np.broadcast_to(mean, still.shape), rtol=0, atol=1e-6)
    assert np.abs(base - mean).mean() > 1e-2


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(window_frames=10, hop_frames=11), "hop_frames"),
        (dict(window_frames=10, hop_frames=0), "hop_frames"),
        (dict(steps=0), "steps"),
        (dict(steps=-3), "steps"),
        (dict(window_frames=20, hop_frames=15, lookahead_frames=6), "lookahead_frames"),
        (dict(lookahead_frames=-1), "lookahead_frames"),
        (dict(smoothing=-0.5), "smoothing"),
    ],
)
def test_bad_streaming_config_is_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StreamingConfig(**kwargs)


def test_hop_equal_to_window_is_allowed_and_streams(encoder, speech):
    generator = StreamingGestureGenerator(perturbed_model(), encoder, config(window_frames=HOP, hop_frames=HOP))
    hops = run_stream(generator, speech[:SR], [1600])
    assert sum(len(hop.poses) for hop in hops) == FPS


def test_encoder_feature_size_mismatch_is_rejected(encoder):
    model = DiMGestor(tiny_config(speech_dim=40))
    with pytest.raises(ValueError, match="43-d"):
        StreamingGestureGenerator(model, encoder)


def test_encoder_frame_rate_mismatch_is_rejected():
    model = DiMGestor(tiny_config())
    encoder = AcousticFrontEnd(AcousticConfig(hop_length=160))  # 100 fps
    with pytest.raises(ValueError, match="100"):
        StreamingGestureGenerator(model, encoder)


def _style_test_generator():
    torch.manual_seed(0)
    model = DiMGestor(ModelConfig(d_model=32, n_blocks=1, mamba=MambaSettings(d_state=16, headdim=16, chunk_size=16)))
    for parameter in model.parameters():
        parameter.data += 0.05 * torch.randn_like(parameter)
    generator = StreamingGestureGenerator(model, AcousticFrontEnd(), StreamingConfig(window_frames=30, hop_frames=15,
                                                                                        steps=2))
    t = np.arange(16000) / 16000
    calm = (0.05 * np.sin(2 * np.pi * 120 * t)).astype(np.float32)
    lively = (0.6 * np.sin(2 * np.pi * 240 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    return generator, calm, lively


def test_style_blend_interpolates_between_heard_and_fixed_style():
    generator, calm, lively = _style_test_generator()
    fixed = generator.style_of(lively)
    generator.push(calm)
    heard = generator.current_style().clone()
    generator.set_style(fixed)
    for blend, expected in ((0.0, heard[0]), (1.0, fixed), (0.25, 0.75 * heard[0] + 0.25 * fixed)):
        generator.config.style_blend = blend
        torch.testing.assert_close(generator.current_style()[0], expected)
    assert (fixed - heard[0]).abs().max() > 1e-3  # the two clips really sound different to the model


def test_fixed_style_changes_the_generated_motion():
    generator, calm, lively = _style_test_generator()
    plain = np.concatenate([h.poses for h in generator.push(calm)])
    generator.reset()
    generator.set_style(generator.style_of(lively) * 5.0)
    generator.config.style_blend = 1.0
    styled = np.concatenate([h.poses for h in generator.push(calm)])
    assert plain.shape == styled.shape
    assert np.abs(plain - styled).max() > 1e-4


def test_style_of_the_wrong_size_is_refused():
    generator, _, _ = _style_test_generator()
    with pytest.raises(ValueError, match="style vector has 32 values"):
        generator.set_style(torch.zeros(7))


def test_smoothing_removes_jitter_without_a_seam(encoder, speech):
    def jerk(poses: np.ndarray) -> np.ndarray:
        return np.abs(np.diff(poses, n=3, axis=0)).mean(axis=1)  # (F - 3,)

    raw = stacked(run_stream(StreamingGestureGenerator(perturbed_model(), encoder, config()), speech, [1600]))
    smooth = stacked(run_stream(StreamingGestureGenerator(perturbed_model(), encoder, config(smoothing=2.0)), speech,
                                [1600]))
    assert jerk(smooth).mean() < 0.25 * jerk(raw).mean()
    seams = [s - 3 + k for s in range(HOP, len(smooth) - HOP, HOP) for k in range(3)]  # stencils across a seam
    assert jerk(smooth)[seams].mean() < 2.0 * jerk(smooth).mean()


def test_silence_is_calmer_with_idle_smoothing_and_sound_is_untouched(encoder):
    silence = np.zeros(SR, np.float32)
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(SR) / SR)).astype(np.float32)  # -13 dBFS throughout

    def motion(audio: np.ndarray, **overrides) -> np.ndarray:
        generator = StreamingGestureGenerator(perturbed_model(), encoder, config(
            window_frames=30, hop_frames=15, smoothing=1.0, seam_blend=3.0, **overrides))
        return stacked(run_stream(generator, audio, [1600]))

    def wiggle(poses: np.ndarray) -> float:
        return float(np.abs(np.diff(poses, n=2, axis=0)).mean())

    plain, idle = motion(silence, idle_smoothing=0.0), motion(silence, idle_smoothing=5.0)
    assert wiggle(idle[:15]) < 0.3 * wiggle(plain[:15])  # the first hop (no seam in it): far calmer
    # Above the silence threshold the idle smoothing is not used at all.
    np.testing.assert_array_equal(motion(tone, idle_smoothing=5.0), motion(tone, idle_smoothing=0.0))


def test_seam_offset_continues_position_and_velocity_then_fades():
    published = torch.tensor([[[0.0], [1.0], [2.0]]])  # (1, 3, 1) moving +1 per frame
    new = torch.full((1, 40, 1), 10.0)  # a jump to a standstill at 10
    blended = new + seam_offset(published, new, time_constant=4.0)
    assert float(blended[0, 0, 0]) == pytest.approx(3.0)  # where the published motion was heading
    assert float(blended[0, 1, 0] - blended[0, 0, 0]) == pytest.approx(1.0, abs=0.05)  # with its velocity
    assert float(blended[0, -1, 0]) == pytest.approx(10.0, abs=0.01)  # and then the new motion
    steps = blended[0, 1:, 0] - blended[0, :-1, 0]
    assert (steps.abs() < 1.5).all()  # no jump anywhere


class StaircaseDiMGestor(DiMGestor):
    """The real model whose windows are replaced by a constant level that rises by 1 per window: the worst seams
    a sampler could produce (a jump at every hop), to see what the generator's stitching makes of them."""

    def sample(self, local, style, **kwargs):
        self.windows = getattr(self, "windows", 0) + 1
        window = torch.full((1, local.shape[1], self.config.pose_dim), float(self.windows))
        known, mask = kwargs.get("known"), kwargs.get("known_mask")
        return window if known is None else torch.where(mask, known, window)


def test_seam_blend_turns_jumps_between_windows_into_smooth_transitions(encoder, speech):
    def largest_step(blend: float) -> float:
        model = perturbed_model(cls=StaircaseDiMGestor)
        model.set_normalization(torch.zeros(63), torch.ones(63))
        generator = StreamingGestureGenerator(model, encoder, config(seam_blend=blend))
        poses = stacked(run_stream(generator, speech, [1600]))
        return float(np.abs(np.diff(poses[:, 0])).max())

    assert largest_step(0.0) == pytest.approx(1.0)  # unblended: the full jump at every seam
    assert largest_step(3.0) < 0.45  # blended: spread over several frames


@pytest.mark.parametrize("consistent", [True, False])
def test_each_frame_keeps_its_initial_noise_in_every_window_it_is_in(encoder, speech, consistent):
    model = perturbed_model(cls=RecordingDiMGestor)
    generator = StreamingGestureGenerator(model, encoder, config(lookahead_frames=3, consistent_noise=consistent))
    run_stream(generator, speech, [1600])
    if not consistent:
        assert all(call["noise"] is None for call in model.calls)
        return
    by_frame: dict[int, torch.Tensor] = {}
    for i, call in enumerate(model.calls):
        end = (i + 1) * HOP + 3
        start = max(0, end - WINDOW)
        assert call["noise"].shape == (1, end - start, 63)
        for k in range(end - start):
            frame = start + k
            if frame in by_frame:
                torch.testing.assert_close(call["noise"][0, k], by_frame[frame], rtol=0, atol=0)
            by_frame[frame] = call["noise"][0, k]
    assert len(by_frame) > 3 * WINDOW
