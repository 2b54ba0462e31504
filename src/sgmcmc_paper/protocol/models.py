"""The paper's MNIST network (Palacci & Hess 2018, https://arxiv.org/abs/1806.02855, as its
released code builds it)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

INITS = ("tf", "torch")


class PaperCNN(nn.Sequential):
    """conv5×5·32 same, ReLU, max-pool 2 → conv5×5·64 same, ReLU, max-pool 2 → dense 3136→1024,
    ReLU → dense 1024→10. Input ``(n, 1, 28, 28)`` floats in ``[0, 1]``; output logits ``(n, 10)``.
    3,274,634 parameters.

    ``init="tf"``: TF1's defaults, Glorot-uniform weights (``U(−a, a)``,
    ``a = sqrt(6/(fan_in + fan_out))``, receptive field included) and zero biases.
    ``init="torch"``: PyTorch's default (``kaiming_uniform_(a=√5)`` weights, biases
    ``U(−1/√fan_in, 1/√fan_in)``). ``generator`` (a CPU ``torch.Generator``) makes the
    initialisation reproducible; with it, the global generator is not used. The model is
    built on the CPU; move it with ``.to(device)``.

    The flatten is channel-major (PyTorch's NCHW), where TF flattened NHWC: a fixed permutation
    of the first dense layer's inputs, immaterial for a random initialisation.
    """

    def __init__(self, init: str = "tf", generator: torch.Generator | None = None) -> None:
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        meta = {"device": "meta"}  # allocate without torch's own (global-RNG) initialisation
        super().__init__(
            nn.Conv2d(1, 32, kernel_size=5, padding=2, **meta),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=5, padding=2, **meta),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(7 * 7 * 64, 1024, **meta),
            nn.ReLU(),
            nn.Linear(1024, 10, **meta),
        )
        self.to_empty(device="cpu")
        self.init = init
        for layer in self:
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                _initialise(layer, init, generator)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(
                f"PaperCNN expects input of shape (n, 1, 28, 28), got {tuple(x.shape)}"
            )
        return super().forward(x)


@torch.no_grad()
def _initialise(layer: nn.Conv2d | nn.Linear, init: str, generator: torch.Generator | None) -> None:
    weight, bias = layer.weight, layer.bias
    if init == "tf":
        nn.init.xavier_uniform_(weight, generator=generator)
        nn.init.zeros_(bias)
    else:
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
        fan_in = weight[0].numel()
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(bias, -bound, bound, generator=generator)
