"""The GitHub workflows: valid against GitHub's schema, and previewing/deploying exactly our stacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from wis2node.stackfile import ROOT, STACKS

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
CHECK_JSONSCHEMA = str(Path(sys.executable).parent / "check-jsonschema")


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())


def validate(path: Path, schema: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHECK_JSONSCHEMA, "--builtin-schema", schema, str(path)], capture_output=True, text=True)


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_workflow_is_valid(path):
    checked = validate(path, "vendor.github-workflows")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_setup_action_is_valid():
    checked = validate(ROOT / ".github" / "actions" / "setup" / "action.yml", "vendor.github-actions")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_schema_check_catches_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: [push]\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    stepz: []\n")
    assert validate(broken, "vendor.github-workflows").returncode != 0


def test_the_matrix_is_exactly_the_stack_files():
    run = subprocess.run([sys.executable, "-m", "wis2node", "stacks"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    matrix = json.loads(run.stdout)
    files = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in STACKS.glob("Pulumi.*.yaml"))
    assert [entry["stack"] for entry in matrix] == files
    for entry in matrix:
        environment = yaml.safe_load((STACKS / f"Pulumi.{entry['stack']}.yaml").read_text())["config"][
            "wis2-node:environment"]
        assert entry["production"] is (environment == "production")


@pytest.mark.parametrize("workflow,job,command", [("pull-request.yml", "preview", "preview"),
                                                  ("deploy.yml", "up", "up")])
def test_stack_jobs_run_pulumi_with_the_policy_pack_per_derived_stack(workflow, job, command):
    jobs = load(workflow)["jobs"]
    assert "python -m wis2node stacks" in jobs["stacks"]["steps"][-1]["run"]
    stack_job = jobs[job]
    assert stack_job["strategy"]["matrix"]["include"] == "${{ fromJSON(needs.stacks.outputs.matrix) }}"
    assert "stacks" in stack_job["needs"]
    pulumi = next(step for step in stack_job["steps"] if step.get("uses", "").startswith("pulumi/actions@"))
    assert pulumi["with"]["command"] == command
    assert pulumi["with"]["stack-name"] == "${{ matrix.stack }}"
    assert pulumi["with"]["policyPacks"] == "policy"
    aws = next(step for step in stack_job["steps"]
               if step.get("uses", "").startswith("aws-actions/configure-aws-credentials@"))
    assert set(aws["with"]) == {"role-to-assume", "aws-region"}, "OIDC only, no long-lived keys"
    assert stack_job["permissions"]["id-token"] == "write"


def test_previews_comment_once_per_stack_and_skip_forks():
    preview = load("pull-request.yml")["jobs"]["preview"]
    pulumi = next(step for step in preview["steps"] if step.get("uses", "").startswith("pulumi/actions@"))
    assert pulumi["with"]["comment-on-pr"] is True and pulumi["with"]["edit-pr-comment"] is True
    assert pulumi["with"]["diff"] is True
    assert "head.repo.full_name == github.repository" in preview["if"]


def test_pull_requests_run_the_test_command_and_the_offline_check():
    jobs = load("pull-request.yml")["jobs"]
    assert any(step.get("run") == "make test" for step in jobs["test"]["steps"])
    assert any(step.get("run") == "python -m wis2node check" for step in jobs["check"]["steps"])


def test_each_stack_deploys_behind_its_own_environment():
    up = load("deploy.yml")["jobs"]["up"]
    assert up["environment"] == "${{ matrix.stack }}"
    assert set(up["needs"]) == {"test", "stacks"}
    assert load("deploy.yml")[True]["push"]["branches"] == ["main"]  # YAML reads `on:` as True


def test_no_long_lived_aws_keys_anywhere():
    for path in WORKFLOWS:
        text = path.read_text()
        assert "aws-access-key-id" not in text and "AWS_SECRET_ACCESS_KEY" not in text
