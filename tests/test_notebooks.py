"""The notebooks: committed without outputs, and every one executes in quick mode (STYLE 12).

Execution uses a private `python3` kernelspec whose argv is this interpreter (`sys.executable`), so
the kernel imports the same environment as the tests whatever kernelspecs the user or system has.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ("01_quickstart", "02_theorems", "03_noise_sweep", "04_bayesian_teachers", "05_bring_your_own")
CELL_TIMEOUT = 240  # seconds per cell; quick mode needs a few seconds per cell on 2 busy cores


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(str(NOTEBOOKS / f"{name}.ipynb"), as_version=4)


def test_notebook_set_is_complete() -> None:
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name: str) -> None:
    nb = _read(name)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{name} has no code cells"
    for i, cell in enumerate(code):
        assert cell.outputs == [], f"{name}: code cell {i} has outputs"
        assert cell.execution_count is None, f"{name}: code cell {i} has an execution count"
    assert 'os.environ.get("QUICK"' in code[0].source, f"{name}: the first code cell must read the QUICK flag"


def _kernel_manager(tmp_path: Path):
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    kernels = tmp_path / "kernels"
    write_kernel_spec(str(kernels / "python3"))  # argv: [sys.executable, "-m", "ipykernel_launcher", ...]
    specs = KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)
    return KernelManager(kernel_name="python3", kernel_spec_manager=specs)


@pytest.mark.parametrize("name", NAMES)
def test_executes_in_quick_mode(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbclient import NotebookClient

    monkeypatch.setenv("QUICK", "1")  # the kernel inherits this process's environment
    work = tmp_path / "work"
    work.mkdir()
    nb = _read(name)
    client = NotebookClient(nb, km=_kernel_manager(tmp_path), timeout=CELL_TIMEOUT, startup_timeout=120,
                            resources={"metadata": {"path": str(work)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{name} drew no inline figure"
