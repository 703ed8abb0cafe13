"""Console entries of the training side: `caingan-train`, `caingan-prepare`, `caingan-eval`.

Each imports its command inside caingan.cli.run_main, so a Ctrl-C while torch, OpenCV and dlib
load ends like one at any other time: exit status 130 and one line. This module imports nothing
heavy itself.
"""

from __future__ import annotations

from importlib import import_module
from typing import Sequence

from caingan.cli import run_main


def _main_of(module: str):
    return lambda: import_module(module).main


def train(argv: Sequence[str] | None = None) -> int:
    return run_main("caingan-train", _main_of("train.train"), argv)


def prepare(argv: Sequence[str] | None = None) -> int:
    return run_main("caingan-prepare", _main_of("train.prepare"), argv)


def evaluate(argv: Sequence[str] | None = None) -> int:
    return run_main("caingan-eval", _main_of("train.evaluation.run"), argv)
