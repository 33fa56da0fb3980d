"""The quickstart notebook runs top to bottom on a real kernel; its plot cell draws a PNG."""

import re

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO


@pytest.mark.slow
def test_quickstart_notebook_executes(tmp_path):
    nb = nbformat.read(REPO / "experiments" / "notebooks" / "quickstart.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert pngs, "the plot cell produced no PNG"
    grouped = next(c for c in nb.cells if c.source.startswith("results.groupby"))
    table = grouped.outputs[0]["data"]["text/plain"]
    assert "0.02" in table and "0.1" in table  # one row per learning rate
    # The vectorized sweep's report: its table printed, its curves shown.
    report_cell = nb.cells[-1]
    printed = re.sub(r"\x1b\[[0-9;]*m", "", "".join(  # rich's lines, colours removed
        o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in report_cell.outputs))
    assert "best: optim.lr=" in printed and "report_curves.png in" in printed, printed
    assert any("image/png" in o.get("data", {}) for o in report_cell.outputs)


def test_a_user_error_in_a_notebook_shows_the_cell_line_and_the_message(tmp_path):
    """In Jupyter a UserError had shown the whole traceback through lepton_jax's frames, the
    line saying what to fix at its bottom; it now shows the cell's own line and the message
    (`UserError._render_traceback_`, which IPython and ipykernel use)."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(
        "from lepton_jax import Dataset, Model, Trainer\n"
        "trainer = Trainer(Model.mlp(), Dataset.digits(), lr='fast')")]
    NotebookClient(notebook, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    [error] = [o for o in notebook.cells[0].outputs if o["output_type"] == "error"]
    shown = "\n".join(error["traceback"])
    assert error["ename"] == "UserError"
    assert shown.endswith("UserError: optim.lr='fast' is not a number; pass a number")
    assert "trainer = Trainer(Model.mlp(), Dataset.digits(), lr='fast')" in shown
    assert "lepton_jax" not in shown.replace("from lepton_jax import", "")
