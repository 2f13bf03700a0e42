"""The firewall fits the data policy (issue 13 item 4): recommended data is downloadable by anyone.

WIS2 Guide part 1 §1.3.3.6: a node may filter its HTTPS port by source address only when it
publishes core data alone. A stack whose records declare data under `recommended` with 443
filtered is refused by `python -m wis2node check` and by the preview, naming
wis2-node:openToInternet and the record.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import pulumi
import pytest

from tests.pulumi_harness import run_program
from wis2node.check import check_stacks
from wis2node.metadata import MetadataRecord, load_records, metadata_dir
from wis2node.stackfile import ROOT, StackFile, find_stack

TEST_STACK = find_stack("aq-examplemet-test")
PROD_STACK = find_stack("aq-examplemet-prod")
RECOMMENDED = "stacks/aq-examplemet-test/metadata/regional-model-short-range.json"


def restricted(stack_file: StackFile, ports: list[int]) -> StackFile:
    return replace(stack_file, config={**stack_file.config, "wis2-node:openToInternet": ports})


def test_the_example_stacks_publish_a_core_and_a_recommended_dataset():
    policies = {
        json.loads(record.content)["properties"]["wmo:dataPolicy"]
        for stack in (TEST_STACK, PROD_STACK)
        for record in load_records(stack.settings())
    }
    assert policies == {"core", "recommended"}
    assert 443 in TEST_STACK.settings().open_to_internet


@pytest.mark.parametrize("ports", [[], [8883]])
def test_the_preview_refuses_recommended_data_behind_a_filtered_https_port(ports):
    with pytest.raises(pulumi.RunError) as refused:
        run_program(TEST_STACK.stack, restricted(TEST_STACK, ports).config)
    message = str(refused.value)
    assert "wis2-node:openToInternet" in message and RECOMMENDED in message and "recommended" in message, message


def test_check_refuses_it_too(tmp_path):
    text = TEST_STACK.path.read_text()
    assert "wis2-node:openToInternet: [443]" in text
    copy = tmp_path / TEST_STACK.path.name
    copy.write_text(text.replace("wis2-node:openToInternet: [443]", "wis2-node:openToInternet: []"))
    done = subprocess.run(
        [sys.executable, "-m", "wis2node", "check", str(copy)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    refusal = [line for line in done.stderr.splitlines() if "wis2-node:openToInternet" in line]
    assert len(refusal) == 1 and RECOMMENDED in refusal[0], done.stderr
    assert "1 problems" in done.stdout
    # and the same stack as committed (443 open) passes
    assert check_stacks([TEST_STACK]).ok


def test_a_recommended_topic_counts_even_if_the_policy_says_core():
    """The topic is what Global Services and caches go by: data/recommended/... is recommended data."""
    record = next(r for r in load_records(TEST_STACK.settings()) if r.path.name.startswith("regional"))
    document = json.loads(record.content)
    document["properties"]["wmo:dataPolicy"] = "core"
    mislabelled = MetadataRecord(path=record.path, id=record.id, content=json.dumps(document).encode())
    problems = restricted(TEST_STACK, []).settings().open_data_problems([mislabelled])
    assert len(problems) == 1 and "data/recommended/weather" in problems[0], problems


def test_core_data_alone_may_stay_behind_a_filtered_https_port():
    settings = PROD_STACK.settings()
    assert 443 not in settings.open_to_internet
    records = load_records(settings, metadata_dir(PROD_STACK.stack))
    assert records and settings.open_data_problems(records) == []
    assert run_program(PROD_STACK.stack, PROD_STACK.config).outputs["https_url"]
