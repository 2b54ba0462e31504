"""Sub-commands of the ``sgmcmc`` command line, one module each (see :mod:`sgmcmc_paper.cli`)."""

from sgmcmc_paper.errors import UserError


def parse_train_sizes(values: list[str]) -> list[int | None]:
    """``--train-size`` values: positive integers, or ``full`` (``None``: the whole set)."""
    sizes: list[int | None] = []
    for value in values:
        if value == "full":
            sizes.append(None)
        elif value.isdigit() and int(value) > 0:
            sizes.append(int(value))
        else:
            raise UserError(f"--train-size takes positive integers or 'full', got {value!r}")
    return sizes
