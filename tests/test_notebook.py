"""The quickstart notebook runs top to bottom on a real kernel; its plot cell draws a PNG."""

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
    last = nb.cells[-1].outputs[0]["data"]["text/plain"]
    assert "0.02" in last and "0.1" in last  # one row per learning rate
