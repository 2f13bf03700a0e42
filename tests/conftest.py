"""Shared fixtures: the WMO validators' bundles, and every example stack evaluated under mocks."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from wis2node.localcloud import validator_home
from wis2node.stackfile import StackFile, stack_files

# pywcmp, pywis-pubsub and pywis-topics read their bundles from $HOME, fixed at import: give the
# whole test session a HOME holding ../shared's offline copies (or freshly synced ones).
VALIDATOR_HOME = validator_home(Path(tempfile.mkdtemp(prefix="wis2-validators-")))
atexit.register(shutil.rmtree, VALIDATOR_HOME, True)
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
