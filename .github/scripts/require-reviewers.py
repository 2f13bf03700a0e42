#!/usr/bin/env python3
"""Refuse to deploy a production stack whose GitHub environment has no required reviewers.

GitHub creates an environment, unprotected, the first time a job names it: without this guard a
newly merged production stack file would deploy with nobody's approval. Fails closed: any answer
but an environment that requires at least one reviewer stops the deployment.

    require-reviewers.py ENVIRONMENT   (reads GITHUB_REPOSITORY, GITHUB_TOKEN, GITHUB_API_URL)
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

HOW_TO_FIX = (
    "Settings > Environments > {name} > Required reviewers: add at least one person or team "
    "(and tick 'Prevent self-review'), then re-run this job."
)


def reviewers(environment: dict) -> list[str]:
    """Who must approve a job of this environment (empty when nobody must)."""
    names = []
    for rule in environment.get("protection_rules") or []:
        if rule.get("type") != "required_reviewers":
            continue
        for reviewer in rule.get("reviewers") or []:
            who = reviewer.get("reviewer") or {}
            names.append(f"{reviewer.get('type', '?')} {who.get('login') or who.get('slug') or who.get('name') or '?'}")
    return names


def fetch_environment(api: str, repository: str, name: str, token: str) -> dict:
    url = f"{api}/repos/{repository}/environments/{urllib.parse.quote(name, safe='')}"
    request = urllib.request.Request(
        url,
        headers={
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {token}",
            "X-GitHub-Api-Version": "2022-11-28",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1]:
        print("usage: require-reviewers.py ENVIRONMENT", file=sys.stderr)
        return 2
    name = argv[1]
    repository, token = os.environ.get("GITHUB_REPOSITORY", ""), os.environ.get("GITHUB_TOKEN", "")
    api = os.environ.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
    if not repository or not token:
        print("require-reviewers: GITHUB_REPOSITORY and GITHUB_TOKEN must be set; refusing to deploy", file=sys.stderr)
        return 1
    try:
        environment = fetch_environment(api, repository, name, token)
    except (urllib.error.URLError, OSError, ValueError) as err:
        print(
            f"require-reviewers: could not read environment {name!r} of {repository} ({err}); "
            "refusing to deploy. The job needs `permissions: actions: read`.",
            file=sys.stderr,
        )
        return 1
    approvers = reviewers(environment)
    if not approvers:
        print(
            f"require-reviewers: environment {name!r} requires no reviewers, so this production stack "
            f"would deploy unreviewed; refusing. {HOW_TO_FIX.format(name=name)}",
            file=sys.stderr,
        )
        return 1
    if environment.get("can_admins_bypass", True):
        print(
            f"require-reviewers: note: administrators may bypass {name!r}'s reviewers "
            "(untick 'Allow administrators to bypass configured protection rules' to prevent it)"
        )
    print(f"require-reviewers: {name!r} requires approval by {', '.join(approvers)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
