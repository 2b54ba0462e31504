"""FGSM, PGD and APGD under the three threat models, on tiny MLPs trained on a synthetic
two-class image problem and on a random ten-class network whose sine features make it far from
linear at the scale of the attacks; checked against torchattacks where it is installed."""

import copy
import importlib.util

import pytest
import torch
import torch.nn.functional as F
from _devices import needs_cuda
from torch import nn

from sgmcmc_paper.analysis.attacks import (
    APGD,
    FGSM,
    PGD,
    THREAT_MODELS,
    AttackSpec,
    Objective,
    adversarial_predictive,
    adversarial_probs,
    apgd,
    apgd_checkpoints,
    attack,
    fgsm,
    fgsm_predictive,
    perturb,
    pgd,
    pgd_predictive,
    predicted_labels,
)

needs_torchattacks = pytest.mark.skipif(
    importlib.util.find_spec("torchattacks") is None,
    reason="torchattacks is not installed: .venv/bin/python -m pip install --no-deps "
    "torchattacks==3.5.1 (make venv installs it)",
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


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: thread hand-offs cost more than they save
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models(one_thread):
    return [train_mlp(seed) for seed in range(3)]


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
@pytest.mark.parametrize(
    "spec", [FGSM, AttackSpec("pgd", steps=10, restarts=2)], ids=["fgsm", "pgd"]
)
@pytest.mark.parametrize("eps", [0.1, EPS])
def test_attacks_run_on_cuda_like_on_cpu(models, test_set, spec, eps):
    x, y = test_set
    on_gpu = [copy.deepcopy(m).cuda() for m in models]
    for threat_model in THREAT_MODELS:
        # A CPU generator draws the same random starts for either device.
        gpu = adversarial_predictive(
            on_gpu,
            x.cuda(),
            y.cuda(),
            threat_model,
            eps,
            spec=spec,
            generator=torch.Generator().manual_seed(0),
        )
        assert gpu.device.type == "cuda"
        cpu = adversarial_predictive(
            models, x, y, threat_model, eps, spec=spec, generator=torch.Generator().manual_seed(0)
        )
        # Gradient signs may flip where a gradient is ~0, changing a few images: compare accuracy.
        assert abs(accuracy(gpu.cpu(), y) - accuracy(cpu, y)) < 0.02, threat_model


# ---------------------------------------------------------------------- iterative attacks
class Sine(nn.Module):
    def forward(self, x):
        return torch.sin(x)


@pytest.fixture(scope="module")
def wavy():
    """A random 10-class network ``16 → 64 sin(20·) → 10`` on uniform 4×4 images, labelled by
    its own predictions (clean accuracy 1): at ε = 0.02 a pixel move turns a feature's phase
    by about a radian, so one signed step is not the best move."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 64), Sine(), nn.Linear(64, 10))
    with torch.no_grad():
        model[1].weight.mul_(20)
    x = torch.rand(400, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(1))
    return model.eval(), x, predicted_labels(model.eval(), x)


def robust(model, x_adv, y):
    with torch.no_grad():
        return accuracy(F.softmax(model(x_adv), dim=1), y)


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def test_pgd_stays_in_the_ball_and_clips_where_required(wavy):
    model, x, y = wavy
    for eps in (0.02, 0.3):
        clipped = pgd(model, x, eps, y=y, clip=True, steps=5, restarts=2, generator=seeded())
        assert (clipped - x).abs().max() <= eps + 1e-6
        assert clipped.min() >= 0 and clipped.max() <= 1
        for found in (
            apgd(model, x, eps, y=y, clip=True, steps=5, generator=seeded()),
            pgd_predictive([model], x, y, eps, steps=5, generator=seeded()),
        ):
            assert (found - x).abs().max() <= eps + 1e-6
            assert found.min() >= 0 and found.max() <= 1
    # As released: predicted labels on the clean images, the ball only (pixels leave [0, 1]).
    spec = AttackSpec("pgd", steps=10)
    released = attack(model, x, None, "as_released", 0.3, spec=spec, generator=seeded())
    assert (released - x).abs().max() <= 0.3 + 1e-6
    assert released.min() < 0 or released.max() > 1
    assert torch.equal(released, pgd(model, x, 0.3, steps=10, generator=seeded()))
    expected = pgd(model, x, 0.3, y=y, clip=False, steps=10, generator=seeded())
    assert torch.equal(released, expected)


def test_iterative_attacks_beat_one_step_on_a_nonlinear_model(wavy):
    model, x, y = wavy
    eps = 0.02
    one_step = robust(model, fgsm(model, x, eps, y=y, clip=True), y)
    found = {
        "pgd": pgd(model, x, eps, y=y, clip=True, restarts=3, generator=seeded()),
        "apgd": apgd(model, x, eps, y=y, clip=True, steps=50, restarts=2, generator=seeded()),
    }
    accuracies = {name: robust(model, x_adv, y) for name, x_adv in found.items()}
    assert 0.05 < accuracies["apgd"] < accuracies["pgd"] < one_step < 0.5, (one_step, accuracies)
    # Keeping the best iterate never does worse than the last iterate, image by image.
    last = pgd(model, x, eps, y=y, clip=True, keep_best=False, generator=seeded())
    best = pgd(model, x, eps, y=y, clip=True, generator=seeded())
    assert robust(model, best, y) <= robust(model, last, y)


def test_attacks_are_deterministic_given_a_generator_whatever_the_batches(wavy):
    model, x, y = wavy
    for spec in (AttackSpec("pgd", steps=5, restarts=2), AttackSpec("apgd", steps=8)):
        whole = perturb([model], x, y, 0.05, spec, generator=seeded(3))
        assert torch.equal(whole, perturb([model], x, y, 0.05, spec, generator=seeded(3)))
        batched = perturb([model], x, y, 0.05, spec, generator=seeded(3), batch_size=64)
        assert torch.equal(whole, batched)
        assert not torch.equal(whole, perturb([model], x, y, 0.05, spec, generator=seeded(4)))


def test_pgd_against_one_sample_is_pgd_against_its_predictive(models, test_set):
    x, y = test_set
    single = pgd(models[0], x, EPS, y=y, clip=True, steps=10, generator=seeded())
    assert torch.equal(single, pgd_predictive(models[:1], x, y, EPS, steps=10, generator=seeded()))
    one = perturb(models[:1], x, y, EPS, APGD, generator=seeded())
    assert torch.equal(one, apgd(models[0], x, EPS, y=y, clip=True, generator=seeded()))
    options = {"spec": AttackSpec("pgd", steps=5)}
    torch.testing.assert_close(
        adversarial_predictive(models[:1], x, y, "predictive", EPS, **options, generator=seeded()),
        adversarial_predictive(models[:1], x, y, "per_sample", EPS, **options, generator=seeded()),
    )


def test_the_objective_is_minus_log_of_the_averaged_predictive(models, test_set):
    x, y = test_set
    x = x[:200]
    y = y[:200]
    x_req = x.clone().requires_grad_(True)
    mean_probs = torch.stack([F.softmax(m(x_req), dim=1) for m in models]).mean(dim=0)
    expected = -torch.log(mean_probs.gather(1, y[:, None])).squeeze(1)
    (grad,) = torch.autograd.grad(expected.sum(), x_req)
    loss, found, correct = Objective(models)(x, y)
    torch.testing.assert_close(loss, expected.detach())
    torch.testing.assert_close(found, grad, rtol=1e-4, atol=1e-7)
    assert torch.equal(correct, mean_probs.argmax(dim=1) == y)
    # One model: cross-entropy, bit for bit.
    loss, found, _ = Objective(models[:1])(x, y)
    x_req = x.clone().requires_grad_(True)
    ce = F.cross_entropy(models[0](x_req), y, reduction="none")
    assert torch.equal(loss, ce.detach())
    assert torch.equal(found, torch.autograd.grad(ce.sum(), x_req)[0])


def test_pgd_threat_models_collapse_the_trained_models(models, test_set):
    x, y = test_set
    spec = AttackSpec("pgd", steps=10)
    for threat_model in THREAT_MODELS:
        probs = adversarial_predictive(
            models, x, y, threat_model, EPS, spec=spec, generator=seeded()
        )
        assert accuracy(probs, y) < 0.05, threat_model


def test_zero_eps_and_bad_specs(wavy):
    model, x, y = wavy
    assert torch.equal(pgd(model, x, 0.0, y=y), x)
    assert [s.label for s in (FGSM, PGD, APGD, AttackSpec("pgd", 10, restarts=5))] == [
        "FGSM",
        "PGD-40",
        "APGD-100",
        "PGD-10×5",
    ]
    assert PGD.alpha(0.3) == pytest.approx(2.5 * 0.3 / 40)
    for bad, match in (
        ({"name": "cw"}, "unknown attack"),
        ({"name": "fgsm"}, "FGSM is one step"),
        ({"steps": 0}, "steps and restarts"),
        ({"restarts": 3, "random_start": False}, "random_start"),
        ({"step_size": -1.0}, "step_size"),
        ({"rho": 0.0}, "rho"),
    ):
        with pytest.raises(ValueError, match=match):
            AttackSpec(**bad)
    with pytest.raises(ValueError, match="at least one model"):
        perturb([], x, y, 0.1, PGD)
    with pytest.raises(ValueError, match="eps"):
        pgd(model, x, -0.1, y=y)


def test_apgd_checkpoints_follow_the_paper():
    # p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), w_j = ceil(p_j N).
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert apgd_checkpoints(1) == [1]


# ---------------------------------------------------------------------- against torchattacks
@needs_torchattacks
@pytest.mark.parametrize("eps", [0.02, 0.3])
def test_fgsm_and_pgd_agree_with_torchattacks_pixel_for_pixel(wavy, models, test_set, eps):
    import torchattacks

    for model, x, y in (wavy, (models[0], *test_set)):
        x = x[:200]
        y = y[:200]
        assert torch.equal(fgsm(model, x, eps, y=y, clip=True), torchattacks.FGSM(model, eps)(x, y))
        alpha = eps / 4
        theirs = torchattacks.PGD(model, eps, alpha, steps=10, random_start=False)(x, y)
        ours = pgd(
            model,
            x,
            eps,
            y=y,
            clip=True,
            steps=10,
            step_size=alpha,
            random_start=False,
            keep_best=False,
        )
        assert torch.equal(ours, theirs)
        # The same random start: torchattacks draws it from torch's global generator.
        torch.manual_seed(5)
        theirs = torchattacks.PGD(model, eps, alpha, steps=10, random_start=True)(x, y)
        ours = pgd(
            model,
            x,
            eps,
            y=y,
            clip=True,
            steps=10,
            step_size=alpha,
            keep_best=False,
            generator=seeded(5),
        )
        assert torch.equal(ours, theirs)


@needs_torchattacks
def test_apgd_is_as_strong_as_torchattacks_apgd(wavy):
    import torchattacks

    model, x, y = wavy
    for eps in (0.01, 0.02):
        theirs = robust(model, torchattacks.APGD(model, eps=eps, steps=50)(x, y), y)
        ours = robust(model, apgd(model, x, eps, y=y, clip=True, steps=50, generator=seeded()), y)
        # Random starts differ (theirs is scaled to touch the ball's surface): a few images.
        assert abs(ours - theirs) <= 0.02, (eps, ours, theirs)
