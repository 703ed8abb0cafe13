"""Shared fixtures: real faces and clips, and a tiny landmark cache built from them.

The tests read one data folder laid out like the training corpus (clips.csv, clips/, stills/):
the corpus itself at ../shared/data when it is there (CI has it), else the small fixtures in
tests/data/ (a few licensed clips and photos cut from them, tests/data/SOURCES.md), so a fresh
clone passes its tests. `CAINGAN_TEST_CORPUS=0` makes a checkout with the corpus beside it test
as a fresh clone does; `CAINGAN_SHARED_DATA` points at a corpus elsewhere. Tests that need the
corpus itself (training or evaluating on its splits) ask for the `corpus` fixture and skip
without it.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from testdata import DATA, HAS_CORPUS, NO_CORPUS, SHARED_DATA


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains or renders for tens of seconds")


def pytest_report_header(config):
    return f"test data: {DATA}" + ("" if HAS_CORPUS else f" (the corpus is not used: {NO_CORPUS})")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The data folder: the corpus when it is there, else the fixtures in tests/data."""
    if not (DATA / "clips.csv").is_file():
        pytest.fail(f"the test data folder {DATA} (clips.csv, clips/, stills/) is missing")
    return DATA


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The training corpus itself, for the tests that need its splits; skips without it."""
    if not HAS_CORPUS:
        pytest.skip(NO_CORPUS)
    return SHARED_DATA


@pytest.fixture(scope="session")
def clip_rows(shared_data) -> list[dict]:
    with open(shared_data / "clips.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="session")
def stills(shared_data) -> list[Path]:
    return sorted((shared_data / "stills").glob("*/*.png"))


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory, shared_data, clip_rows) -> Path:
    """A 64² cache of 24 frames from three train clips (distinct identity groups) and one test clip."""
    from train.prepare import clips_from_csv, prepare

    clips = clips_from_csv(shared_data)
    chosen, groups = [], set()
    for c in clips:
        if c["split"] == "train" and c["identity_group"] not in groups and len(groups) < 3:
            chosen.append(c)
            groups.add(c["identity_group"])
    chosen.append(next(c for c in clips if c["split"] == "test"))
    out = tmp_path_factory.mktemp("cache") / "s64"
    summary = prepare(chosen, out, size=64, max_frames=24, progress=False)
    assert len(summary["built"]) == len(chosen), summary
    return out
