"""FGSM threat models on tiny MLPs trained on a synthetic two-class image problem."""

import copy

import pytest
import torch
import torch.nn.functional as F
from _devices import needs_cuda
from torch import nn

from sgmcmc_paper.analysis.attacks import (
    THREAT_MODELS,
    adversarial_predictive,
    adversarial_probs,
    attack,
    fgsm,
    fgsm_predictive,
)

EPS = 0.3
SIDE = 4  # 4x4 one-channel "images"


def two_class_images(n, generator):
    """Pixels ~ N(0.4 or 0.6, 0.15²) clipped to [0, 1]: class means differ by 0.1 per pixel, so
    the Bayes classifier is ≈99.9% accurate (Φ(0.1·4/0.15)), while an L∞ move of 0.3 per pixel
    carries any image well past the other class's mean."""
    y = torch.randint(0, 2, (n,), generator=generator)
    mean = 0.4 + 0.2 * y.float()
    noise = 0.15 * torch.randn(n, 1, SIDE, SIDE, generator=generator)
    return (mean[:, None, None, None] + noise).clamp(0, 1), y


def train_mlp(seed):
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 32), nn.ReLU(), nn.Linear(32, 2))
    x, y = two_class_images(2000, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return model.eval()


@pytest.fixture(scope="module")
def models():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: thread hand-offs cost more than they save
    try:
        return [train_mlp(seed) for seed in range(3)]
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def test_set():
    return two_class_images(1000, torch.Generator().manual_seed(100))


def accuracy(probs, y):
    return (probs.argmax(dim=1) == y).float().mean().item()


def test_perturbation_is_within_eps_and_clipped_where_required(models, test_set):
    x, y = test_set
    for threat_model in ("as_released", "per_sample"):
        x_adv = attack(models[0], x, y, threat_model, EPS)
        assert (x_adv - x).abs().max() <= EPS + 1e-6
    x_released = attack(models[0], x, y, "as_released", EPS)
    # No clipping as released: every pixel with a non-zero gradient moves by exactly eps, and
    # some leave [0, 1].
    moved = (x_released - x).abs()
    assert (
        torch.all((moved < 1e-6) | ((moved - EPS).abs() < 1e-6))
        and (moved > 0).float().mean() > 0.9
    )
    assert x_released.min() < 0 or x_released.max() > 1
    for x_adv in (attack(models[0], x, y, "per_sample", EPS), fgsm_predictive(models, x, y, EPS)):
        assert x_adv.min() >= 0 and x_adv.max() <= 1
        assert (x_adv - x).abs().max() <= EPS + 1e-6


def test_trained_model_accuracy_collapses(models, test_set):
    x, y = test_set
    with torch.no_grad():
        clean = accuracy(F.softmax(models[0](x), dim=1), y)
    assert clean > 0.95  # Bayes accuracy ≈ 0.999 (two_class_images)
    for threat_model in THREAT_MODELS:
        adversarial = accuracy(adversarial_predictive(models, x, y, threat_model, EPS), y)
        assert adversarial < 0.1, threat_model  # 0.3 per pixel crosses the 0.1 class gap


def test_predictive_equals_per_sample_with_one_sample(models, test_set):
    x, y = test_set
    assert torch.equal(
        fgsm_predictive(models[:1], x, y, EPS), fgsm(models[0], x, EPS, y=y, clip=True)
    )
    assert torch.equal(
        adversarial_predictive(models[:1], x, y, "predictive", EPS),
        adversarial_predictive(models[:1], x, y, "per_sample", EPS),
    )


def test_predictive_gradient_matches_autograd_through_the_average(models, test_set):
    x, y = test_set
    x_req = x.clone().requires_grad_(True)
    mean_probs = torch.stack([F.softmax(m(x_req), dim=1) for m in models]).mean(dim=0)
    loss = -torch.log(mean_probs.gather(1, y[:, None])).sum()
    (grad,) = torch.autograd.grad(loss, x_req)
    expected = (x + EPS * grad.sign()).clamp(0, 1)
    found = fgsm_predictive(models, x, y, EPS)
    # Signs may differ only where the gradient is ~0 (rounding); none should here.
    assert (found != expected).float().mean() < 1e-3


def test_default_labels_are_the_model_predictions(models, test_set):
    x, _ = test_set
    with torch.no_grad():
        predicted = models[1](x).argmax(dim=1)
    assert torch.equal(fgsm(models[1], x, EPS), fgsm(models[1], x, EPS, y=predicted))


def test_online_pieces_average_to_the_batch_helper(models, test_set):
    x, y = test_set
    for threat_model in ("as_released", "per_sample"):
        online = sum(adversarial_probs(m, x, y, threat_model, EPS) for m in models) / len(models)
        torch.testing.assert_close(online, adversarial_predictive(models, x, y, threat_model, EPS))


def test_works_under_no_grad_and_leaves_parameter_gradients_alone(models, test_set):
    x, y = test_set
    model = models[2]
    with torch.no_grad():
        x_adv = adversarial_probs(model, x, y, "per_sample", EPS)
    assert x_adv.shape == (len(y), 2) and not x_adv.requires_grad
    assert all(p.grad is None for p in model.parameters())


def test_bad_arguments_are_rejected(models, test_set):
    x, y = test_set
    with pytest.raises(ValueError, match="unknown threat model"):
        attack(models[0], x, y, "pgd", EPS)
    with pytest.raises(ValueError, match="every posterior sample"):
        adversarial_probs(models[0], x, y, "predictive", EPS)
    with pytest.raises(ValueError, match="pass y"):
        attack(models[0], x, None, "per_sample", EPS)
    with pytest.raises(ValueError, match="eps"):
        fgsm(models[0], x, -0.1)


@needs_cuda
def test_attacks_run_on_cuda_like_on_cpu(models, test_set):
    x, y = test_set
    on_gpu = [copy.deepcopy(m).cuda() for m in models]
    for threat_model in THREAT_MODELS:
        gpu = adversarial_predictive(on_gpu, x.cuda(), y.cuda(), threat_model, EPS)
        assert gpu.device.type == "cuda"
        cpu = adversarial_predictive(models, x, y, threat_model, EPS)
        # Gradient signs may flip where a gradient is ~0, changing a few images: compare accuracy.
        assert abs(accuracy(gpu.cpu(), y) - accuracy(cpu, y)) < 0.02, threat_model
