"""The ``>>>`` examples in the public modules' docstrings run and print what they show
(issue 15): the API reference renders these docstrings, so it cannot drift from the code."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest

from test_docs import PUBLIC_MODULES

# the modules whose docstrings hold examples, and how many at least (a floor, so that
# examples deleted by mistake fail here rather than silently testing nothing)
MIN_EXAMPLES = {
    "nprnn.data": 3,
    "nprnn.losses": 1,
    "nprnn.gradcheck": 1,
    "nprnn.layers": 2,
    "nprnn.dense": 2,
    "nprnn.containers": 1,
    "nprnn.grad_mode": 1,
    "nprnn.classic": 1,
    "nprnn.optim.lr_scheduler": 1,
    "nprnn.kernels.reference": 1,
    "nprnn.functional": 1,
    "nprnn.serialization": 1,
}
DEFINING = {"nprnn.optim": ["nprnn.optim.optimizers", "nprnn.optim.clip"]}


def _examples(name: str) -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = []
    for mod in [name, *DEFINING.get(name, [])]:
        tests += [t for t in finder.find(importlib.import_module(mod)) if t.examples]
    return tests


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_docstring_examples(name):
    tests = _examples(name)
    assert len(tests) >= MIN_EXAMPLES.get(name, 0), f"{name}: examples missing"
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    with np.printoptions(legacy=False):
        for t in tests:
            runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"


def test_an_optimizer_example_exists():
    assert any(t.name.endswith("SGD") for t in _examples("nprnn.optim"))


def test_a_wrong_example_fails():
    """The runner used above does catch a wrong expected output."""
    parser = doctest.DocTestParser()
    test = parser.get_doctest(">>> 1 + 1\n3\n", {}, "wrong", None, 0)
    runner = doctest.DocTestRunner()
    runner.run(test, out=lambda s: None)
    assert runner.summarize(verbose=False).failed == 1
