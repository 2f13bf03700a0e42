"""IAM documents the components share, as pure functions of what they name."""

from __future__ import annotations

from typing import Any


def trust_policy(principal: dict[str, Any]) -> dict[str, Any]:
    """Who may assume a role: one principal, e.g. {"Service": "ec2.amazonaws.com"} or {"AWS": [role ARNs]}."""
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": principal}],
    }
