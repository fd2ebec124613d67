"""Shared fixtures: offline environment, and the demo ocean built once per test session.

`demo_ocean` trains the fast symbols ocean (`composer build-demo --ocean symbols --fast`,
~2 minutes on 2 cores: the quickest to train; the tests assert relations that do not depend
on the ocean, and the default domains ocean has model-free tests in test_demo.py) into a
session temp dir and returns its registry and build directory. Set
COMPOSER_TEST_OCEAN=/some/dir to keep and reuse one across local runs (CI builds fresh).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["COMPOSER_QUIET"] = "1"  # for the subprocesses the tests start
# Exactness against PEFT is defined in float32 on the CPU, also on a machine with a GPU; the tests
# marked `gpu` ask for CUDA themselves. A developer may still point the suite elsewhere.
os.environ.setdefault("COMPOSER_DEVICE", "cpu")
os.environ.setdefault("COMPOSER_DTYPE", "float32")


def pytest_configure(config):
    from composer.progress import set_quiet

    set_quiet(True)


@pytest.fixture(scope="session")
def demo_ocean(tmp_path_factory):
    from composer.demo.build import build_demo
    from registry import Registry

    keep = os.environ.get("COMPOSER_TEST_OCEAN")
    home = Path(keep) if keep else tmp_path_factory.mktemp("ocean")
    out = home / "demo"
    if not (out / "report.json").exists():
        build_demo(Registry(home=home), out, fast=True, seed=0, log=lambda *a: None, ocean="symbols")
    reg = Registry(home=home)
    report = json.loads((out / "report.json").read_text())
    return SimpleNamespace(home=home, out=out, registry=reg, report=report)
