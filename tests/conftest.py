"""Shared pytest options: heavy statistical tests (~1e5 samples) run only with --runslow (STYLE 5);
`quick_figure`: each figure made once per session in quick mode, shared by the figure contract and
the per-figure verdict tests."""
from __future__ import annotations

import pytest
import torch

# The tensors in these tests are tiny; one intra-op thread avoids OpenMP start-up costs that dominate
# (and vary) when both cores are busy. The library itself sets threads per run (sgd.run(threads=1)).
torch.set_num_threads(1)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="heavy statistical test: pass --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


_FIGURES: dict[str, tuple] = {}


@pytest.fixture(scope="session")
def quick_figure(tmp_path_factory: pytest.TempPathFactory):
    """quick_figure("F6") -> (out directory, written paths, Result), made once per session."""
    from bkd_theory.reproduce import make

    def get(fig_id: str) -> tuple:
        if fig_id not in _FIGURES:
            out = tmp_path_factory.mktemp(fig_id)
            paths, result = make(fig_id, True, out)
            _FIGURES[fig_id] = (out, paths, result)
        return _FIGURES[fig_id]

    return get
