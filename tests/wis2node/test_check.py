"""`python -m wis2node check`: the program's validation, offline, plus checks across stacks."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.components.test_bad_input import BASE, CASES
from wis2node.check import check_stacks
from wis2node.stackfile import ROOT, StackFile, stack_files

# What only AWS can answer (does the type exist in the region?) is checked by preview, not offline.
OFFLINE_CASES = {name: case for name, case in CASES.items() if name != "unknown instance type"}


def test_example_stacks_pass():
    run = subprocess.run([sys.executable, "-m", "wis2node", "check"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    for stack_file in stack_files():
        assert f"{stack_file.stack}: " in run.stdout
    assert "MQTTS 8883" in run.stdout and "TLS letsencrypt" in run.stdout


@pytest.mark.parametrize("change,config_key,detail", OFFLINE_CASES.values(), ids=OFFLINE_CASES.keys())
def test_each_bad_input_fails_naming_the_key(change, config_key, detail):
    result = check_stacks([StackFile(BASE.stack, BASE.path, {**BASE.config, **change})])
    assert not result.ok
    assert config_key in result.problems[0] and detail in result.problems[0], result.problems


@pytest.mark.parametrize("missing", ["wis2-node:centreId", "wis2-node:fqdn", "aws:region"])
def test_missing_keys_are_named(missing):
    result = check_stacks([StackFile(BASE.stack, BASE.path, {k: v for k, v in BASE.config.items() if k != missing})])
    assert f"{missing} is required" in result.problems[0]


def test_misspelt_key_is_named():
    result = check_stacks([StackFile(BASE.stack, BASE.path, {**BASE.config, "wis2-node:instanceTyp": "t4g.small"})])
    assert "wis2-node:instanceTyp is not a setting" in result.problems[0]


def test_two_stacks_sharing_an_fqdn_are_refused():
    test, prod = sorted(stack_files(), key=lambda s: s.stack.endswith("-prod"))
    clash = StackFile(test.stack, test.path, {**test.config, "wis2-node:fqdn": prod.config["wis2-node:fqdn"]})
    result = check_stacks([clash, prod])
    assert len(result.problems) == 1
    assert "wis2-node:fqdn" in result.problems[0] and test.stack in result.problems[0] and prod.stack in result.problems[0]


def test_cli_exits_non_zero_and_names_the_key(tmp_path):
    bad = tmp_path / "Pulumi.aq-examplemet-bad.yaml"
    bad.write_text(yaml.safe_dump({"config": {**BASE.config, "wis2-node:partners": [
        {"cidr": "0.0.0.0/0", "description": "everyone", "ports": [443]}]}}))
    run = subprocess.run([sys.executable, "-m", "wis2node", "check", str(bad)], cwd=ROOT, capture_output=True,
                         text=True)
    assert run.returncode == 1
    assert "wis2-node:partners[0].cidr = '0.0.0.0/0'" in run.stderr


def test_invalid_discovery_metadata_fails_the_check(tmp_path, monkeypatch):
    import json

    from wis2node import metadata as metadata_module
    from wis2node.metadata import metadata_dir

    stack = next(s for s in stack_files() if s.stack.endswith("-test"))
    folder = tmp_path / stack.stack / "metadata"
    folder.mkdir(parents=True)
    record = json.loads(next(metadata_dir(stack.stack).glob("*.json")).read_text())
    record["properties"].pop("description")
    (folder / "broken.json").write_text(json.dumps(record))
    monkeypatch.setattr(metadata_module, "metadata_dir", lambda name, stacks=tmp_path: stacks / name / "metadata")
    result = check_stacks([stack])
    assert not result.ok and "broken.json" in result.problems[0], result.problems
