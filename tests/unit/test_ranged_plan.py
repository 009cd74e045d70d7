"""How a blob is cut into ranged parts, and the knobs that change it."""

from __future__ import annotations

import itertools

import pytest

from ollama_airgap.errors import SpecError
from ollama_airgap.ranged import MB, RangedConfig, prefix_of

GIB = 1 << 30
MIB = 1 << 20


def sizes(config: RangedConfig, size: int) -> list[int]:
    parts = config.plan(size)
    assert parts[0].offset == 0 and sum(p.size for p in parts) == size
    assert all(a.offset + a.size == b.offset for a, b in itertools.pairwise(parts))
    return [p.size for p in parts]


def test_default_parts_are_16_mib_in_order() -> None:
    assert sizes(RangedConfig(), GIB) == [16 * MIB] * 64
    assert sizes(RangedConfig(), 100 * MIB) == [6_553_600] * 16, "a smaller blob still uses 16 connections"


def test_upstream_layout_is_size_over_16_within_100mb_and_1gb() -> None:
    upstream = RangedConfig(part_size=0)
    assert sizes(upstream, GIB) == [100 * MB] * 10 + [GIB - 1000 * MB]
    assert sizes(upstream, 43 * 1000 * MB) == [1000 * MB] * 43
    assert sizes(upstream, 3200 * MB) == [200 * MB] * 16


def test_threshold_and_parts_decide_whether_a_blob_splits() -> None:
    assert not RangedConfig().splits(64 * MIB - 1) and RangedConfig().splits(64 * MIB)
    assert not RangedConfig(parts=1).splits(GIB) and not RangedConfig().splits(None)


def test_environment_and_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_AIRGAP_PARTS", "8")
    monkeypatch.setenv("OLLAMA_AIRGAP_PART_THRESHOLD", "8M")
    monkeypatch.setenv("OLLAMA_AIRGAP_PART_SIZE", "1MiB")
    assert RangedConfig.from_env() == RangedConfig(parts=8, threshold=8 * MIB, part_size=MIB)
    assert RangedConfig.from_env(parts=2, threshold=0).parts == 2
    with pytest.raises(SpecError, match="--parts: 0"):
        RangedConfig.from_env(parts=0)
    monkeypatch.setenv("OLLAMA_AIRGAP_PART_THRESHOLD", "lots")
    with pytest.raises(SpecError, match="OLLAMA_AIRGAP_PART_THRESHOLD: 'lots' is not a size"):
        RangedConfig.from_env()


def test_prefix_stops_at_the_first_incomplete_part() -> None:
    parts = RangedConfig(parts=4, part_size=10).plan(40)
    parts[0].done, parts[1].done, parts[2].done = 10, 4, 10
    assert prefix_of(parts) == 14
    parts[1].done = 10
    assert prefix_of(parts) == 30
