"""Config round trips, stable hashes and string enums (STYLE 8)."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from bkd_theory.config import Config, Gauge, NoiseMode, StrEnum


@dataclasses.dataclass(frozen=True)
class Toy(Config):
    gamma: float = 0.1
    gauge: Gauge = Gauge.PINNED
    widths: tuple[int, ...] = (4, 4)
    n: int | None = None


def test_str_enum_accepts_plain_strings_any_case():
    assert Gauge("pinned") is Gauge.PINNED
    assert Gauge("FULL") is Gauge.FULL
    assert Gauge.PINNED == "pinned" and str(Gauge.FULL) == "full"


def test_str_enum_coerce_names_parameter_and_choices():
    with pytest.raises(ValueError, match=r"noise must be one of \{fresh, frozen, online\}"):
        NoiseMode.coerce("stale", "noise")


def test_round_trip_and_coercion_from_plain_data():
    cfg = Toy(gamma=0.5, gauge=Gauge.FULL, widths=(8,), n=10)
    data = cfg.to_dict()
    assert data == {"gamma": 0.5, "gauge": "full", "widths": [8], "n": 10}
    assert Toy.from_dict(data) == cfg
    assert Toy.from_dict({"gamma": 1, "gauge": "Full"}).gamma == 1.0


def test_unknown_field_is_rejected_with_its_name():
    with pytest.raises(ValueError, match="unknown Toy field"):
        Toy.from_dict({"gama": 0.1})


def test_hash_changes_with_any_field_and_ignores_spelling_of_enums():
    base = Toy()
    assert base.config_hash() == Toy(gauge="pinned").config_hash()  # type: ignore[arg-type]
    assert base.config_hash() != base.replace(gamma=0.2).config_hash()
    assert base.config_hash() != base.replace(n=1).config_hash()


def test_hash_is_stable_across_processes():
    code = (
        "import dataclasses;from bkd_theory.config import Config, Gauge\n"
        "@dataclasses.dataclass(frozen=True)\n"
        "class Toy(Config):\n gamma: float = 0.1\n gauge: Gauge = Gauge.PINNED\n"
        " widths: tuple[int, ...] = (4, 4)\n n: int | None = None\n"
        "print(Toy().config_hash())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == Toy().config_hash()


def test_is_abstract_enough_for_subclasses():
    assert issubclass(Gauge, StrEnum)
