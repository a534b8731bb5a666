"""Shared pytest options: heavy statistical tests (~1e5 samples) run only with --runslow (STYLE 5)."""
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
