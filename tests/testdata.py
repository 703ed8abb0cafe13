"""Where the tests' data is: the corpus at ../shared/data when present, else tests/data.

Both folders have one layout (clips.csv, clips/, stills/<name>/<name>1..5.png). Read by both
conftest files; `tests/` is on sys.path because of its rootdir conftest.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CAINGAN_SHARED_DATA", REPO.parent / "shared" / "data"))
FIXTURE_DATA = REPO / "tests" / "data"
HAS_CORPUS = (os.environ.get("CAINGAN_TEST_CORPUS", "1") != "0"
              and (SHARED_DATA / "clips.csv").is_file())
DATA = SHARED_DATA if HAS_CORPUS else FIXTURE_DATA
STILLS = DATA / "stills"
NO_CORPUS = (f"needs the training corpus at {SHARED_DATA} (clips.csv, clips/; "
             f"set CAINGAN_SHARED_DATA to use another place)")
PEOPLE = sorted(p.name for p in STILLS.iterdir() if p.is_dir()) if STILLS.is_dir() else []


def still(person: int, photo: int) -> Path:
    """Photo `photo` (1-5) of the `person`-th person of the stills (folders in name order: each
    folder is one person, in the corpus and in tests/data alike)."""
    name = PEOPLE[person]
    return STILLS / name / f"{name}{photo}.png"
