"""Every notebook in examples/ runs headless (nbclient) against the embedded backend.

The kernel is this interpreter: a kernel spec written to a temporary directory runs
``sys.executable -m ipykernel_launcher`` with PYTHONPATH pointing at this repository, so the test
neither depends on a ``python3`` kernel being installed nor picks up another interpreter's. A cell
that raises fails the test (nbclient's CellExecutionError).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
from cli_helpers import EXAMPLES, child_env

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
KERNEL = "magk-test-python"


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory: pytest.TempPathFactory) -> KernelSpecManager:
    root = tmp_path_factory.mktemp("kernels")
    spec_dir = root / KERNEL
    spec_dir.mkdir()
    env = child_env()
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "magk-client tests",
        "language": "python",
        "env": {"PYTHONPATH": env["PYTHONPATH"]},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return KernelSpecManager(kernel_dirs=[str(root)])


def _execute(path: Path, specs: KernelSpecManager) -> Any:
    nb = nbformat.read(path, as_version=4)
    km = KernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)
    client = nbclient.NotebookClient(
        nb, km=km, timeout=120, startup_timeout=60, resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    return nb


def _text(outputs: List[Dict[str, Any]]) -> str:
    parts = []
    for out in outputs:
        if out.get("output_type") == "stream":
            parts.append(out["text"])
        for value in out.get("data", {}).values():
            parts.append(value if isinstance(value, str) else json.dumps(value))
    return "".join(parts)


def test_there_is_a_notebook() -> None:
    assert any(p.name == "notebook.ipynb" for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, kernel_specs: KernelSpecManager) -> None:
    nb = _execute(path, kernel_specs)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code_cells:
        assert not [o for o in cell.outputs if o["output_type"] == "error"], cell.source
        # Nothing printed from a background thread lands in a cell: only cells that print have text.
        streams = [o for o in cell.outputs if o["output_type"] == "stream"]
        if "print(" not in cell.source:
            assert streams == [], (cell.source, streams)
        assert not [o for o in streams if o["name"] == "stderr"], (cell.source, streams)
    if path.name == "notebook.ipynb":
        _check_main_notebook(code_cells)


def _check_main_notebook(cells: List[Any]) -> None:
    by_source = {c.source.splitlines()[0]: c for c in cells}
    # The live display was updated in place from the dispatcher thread: its last state is the end of
    # the second run, every node completed.
    live = _text(by_source["view = LiveProgress(store, WORKFLOW)"].outputs)
    assert "etl: completed" in live and live.count("completed</td>") == 4, live
    assert "etl: waiting" not in live
    # the store's HTML table, the pause answer, the resume, and no thread left behind
    tables = [c for c in cells if c.source == "store"]
    assert tables and all("magk-node-store" in _text(c.outputs) for c in tables)
    assert "'state': 'paused'" in _text(by_source["finished.clear()"].outputs)
    assert "resumed: running - finished: True" in _text(by_source["resumed = adapter.resume_workflow(WORKFLOW)"].outputs)
    assert _text(by_source["adapter.close()"].outputs).strip() == "[]"
