"""The paper's numbers as data: internally consistent with the paper (arXiv:1806.02855) and
its released code's outputs."""

import pytest

from sgmcmc_paper.protocol import paper


def test_mess_floor():
    assert paper.MESS_FLOOR == pytest.approx(100 / 41)
    assert paper.MESS_FLOOR < paper.MESS_MINIMA_RANGE[0]


def test_table1_published_and_code_output():
    published = paper.table1()
    assert list(published.index) == list(paper.METHODS)
    code = paper.table1("code")
    # The published FSGD test accuracy is the code's single-model figure, rounded.
    # (Rounding to one decimal, half either way: 97.15 is published as 97.1.)
    fsgd_single = code[code["prediction"] == "single"].loc["fsgd", "test"]
    assert abs(fsgd_single - published.loc["fsgd", "test"]) <= 0.05 + 1e-9
    for method in paper.LANGEVIN_METHODS:
        assert abs(code.loc[method, "test"] - published.loc[method, "test"]) <= 0.05 + 1e-9
    with pytest.raises(ValueError, match="source must be"):
        paper.table1("blog")


def test_sgd_logged_curves_rise_and_learning_rates():
    curves = paper.sgd_logged_curve()
    assert list(curves.index) == list(range(1, 11))
    assert (curves.diff().dropna() > 0).all().all()
    assert paper.LEARNING_RATES["sgld"] == 2 * paper.LEARNING_RATES["sgd"]
