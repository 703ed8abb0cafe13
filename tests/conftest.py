"""Shared fixtures: the real data beside the repository and a tiny landmark cache built from it.

The data (../shared/data) is never copied into the repository; CI has it at the same place.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains or renders for tens of seconds")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "clips.csv").is_file():
        pytest.fail(f"the shared data folder {SHARED_DATA} (clips.csv, stills/) is missing; "
                    f"the tests run on real faces from it")
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
