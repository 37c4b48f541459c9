"""Tests for Gaussian diffusion and DiM-Gestor sampling: schedules, the x0/eps parameterisations, DDIM shape,
finiteness and seeding, inpainting of known frames, and that the full model actually learns (both backbones)."""

from __future__ import annotations

import math

import pytest
import torch

from dimgestor_ros.diffusion.gaussian import GaussianDiffusion, make_betas
from dimgestor_ros.model.config import DiffusionConfig, MambaSettings, ModelConfig
from dimgestor_ros.model.gesture_model import DiMGestor

SPEECH_FRAMES = 50  # -> 30 motion frames


def tiny_config(**overrides) -> ModelConfig:
    kw = dict(d_model=32, n_blocks=1, mamba=MambaSettings(d_state=16, headdim=16, chunk_size=16), pose_dim=63)
    kw.update(overrides)
    return ModelConfig(**kw)


def perturbed_model(seed: int = 0, **overrides) -> DiMGestor:
    """A model whose zero-initialised layers (final projection, AdaLN modulation) are not zero, so its output
    depends on its input like a trained model's; untrained, an x0 model returns a constant."""
    torch.manual_seed(seed)
    model = DiMGestor(tiny_config(**overrides))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model.eval()


def condition(model: DiMGestor, batch: int = 2, seed: int = 1):
    speech = torch.randn(batch, SPEECH_FRAMES, 43, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.fuzzy(speech)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_schedule_gives_decreasing_alpha_bar_from_one_towards_zero(schedule):
    config = DiffusionConfig(schedule=schedule)
    betas = make_betas(config)
    assert betas.shape == (config.num_train_steps,)
    assert ((betas > 0) & (betas < 1)).all()
    abar = GaussianDiffusion(config).alphas_cumprod
    assert (abar[1:] < abar[:-1]).all()
    assert abar[0] > 0.999 and abar[-1] < 1e-3


@pytest.mark.parametrize("prediction", ["x0", "eps"])
def test_split_prediction_recovers_x0_and_noise_from_the_target(prediction):
    diffusion = GaussianDiffusion(DiffusionConfig(prediction=prediction))
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 10, 5, generator=g)
    noise = torch.randn(3, 10, 5, generator=g)
    t = torch.tensor([0, 400, 900])
    x_t = diffusion.q_sample(x0, t, noise)
    got_x0, got_eps = diffusion.split_prediction(x0 if prediction == "x0" else noise, x_t, t)
    torch.testing.assert_close(got_x0, x0, rtol=0, atol=2e-3)
    torch.testing.assert_close(got_eps, noise, rtol=0, atol=2e-3)


def test_invalid_schedule_or_prediction_is_rejected():
    with pytest.raises(ValueError, match="schedule"):
        DiffusionConfig(schedule="quadratic")
    with pytest.raises(ValueError, match="prediction"):
        DiffusionConfig(prediction="v")


@pytest.mark.parametrize("prediction", ["x0", "eps"])
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("steps", [1, 4])
def test_ddim_returns_finite_motion_of_the_window_shape(prediction, schedule, steps):
    model = perturbed_model(diffusion=DiffusionConfig(prediction=prediction, schedule=schedule))
    local, style = condition(model)
    out = model.sample(local, style, steps=steps, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, local.shape[1], 63)
    assert torch.isfinite(out).all()


def test_ddim_rejects_zero_steps():
    model = perturbed_model()
    local, style = condition(model)
    with pytest.raises(ValueError, match="steps"):
        model.sample(local, style, steps=0)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_same_seed_gives_identical_motion_and_another_seed_different(eta):
    model = perturbed_model()
    local, style = condition(model)

    def run(seed):
        return model.sample(local, style, steps=4, eta=eta, generator=torch.Generator().manual_seed(seed))

    a, b, c = run(7), run(7), run(8)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (a - c).abs().mean() > 1e-2


def test_motion_depends_on_the_speech_condition():
    model = perturbed_model()
    local_a, style_a = condition(model, seed=1)
    local_b, style_b = condition(model, seed=2)
    a = model.sample(local_a, style_a, steps=4, generator=torch.Generator().manual_seed(0))
    b = model.sample(local_b, style_b, steps=4, generator=torch.Generator().manual_seed(0))
    assert (a - b).abs().mean() > 1e-2


def test_guidance_scale_changes_the_sample_and_one_is_plain_conditioning():
    model = perturbed_model()
    local, style = condition(model)

    def run(guidance):
        return model.sample(local, style, steps=3, guidance=guidance, generator=torch.Generator().manual_seed(0))

    assert torch.isfinite(run(2.5)).all()
    assert (run(2.5) - run(1.0)).abs().mean() > 1e-3


@pytest.mark.parametrize("prediction", ["x0", "eps"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_inpainting_returns_known_frames_exactly(prediction, eta):
    model = perturbed_model(diffusion=DiffusionConfig(prediction=prediction))
    local, style = condition(model)
    g = torch.Generator().manual_seed(3)
    length = local.shape[1]
    known = torch.randn(2, length, 63, generator=g)
    mask = torch.zeros(2, length, 1, dtype=torch.bool)
    mask[0, :12] = True  # a prefix, as the streaming window stitch uses
    mask[1, 5:9] = True  # and an arbitrary span
    mask[1, 20] = True
    out = model.sample(local, style, steps=4, eta=eta, generator=g, known=known, known_mask=mask)
    m = mask.expand_as(out)
    torch.testing.assert_close(out[m], known[m], rtol=0, atol=0)
    assert (out[~m] - known[~m]).abs().mean() > 0.1  # free frames are generated, not copied


def tiny_dataset(batch: int = 4, seed: int = 0):
    """Speech features and normalised motion that is a fixed smooth function of the speech at the motion rate."""
    g = torch.Generator().manual_seed(seed)
    speech = torch.randn(batch, SPEECH_FRAMES, 43, generator=g).cumsum(dim=1) / 5
    weight = torch.randn(43, 63, generator=g) / math.sqrt(43)
    motion_frames = 30
    index = torch.arange(motion_frames) * SPEECH_FRAMES // motion_frames  # speech frame at each motion frame
    motion = torch.tanh(speech[:, index] @ weight)
    motion = (motion - motion.mean(dim=(0, 1))) / motion.std(dim=(0, 1))
    return motion, speech


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backbone", ["mamba2", "transformer"])
def test_training_lowers_the_denoising_loss_tenfold(backbone):
    torch.manual_seed(0)
    model = DiMGestor(tiny_config(backbone=backbone, diffusion=DiffusionConfig(cond_drop_prob=0.0)))
    motion, speech = tiny_dataset()

    def held_out_loss() -> float:
        # Fixed diffusion steps and noise that training never draws (training uses seeds 0..199).
        with torch.no_grad():
            return sum(
                model.training_loss(motion, speech, torch.Generator().manual_seed(10_000 + i)).item() for i in range(8)
            ) / 8

    before = held_out_loss()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(200):
        loss = model.training_loss(motion, speech, torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    after = held_out_loss()
    # Measured on CPU: about 0.99 -> 0.023 (mamba2) and 0.99 -> 0.036 (transformer).
    assert after < before / 10, (before, after)


@pytest.mark.parametrize("prediction", ["x0", "eps"])
def test_context_sampling_gives_known_frames_clean_at_timestep_zero(prediction):
    diffusion = GaussianDiffusion(DiffusionConfig(prediction=prediction))
    g = torch.Generator().manual_seed(4)
    known = torch.randn(2, 10, 3, generator=g)
    mask = torch.zeros(2, 10, 1, dtype=torch.bool)
    mask[:, :4] = True
    seen = []

    def denoise(x_t, t):
        seen.append((x_t.clone(), t.clone()))
        return torch.zeros_like(x_t)

    out = diffusion.sample(denoise, (2, 10, 3), steps=3, generator=g, known=known, known_mask=mask, context=True)
    assert len(seen) == 3
    for x_t, t in seen:
        assert t.shape == (2, 10)  # per-token timesteps
        assert (t[:, :4] == 0).all() and (t[:, 4:] > 0).all() or (t == 0).all()
        torch.testing.assert_close(x_t[:, :4], known[:, :4], rtol=0, atol=0)  # clean, not noised
    assert (seen[0][1][:, 4:] == 999).all()
    torch.testing.assert_close(out[:, :4], known[:, :4], rtol=0, atol=0)


def test_context_training_leaves_known_frames_out_of_the_loss_and_gives_them_clean():
    diffusion = GaussianDiffusion(DiffusionConfig(context_prob=1.0))
    x0 = torch.randn(8, 12, 3, generator=torch.Generator().manual_seed(5))
    calls = []

    def perfect_on_free_frames(x_t, t):
        calls.append((x_t, t))
        known = (t == 0)[..., None] & (x_t == x0)  # frames given clean at step 0
        return torch.where(known, x_t + 100.0, x0)  # wildly wrong where known, exact where free

    loss = diffusion.training_loss(perfect_on_free_frames, x0, torch.Generator().manual_seed(6))
    assert float(loss) == 0.0
    x_t, t = calls[0]
    assert t.shape == (8, 12)
    prefix = (t == 0).sum(dim=1)
    assert ((prefix >= 1) & (prefix <= 11)).all()  # every window got a context of 1 .. L-1 frames
    for b in range(8):
        k = int(prefix[b])
        torch.testing.assert_close(x_t[b, :k], x0[b, :k], rtol=0, atol=0)


def test_velocity_loss_punishes_jitter_but_not_a_constant_offset():
    x0 = torch.randn(4, 16, 3, generator=torch.Generator().manual_seed(7)).cumsum(dim=1)
    jitter = 0.1 * (-1.0) ** torch.arange(16)[None, :, None]  # (1, 16, 1) frame-to-frame alternation
    offset = torch.full_like(x0, 0.1)
    plain = GaussianDiffusion(DiffusionConfig(velocity_weight=0.0))
    weighted = GaussianDiffusion(DiffusionConfig(velocity_weight=2.0))

    def loss(diffusion, error):
        return float(diffusion.training_loss(lambda x_t, t: x0 + error, x0, torch.Generator().manual_seed(8)))

    assert loss(plain, offset) == pytest.approx(0.01) and loss(weighted, offset) == pytest.approx(0.01)
    # jitter of +-0.1 has frame differences of +-0.2: velocity error 0.04, weighted by 2.
    assert loss(plain, jitter) == pytest.approx(0.01) and loss(weighted, jitter) == pytest.approx(0.01 + 2 * 0.04)


def test_initial_noise_replaces_the_first_draw_and_must_fit_the_shape():
    model = perturbed_model()
    local, style = condition(model)
    shape = (2, local.shape[1], 63)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(9))
    drawn = model.sample(local, style, steps=4, generator=torch.Generator().manual_seed(9))
    given = model.sample(local, style, steps=4, initial_noise=noise)
    torch.testing.assert_close(given, drawn, rtol=0, atol=0)  # DDIM (eta 0) is a function of its first draw
    with pytest.raises(ValueError, match="initial_noise has shape"):
        model.sample(local, style, steps=4, initial_noise=noise[:, :-1])


def test_guidance_batches_both_passes_into_one_network_call():
    model = perturbed_model()
    local, style = condition(model)
    calls = []
    model.denoiser.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    model.sample(local, style, steps=3, guidance=2.0, generator=torch.Generator().manual_seed(1))
    assert calls == [4, 4, 4]  # batch 2, conditioned and unconditioned together, once per step
