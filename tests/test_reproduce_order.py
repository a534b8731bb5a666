"""`reproduce.longest_first`: the order in which `--jobs` workers take the figures."""
from __future__ import annotations

import json

from bkd_theory.reproduce import longest_first, select


def test_longest_first_by_the_recorded_seconds_unrecorded_and_unreadable_first(tmp_path):
    figs = select(["F2", "F3", "F4", "F5", "F6"])
    for fig_id, secs in (("F3", 91.4), ("F4", 27.0), ("F6", 219.3)):
        (tmp_path / f"{fig_id}.json").write_text(json.dumps({"seconds": secs}))
    (tmp_path / "F5.json").write_text("{not json")
    assert [f.id for f in longest_first(figs, tmp_path)] == ["F2", "F5", "F6", "F3", "F4"]
    assert [f.id for f in longest_first(figs, tmp_path / "missing")] == ["F2", "F3", "F4", "F5", "F6"]
