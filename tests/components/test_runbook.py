"""Every alarm the stack declares has a runbook section in the README, and its description ends
with that section's anchor."""

from __future__ import annotations

import re

from tests.pulumi_harness import Deployment
from wis2node.alarms import HEALTH_CHECK_ALARMS, NODE_ALARMS
from wis2node.stackfile import ROOT

README = (ROOT / "README.md").read_text()


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def sections() -> dict[str, str]:
    runbook = README.split("\n## Runbook\n", 1)[1].split("\n## ", 1)[0]
    parts = re.split(r"^#### (.+)$", runbook, flags=re.M)
    return {github_anchor(parts[i]): parts[i + 1] for i in range(1, len(parts), 2)}


def test_each_declared_alarm_points_at_its_runbook_section(stack_file, deployment: Deployment):
    found = sections()
    alarms = deployment.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    assert alarms
    for alarm in alarms:
        label = alarm.inputs["name"].removeprefix(f"{stack_file.stack}-")
        description = alarm.inputs["alarmDescription"]
        anchor = description.rsplit("README.md#", 1)[-1]
        assert description.endswith(f"Runbook: README.md#{anchor}"), description
        assert anchor == f"alarm-{label}" and anchor in found, f"no runbook section for {label}"
        text = found[anchor]
        assert re.search(r"python -m wis2node|`logs|`status|`verify|aws |pulumi |systemctl|journalctl", text), (
            f"the runbook of {label} names no command"
        )
        assert len(description) <= 1024, "CloudWatch's limit for a description"


def test_the_runbook_has_no_section_for_an_alarm_that_does_not_exist():
    declared = {f"alarm-{label}" for label in NODE_ALARMS + HEALTH_CHECK_ALARMS}
    assert set(sections()) - {"tearing-down"} <= declared | set()
    assert {a for a in sections() if a.startswith("alarm-")} == declared
