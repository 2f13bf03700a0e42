"""What `pulumi up` matches a deployed stack's state by: the URN of every resource the program declares.

A resource whose URN changes (its name, its type, or the chain of components above it) is deleted and
made anew, with a new address, instance or bucket. urns.json holds the URNs the program declared for
each example stack and each of its variants when they were last meant to change; a refactor must
leave them alone, or give the resource `aliases` for its old URN and update the file on purpose
(`python -m tests.components.test_urns` writes it anew).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.pulumi_harness import mock_certificate, run_program
from wis2node.stackfile import StackFile, stack_files

GOLDEN = Path(__file__).with_name("urns.json")
UPLOADER = "arn:aws:iam::123456789012:role/uploader"


def variants(stack_file: StackFile) -> dict[str, dict[str, Any]]:
    """The stack as it is, and with each conditional part of the node switched on."""
    config = stack_file.config
    found = {
        "as-is": config,
        "provided": {
            **config,
            "wis2-node:tlsMode": "provided",
            "wis2-node:certificate": mock_certificate(config["wis2-node:fqdn"]),
            "wis2-node:certificateAuthority": "digicert.com",
        },
        "uploader-role": {**config, "wis2-node:uploaderPrincipals": [UPLOADER]},
    }
    if config.get("wis2-node:environment") != "production":
        found["self-signed"] = {**config, "wis2-node:tlsMode": "self-signed"}
    return found


CASES = [(stack_file, variant) for stack_file in stack_files() for variant in variants(stack_file)]


def declared_urns(stack_file: StackFile, variant: str) -> list[str]:
    return sorted(run_program(stack_file.stack, variants(stack_file)[variant]).urns)


@pytest.mark.parametrize(("stack_file", "variant"), CASES, ids=[f"{s.stack}-{v}" for s, v in CASES])
def test_the_program_declares_the_urns_of_deployed_stacks(stack_file: StackFile, variant: str):
    expected = json.loads(GOLDEN.read_text())[f"{stack_file.stack}/{variant}"]
    declared = declared_urns(stack_file, variant)
    assert {"gone": sorted(set(expected) - set(declared)), "new": sorted(set(declared) - set(expected))} == {
        "gone": [],
        "new": [],
    }
    assert len(declared) == len(set(declared)), "two resources share a URN"


if __name__ == "__main__":
    import tests.conftest  # noqa: F401  (the validators' HOME, as under pytest)

    GOLDEN.write_text(
        json.dumps({f"{s.stack}/{v}": declared_urns(s, v) for s, v in CASES}, indent=1, sort_keys=True) + "\n"
    )
