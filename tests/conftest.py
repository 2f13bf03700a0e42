"""Shared fixtures: the WMO validators' bundles, and every example stack evaluated under mocks."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from wis2node.stackfile import ROOT, StackFile, stack_files

# pywcmp, pywis-pubsub and pywis-topics read their bundles from $HOME, fixed at import: give the
# whole test session a HOME holding ../shared's offline copies (or freshly synced ones).
SHARED_BUNDLES = ROOT.parent / "shared" / "reference" / "wis2-bundles" / "home"
VALIDATOR_HOME = Path(tempfile.mkdtemp(prefix="wis2-validators-"))
atexit.register(shutil.rmtree, VALIDATOR_HOME, True)
if SHARED_BUNDLES.is_dir():
    shutil.copytree(SHARED_BUNDLES, VALIDATOR_HOME, dirs_exist_ok=True)
    for path in [VALIDATOR_HOME, *VALIDATOR_HOME.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
else:  # a machine with internet (e.g. GitHub Actions): let the tools fetch their own
    bin_dir = Path(sys.executable).parent
    for command in (["pywis-pubsub", "schema", "sync"], ["pywis-topics", "bundle", "sync"],
                    ["pywcmp", "bundle", "sync"]):
        subprocess.run([str(bin_dir / command[0]), *command[1:]], check=True,
                       env={**os.environ, "HOME": str(VALIDATOR_HOME)})
os.environ["HOME"] = str(VALIDATOR_HOME)

from tests.pulumi_harness import Deployment, run_stack_file  # noqa: E402

STACKS = stack_files()


@pytest.fixture(scope="session")
def deployments() -> dict[str, Deployment]:
    return {stack_file.stack: run_stack_file(stack_file) for stack_file in STACKS}


@pytest.fixture(params=STACKS, ids=[s.stack for s in STACKS])
def stack_file(request) -> StackFile:
    return request.param


@pytest.fixture
def deployment(stack_file: StackFile, deployments: dict[str, Deployment]) -> Deployment:
    return deployments[stack_file.stack]
