"""The numbers Palacci & Hess (2018) publish, and those of their released code, as data.

Source: the paper (https://arxiv.org/abs/1806.02855) and the saved outputs and logs of its
released code (github.com/henripal/sgld_tf). Notebooks put these beside ours instead of typing
them in.
Accuracies are in percent unless a name says otherwise. This module is also the one place the
harness names the methods (their groups, labels and released learning rates).
"""

from __future__ import annotations

# ------------------------------------------------------------------------------ methods
# The harness's one definition of the methods: everything else imports these.
SGD_METHODS = ("sgd", "fsgd")
"""Trained with ``torch.optim.SGD``: SGD reads the final model, FSGD averages predictions."""
LANGEVIN_METHODS = ("sgld", "psgld", "ksgld")
"""The samplers (:mod:`sgmcmc`): SGLD, pSGLD and KSGLD."""
PRECONDITIONED_METHODS = ("psgld", "ksgld")
"""The Langevin methods whose preconditioner is not the identity."""
METHODS = (*SGD_METHODS, *LANGEVIN_METHODS)
METHOD_LABELS = {"sgd": "SGD", "fsgd": "FSGD", "sgld": "SGLD", "psgld": "pSGLD", "ksgld": "KSGLD"}
ALTERNATIVE_METHODS = ("laplace", "ensemble")
"""Beyond the paper, what practitioners use instead (notebook 09): a K-FAC Laplace
approximation around an SGD solution (:mod:`sgmcmc.laplace`) and a deep ensemble of SGD runs;
not the paper's methods, so not in :data:`METHODS`."""
ALTERNATIVE_LABELS = {"laplace": "K-FAC Laplace", "ensemble": "Deep ensemble"}

# ---------------------------------------------------------------------- protocol (§3, §4)
LEARNING_RATES = {"sgd": 0.01, "fsgd": 0.01, "sgld": 0.02, "psgld": 0.02, "ksgld": 0.02}
"""Constant learning rates of the released final runs (no decay), in the paper convention:
the rates a run gets when none is given (:func:`sgmcmc_paper.protocol.config.default_lr`)."""
BATCH_SIZE = 512
EPOCHS = 10
TABLE1_EPOCHS = 20
TRAIN_SIZE = 60_000
TEST_SIZE = 10_000
SMALL_MNIST_SIZE = {"described": 5_000, "released": 3_000}
NOTMNIST_SIZE = 10_000
"""The released code used the last 10,000 of notMNIST_small's 18,724 readable glyphs."""
FGSM_EPSILON = 0.3
FIG4_WINDOW_SAMPLES = 118
"""Fig. 4 averages the predictive over the last epoch's 118 samples."""
TABLE1_WINDOW = {"samples": 50, "every_steps": 20}
"""Table 1 averages the last 50 samples, one every 20 steps, of a 20-epoch run."""
KFAC_RELEASED = {"damping": 1e-3, "cov_ema_decay": 0.95, "estimation_mode": "gradients"}
PSGLD_RELEASED = {"alpha": 0.96, "eps": 1e-10, "m_init": 1.0, "m_settles_at": 0.96}

# ---------------------------------------------------------------- mixing (§4.2, Fig. 2)
MESS_WINDOW = 100
MESS_MAX_LAG = 20
MESS_FLOOR = MESS_WINDOW / (2 * MESS_MAX_LAG + 1)
"""ESS cannot fall below ``n/(1 + 2·20)`` = 100/41 ≈ 2.44 with the code's lag-20 cap."""
MESS_MINIMA_RANGE = (2.6, 3.1)
"""The paper's reported minimum mESS values (they sit on the floor)."""
MESS_WINDOWS_PER_RUN = 5

# ------------------------------------------------------------------------- Table 1 (§4.4)
TABLE1_PUBLISHED = {
    "sgd": (96.0, 2.9),
    "fsgd": (96.5, 2.0),
    "sgld": (97.2, 1.8),
    "psgld": (97.1, 1.9),
    "ksgld": (97.0, 2.0),
}
"""Table 1 as published: (test accuracy, accuracy on FGSM examples), percent."""

TABLE1_CODE_OUTPUT = (
    # (method, prediction, test accuracy, adversarial accuracy or None)
    ("sgd", "single", 96.07, 2.87),
    ("fsgd", "single", 96.50, None),
    ("fsgd", "averaged", 97.09, 1.99),
    ("sgld", "averaged", 97.22, 1.77),
    ("psgld", "averaged", 97.15, 1.91),
    ("ksgld", "averaged", 96.96, 1.96),
)
"""The released code's saved output behind Table 1: the published FSGD test accuracy is its
single-model figure; averaged, FSGD equals the Langevin methods."""

# ---------------------------------------------------- SGD's logged accuracy (§4, Fig. 1)
SGD_LOGGED_ACCURACY = {
    "run 1": (0.660, 0.820, 0.884, 0.905, 0.918, 0.927, 0.932, 0.937, 0.941, 0.945),
    "run 2": (0.750, 0.850, 0.893, 0.910, 0.921, 0.929, 0.935, 0.940, 0.943, 0.947),
}
"""Per-epoch test accuracy (fraction, epochs 1–10) of plain SGD, lr 0.01, batch 512, TF1
default init, in two logs of the released code."""
SGD_LOGGED_ACCURACY_EPOCH_20 = 0.961

# ------------------------------------------------------------------ claims, by section
CLAIMS = {
    "4.1": (
        "All methods reach test accuracies within about one point of each other.",
        "Averaging predictions does not clearly improve test accuracy.",
    ),
    "4.2": (
        "Multivariate ESS is very low for every method: the chains barely mix.",
        "The traces are not stationary.",
    ),
    "4.3": (
        "On smallMNIST the Langevin methods underperform SGD.",
        "Only FSGD (averaged SGD) matches SGD on smallMNIST.",
    ),
    "4.4": (
        "FGSM at ε = 0.3 defeats every method (adversarial accuracy of a few percent).",
        "Langevin methods do not improve adversarial robustness.",
    ),
    "4.5": (
        "SGD is the most confident method on notMNIST letters.",
        "All averaging methods (FSGD included) are less over-confident than SGD.",
        "Langevin methods significantly improve out-of-sample detection (abstract).",
    ),
}
"""The paper's claims per section, in words; notebooks compute whether each holds."""


def sgd_logged_curve():
    """The two logged SGD curves as a DataFrame: index epoch 1–10, one column per run."""
    import pandas as pd

    frame = pd.DataFrame(SGD_LOGGED_ACCURACY, index=range(1, EPOCHS + 1))
    frame.index.name = "epoch"
    return frame


def table1(source: str = "published"):
    """Table 1 as a DataFrame indexed by method: ``source="published"`` (the paper) or
    ``"code"`` (the released code's saved output, with a ``prediction`` column)."""
    import pandas as pd

    if source == "published":
        frame = pd.DataFrame(TABLE1_PUBLISHED, index=["test", "adversarial"]).T
        frame.index.name = "method"
        return frame
    if source == "code":
        columns = ["method", "prediction", "test", "adversarial"]
        return pd.DataFrame(TABLE1_CODE_OUTPUT, columns=columns).set_index("method")
    raise ValueError(f"source must be 'published' or 'code', got {source!r}")
