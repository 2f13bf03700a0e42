"""Shared fixtures: every example stack evaluated once under Pulumi's mocks."""

from __future__ import annotations

import pytest

from tests.pulumi_harness import Deployment, run_stack_file
from wis2node.stackfile import StackFile, stack_files

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
