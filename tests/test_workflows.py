"""The GitHub workflows: valid against GitHub's schema, and previewing/deploying exactly our stacks."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from wis2node.stackfile import ROOT, STACKS, read_stack_file, stack_files

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


def test_the_matrix_is_exactly_the_stack_files_but_the_examples():
    run = subprocess.run([sys.executable, "-m", "wis2node", "stacks"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    matrix = json.loads(run.stdout)
    files = sorted(f.stack for f in stack_files() if not f.is_example)
    assert [entry["stack"] for entry in matrix] == files
    assert not {entry["stack"] for entry in matrix} & {"aq-examplemet-test", "aq-examplemet-prod"}
    for entry in matrix:
        environment = yaml.safe_load((STACKS / f"Pulumi.{entry['stack']}.yaml").read_text())["config"][
            "wis2-node:environment"
        ]
        assert entry["production"] is (environment == "production")


@pytest.mark.parametrize(
    "workflow,job,command,policy",
    [("pull-request.yml", "preview", "preview", "base/policy"), ("deploy.yml", "up", "up", "policy")],
)
def test_stack_jobs_run_pulumi_with_the_policy_pack_per_derived_stack(workflow, job, command, policy):
    jobs = load(workflow)["jobs"]
    assert "python -m wis2node stacks" in jobs["stacks"]["steps"][-1]["run"]
    stack_job = jobs[job]
    assert stack_job["strategy"]["matrix"]["include"] == "${{ fromJSON(needs.stacks.outputs.matrix) }}"
    assert "stacks" in stack_job["needs"]
    pulumi = next(step for step in stack_job["steps"] if step.get("uses", "").startswith("pulumi/actions@"))
    assert pulumi["with"]["command"] == command
    assert pulumi["with"]["stack-name"] == "${{ matrix.stack }}"
    assert pulumi["with"]["policyPacks"] == policy
    aws = next(
        step for step in stack_job["steps"] if step.get("uses", "").startswith("aws-actions/configure-aws-credentials@")
    )
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


# -- supply chain: what runs with credentials is what was reviewed ----------------------------------

DEPLOY_SECRETS = ("secrets.PULUMI_ACCESS_TOKEN", "secrets.PULUMI_CONFIG_PASSPHRASE", "vars.AWS_DEPLOY_ROLE_ARN")
FULL_SHA = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
GUARD = ROOT / ".github" / "scripts" / "require-reviewers.py"


def uses_lines(path: Path) -> list[tuple[str, str]]:
    """Every `uses:` of a workflow or action, with the comment after it (the tag it pins)."""
    found = []
    for line in path.read_text().splitlines():
        match = re.match(r"^\s*(?:- )?uses:\s*(\S+)\s*(?:#\s*(.*))?$", line)
        if match:
            found.append((match.group(1), match.group(2) or ""))
    return found


ACTION_FILES = WORKFLOWS + [ROOT / ".github" / "actions" / "setup" / "action.yml"]


@pytest.mark.parametrize("path", ACTION_FILES, ids=[p.name for p in ACTION_FILES])
def test_every_third_party_action_is_pinned_by_commit_sha(path):
    for action, comment in uses_lines(path):
        if action.startswith("./"):
            continue  # this repository's own action, reviewed with the rest
        assert FULL_SHA.match(action), f"{path.name}: {action} is not pinned by a full commit SHA"
        assert re.match(r"^v\d+(\.\d+)*$", comment), f"{path.name}: {action} lacks its tag as a comment"


def test_the_pin_check_refuses_a_tag(tmp_path):
    unpinned = tmp_path / "x.yml"
    unpinned.write_text("steps:\n  - uses: actions/checkout@v4\n  - uses: actions/checkout@11d5960a # v4\n")
    assert [bool(FULL_SHA.match(action)) for action, _ in uses_lines(unpinned)] == [False, False]


def test_pull_request_code_never_reaches_the_deploy_role_or_secrets():
    workflow = load("pull-request.yml")
    assert set(workflow[True]) == {"pull_request"}, "pull_request_target would hand PR code the base's secrets"
    for name, job in workflow["jobs"].items():
        text = yaml.safe_dump(job)
        assert "environment" not in job, f"{name}: an environment would change its OIDC subject and secrets"
        for reference in DEPLOY_SECRETS:
            assert reference not in text, f"{name} (runs pull-request code) uses {reference}"
    preview = workflow["jobs"]["preview"]
    aws = next(step for step in preview["steps"] if "configure-aws-credentials" in step.get("uses", ""))
    assert aws["with"]["role-to-assume"] == "${{ vars.AWS_PREVIEW_ROLE_ARN }}"
    assert preview["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_PREVIEW_ACCESS_TOKEN }}"
    base = [step for step in preview["steps"] if step.get("with", {}).get("path") == "base"]
    assert base and base[0]["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    for path in WORKFLOWS:
        for step in (s for job in load(path.name)["jobs"].values() for s in job.get("steps", [])):
            if "actions/checkout@" in step.get("uses", ""):
                assert step.get("with", {}).get("persist-credentials") is False, f"{path.name}: token left in .git"


def test_only_the_deploy_job_holds_deploy_power():
    workflow = load("deploy.yml")
    assert set(workflow[True]) == {"push", "workflow_dispatch"}
    for name, job in workflow["jobs"].items():
        text = yaml.safe_dump(job)
        if name == "up":
            continue
        for reference in DEPLOY_SECRETS:
            assert reference not in text, f"{name} uses {reference}"
    up = workflow["jobs"]["up"]
    aws = next(step for step in up["steps"] if "configure-aws-credentials" in step.get("uses", ""))
    assert aws["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
    assert up["permissions"] == {"contents": "read", "id-token": "write", "actions": "read"}


def guard_step() -> tuple[int, dict]:
    steps = load("deploy.yml")["jobs"]["up"]["steps"]
    index = next(i for i, step in enumerate(steps) if "require-reviewers.py" in step.get("run", ""))
    return index, steps[index]


def test_the_reviewers_guard_runs_before_anything_gets_credentials():
    steps = load("deploy.yml")["jobs"]["up"]["steps"]
    index, _ = guard_step()
    credentials = next(i for i, step in enumerate(steps) if "configure-aws-credentials" in step.get("uses", ""))
    pulumi = next(i for i, step in enumerate(steps) if "pulumi/actions@" in step.get("uses", ""))
    assert index < credentials < pulumi


class _GitHub(http.server.BaseHTTPRequestHandler):
    environments: ClassVar[dict] = {}

    def do_GET(self):
        name = self.path.rsplit("/", 1)[-1]
        if self.headers.get("Authorization") != "Bearer t" or name not in self.environments:
            self.send_response(404 if name not in self.environments else 401)
            self.end_headers()
            return
        body = json.dumps(self.environments[name]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def github_api():
    """A stand-in for GitHub's environments endpoint, answering as the REST API documents it."""
    _GitHub.environments = {
        "reviewed": {
            "name": "reviewed",
            "can_admins_bypass": False,
            "protection_rules": [
                {
                    "id": 1,
                    "type": "required_reviewers",
                    "prevent_self_review": True,
                    "reviewers": [{"type": "Team", "reviewer": {"slug": "wis2-operators"}}],
                }
            ],
        },
        "unprotected": {"name": "unprotected", "protection_rules": []},
        "timer-only": {"name": "timer-only", "protection_rules": [{"id": 2, "type": "wait_timer", "wait_timer": 5}]},
    }
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _GitHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def run_guard(api: str, stack: str, production: str, token: str = "t") -> subprocess.CompletedProcess:
    """The guard step's own shell, as the deploy job runs it."""
    _, step = guard_step()
    environment = {
        "PATH": os.environ["PATH"],
        "GITHUB_API_URL": api,
        "GITHUB_REPOSITORY": "centre/wis2-node",
        "GITHUB_TOKEN": token,
        "STACK": stack,
        "PRODUCTION": production,
    }
    return subprocess.run(
        ["bash", "-e", "-c", step["run"]], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


def test_a_production_stack_deploys_only_behind_required_reviewers(github_api):
    assert run_guard(github_api, "reviewed", "true").returncode == 0
    refused = run_guard(github_api, "unprotected", "true")
    assert refused.returncode != 0 and "Required reviewers" in refused.stderr and "unprotected" in refused.stderr
    assert run_guard(github_api, "timer-only", "true").returncode != 0


def test_the_reviewers_guard_fails_closed(github_api):
    assert run_guard(github_api, "never-created", "true").returncode != 0  # 404
    assert run_guard(github_api, "reviewed", "true", token="").returncode != 0
    assert run_guard("http://127.0.0.1:9", "reviewed", "true").returncode != 0  # nobody answers
    assert run_guard(github_api, "unprotected", "").returncode != 0  # production unknown: treated as production
    assert run_guard(github_api, "unprotected", "false").returncode == 0  # a test stack needs no reviewers


def test_example_stacks_are_recognised_by_their_reserved_domain(tmp_path):
    examples = [f for f in stack_files() if f.stack.startswith("aq-examplemet")]
    assert examples and all(f.is_example for f in examples)
    copy = tmp_path / "Pulumi.xx-met-test.yaml"
    copy.write_text(examples[0].path.read_text().replace("examplemet.example.org", "met.gov.xx"))
    assert not read_stack_file(copy).is_example
