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
    assert (
        "wis2-node:fqdn" in result.problems[0] and test.stack in result.problems[0] and prod.stack in result.problems[0]
    )


def test_cli_exits_non_zero_and_names_the_key(tmp_path):
    bad = tmp_path / "Pulumi.aq-examplemet-bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "config": {
                    **BASE.config,
                    "wis2-node:partners": [{"cidr": "0.0.0.0/0", "description": "everyone", "ports": [443]}],
                }
            }
        )
    )
    run = subprocess.run(
        [sys.executable, "-m", "wis2node", "check", str(bad)], cwd=ROOT, capture_output=True, text=True
    )
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


# -- what a centre's first stack file gets wrong -----------------------------------------------------


def run_check(*arguments: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wis2node", "check", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_missing_validator_bundles_say_which_command_to_run(tmp_path):
    import os

    run = run_check(env={**os.environ, "HOME": str(tmp_path)})
    assert run.returncode == 1
    assert "pywcmp bundle sync" in run.stderr and run.stderr.count("bundles are missing") == 1
    assert "Traceback" not in run.stderr and "record could not be tested" not in run.stderr


def test_a_stack_without_discovery_metadata_is_a_problem(tmp_path):
    lonely = tmp_path / "Pulumi.aq-examplemet-lonely-test.yaml"
    lonely.write_text(BASE.path.read_text().replace("wis2node-test.", "lonely-test."))
    run = run_check(str(lonely))
    assert run.returncode == 1 and "no discovery metadata record" in run.stderr, run.stderr
    assert "stacks/aq-examplemet-lonely-test/metadata" in run.stderr


@pytest.mark.parametrize(
    "key,expected",
    [
        ("wis2_node:partners", "did you mean wis2-node:partners?"),
        ("dataVolumeGb", "dataVolumeGb has no namespace, so nothing reads it; expected wis2-node:dataVolumeGb"),
        ("wis2node:alertEmails", "namespace 'wis2node' is read by nothing here"),
    ],
)
def test_keys_nothing_would_read_are_named(key, expected):
    result = check_stacks([StackFile(BASE.stack, BASE.path, {**BASE.config, key: "abc"})])
    assert not result.ok and expected in result.problems[0], result.problems


def test_provider_keys_still_pass():
    result = check_stacks([StackFile(BASE.stack, BASE.path, {**BASE.config, "aws:profile": "centre"})])
    assert result.ok, result.problems


def test_a_yaml_syntax_error_names_file_line_and_column(tmp_path):
    broken = tmp_path / "Pulumi.aq-examplemet-broken-test.yaml"
    lines = BASE.path.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("  wis2-node:fqdn:"))
    lines[index] = "  wis2-node:fqdn: wis2node: test.examplemet.example.org"  # a second colon
    broken.write_text("\n".join(lines) + "\n")
    run = run_check(str(broken))
    assert run.returncode != 0 and "Traceback" not in run.stderr
    column = lines[index].index("wis2node: ") + len("wis2node") + 1  # the second colon, counted from 1
    assert f"{broken}:{index + 1}:{column}: not valid YAML" in run.stderr, run.stderr


def test_an_instance_type_that_does_not_exist_is_caught_offline():
    result = check_stacks([StackFile(BASE.stack, BASE.path, {**BASE.config, "wis2-node:instanceType": "t4g.smal"})])
    assert any("wis2-node:instanceType = 't4g.smal'" in p and "t4g.small" in p for p in result.problems), (
        result.problems
    )


def test_a_record_of_another_centre_is_named_with_our_own_words(tmp_path, monkeypatch):
    import json

    from wis2node import metadata as metadata_module
    from wis2node.metadata import metadata_dir

    folder = tmp_path / BASE.stack / "metadata"
    folder.mkdir(parents=True)
    record = json.loads(next(metadata_dir(BASE.stack).glob("*.json")).read_text())
    record["links"][0]["channel"] = record["links"][0]["channel"].replace(
        BASE.config["wis2-node:centreId"], "aq-othermet-test"
    )
    (folder / "other.json").write_text(json.dumps(record))
    monkeypatch.setattr(metadata_module, "metadata_dir", lambda name, stacks=tmp_path: stacks / name / "metadata")
    result = check_stacks([BASE])
    centre = BASE.config["wis2-node:centreId"]
    assert "other.json" in result.problems[0] and f"origin/a/wis2/{centre}/..." in result.problems[0]
    assert "centre identifiers do not match" not in result.problems[0]


def test_a_copied_metadata_folder_is_named_record_by_record_in_one_run(tmp_path, monkeypatch):
    """A centre copies the example test stack and its metadata folder: one run names every record
    still carrying the example's centre-id, each with its path, not one record per run."""
    import shutil

    from wis2node import metadata as metadata_module
    from wis2node.metadata import metadata_dir
    from wis2node.stackfile import find_stack

    example = find_stack("aq-examplemet-test")
    stack = "aq-newmet-test"
    shutil.copytree(metadata_dir(example.stack), tmp_path / stack / "metadata")
    records = sorted(p.name for p in (tmp_path / stack / "metadata").glob("*.json"))
    assert len(records) >= 2
    monkeypatch.setattr(metadata_module, "metadata_dir", lambda name, stacks=tmp_path: stacks / name / "metadata")
    config = {**example.config, "wis2-node:centreId": stack, "wis2-node:fqdn": "newmet-test.examplemet.example.org"}
    result = check_stacks([StackFile(stack, example.path, config)])
    problems = "\n".join(result.problems)
    for name in records:
        assert (
            f"stacks/{stack}/metadata/{name}: id 'urn:wmo:md:aq-examplemet-test:" in problems
            and f"must start with urn:wmo:md:{stack}:" in problems
        ), problems
