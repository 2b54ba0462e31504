"""PaperCNN: architecture (the released code's: conv 5×5·32, conv 5×5·64, dense 3136→1024→10),
parameter count, and both initialisations."""

import math

import pytest
import torch
from torch import nn

from sgmcmc_paper.protocol.models import PaperCNN

LAYERS = ["0", "3", "7", "9"]  # conv1, conv2, dense1, dense2 in the Sequential


def _glorot_bound(weight):
    receptive = weight[0, 0].numel()
    return math.sqrt(6 / (weight.shape[0] * receptive + weight.shape[1] * receptive))


def _assert_uniform(weight, bound):
    """U(−a, a): every value within a; mean of w within 5 SE (a/√(3n)) of 0 and mean of w²
    within 5 SE (√(4a⁴/45n), since Var(w²) = a⁴/5 − a⁴/9) of a²/3."""
    w, n = weight.detach().flatten().double(), weight.numel()
    assert w.abs().max() <= bound
    assert abs(w.mean()) < 5 * bound / math.sqrt(3 * n)
    assert abs((w**2).mean() - bound**2 / 3) < 5 * math.sqrt(4 * bound**4 / 45 / n)


@pytest.mark.parametrize("init", ["tf", "torch"])
def test_architecture_and_parameter_count(init):
    model = PaperCNN(init=init, generator=torch.Generator().manual_seed(0))
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes == {
        "0.weight": (32, 1, 5, 5),
        "0.bias": (32,),
        "3.weight": (64, 32, 5, 5),
        "3.bias": (64,),
        "7.weight": (1024, 3136),
        "7.bias": (1024,),
        "9.weight": (10, 1024),
        "9.bias": (10,),
    }
    assert sum(p.numel() for p in model.parameters()) == 3_274_634
    logits = model(torch.rand(3, 1, 28, 28))
    assert logits.shape == (3, 10)


def test_tf_init_is_glorot_uniform_with_zero_biases():
    model = PaperCNN(init="tf", generator=torch.Generator().manual_seed(1))
    for name in LAYERS:
        layer = model.get_submodule(name)
        _assert_uniform(layer.weight, _glorot_bound(layer.weight))
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))


def test_torch_init_is_pytorchs_default():
    model = PaperCNN(init="torch", generator=torch.Generator().manual_seed(2))
    for name in LAYERS:
        layer = model.get_submodule(name)
        bound = 1 / math.sqrt(layer.weight[0].numel())
        _assert_uniform(layer.weight, bound)
        assert layer.bias.abs().max() <= bound and layer.bias.abs().min() > 0


def test_generator_makes_init_reproducible_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    first = PaperCNN(generator=torch.Generator().manual_seed(3)).state_dict()
    second = PaperCNN(generator=torch.Generator().manual_seed(3)).state_dict()
    other = PaperCNN(generator=torch.Generator().manual_seed(4)).state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first["7.weight"], other["7.weight"])


def test_bad_init_and_bad_input():
    with pytest.raises(ValueError, match=r"init must be one of \('tf', 'torch'\)"):
        PaperCNN(init="glorot")
    with pytest.raises(ValueError, match=r"\(n, 1, 28, 28\)"):
        PaperCNN()(torch.rand(2, 784))


def test_kfac_sees_the_layers():
    layers = [m for m in PaperCNN().modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert [type(m) for m in layers] == [nn.Conv2d, nn.Conv2d, nn.Linear, nn.Linear]
