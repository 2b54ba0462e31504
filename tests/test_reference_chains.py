"""Every sampler and path computes the chains it computed when the library was split from the
paper's harness: bit for bit on a CPU (``tests/_reference_chains.py`` made the fixture)."""

from __future__ import annotations

import numpy as np
import pytest
from _reference_chains import CASES, FIXTURE, run_case

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as stored:
        return dict(stored)


@pytest.mark.parametrize("name", list(CASES))
def test_chain_is_bit_identical_to_the_stored_one(name, reference):
    arrays = run_case(name)
    expected = {k.split("/", 1)[1]: v for k, v in reference.items() if k.startswith(f"{name}/")}
    assert sorted(arrays) == sorted(expected)
    for key, value in arrays.items():
        assert value.dtype == expected[key].dtype, key
        np.testing.assert_array_equal(value, expected[key], err_msg=f"{name}: {key}")
