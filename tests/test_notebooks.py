"""The notebooks in notebooks/ run top to bottom on a fresh kernel (issue 15).

Each is executed with nbclient in a temporary working directory; their ``assert`` cells
check real numbers (gradient-check errors, accuracies, torch agreement), so a change in
the library that breaks what a notebook teaches fails here. They are stored without
outputs: the test refuses a notebook saved with outputs.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
NEEDS_TORCH = {"03_your_own_model.ipynb"}


def test_there_are_the_four_notebooks():
    assert [p.name for p in NOTEBOOKS] == [
        "01_from_the_notebook.ipynb",
        "02_bptt_step_by_step.ipynb",
        "03_your_own_model.ipynb",
        "04_char_lm.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, (path.name, cell.source)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    if path.name in NEEDS_TORCH:
        pytest.importorskip("torch")
    nb = nbformat.read(path, as_version=4)
    asserts = sum("assert " in c.source for c in nb.cells if c.cell_type == "code")
    assert asserts >= 3, f"{path.name} checks too little"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError at the first failing cell
    print(f"{path.name}: {time.perf_counter() - start:.1f} s")
    images = sum(
        "image/png" in out.get("data", {})
        for c in nb.cells
        if c.cell_type == "code"
        for out in c.outputs
    )
    if path.name != "01_from_the_notebook.ipynb":
        assert images >= 1, f"{path.name} drew no inline plot"
