"""Which stack changes replace the VM, under mocks: the instance is replaced when its user data
(user_data_replace_on_change), image or subnet changes, or when the data volume is replaced. What
can change in place reaches the node through the runtime parameter (or the SSM parameters and
Pulumi-managed resources it already reads), never through user data. README, "Changes and the
VM", lists the keys that replace it: the same list as here."""

from __future__ import annotations

import json
import re

import pytest

from tests.components.test_tls import parameters
from tests.pulumi_harness import Deployment, mock_certificate, run_program
from wis2node.settings import NodeSettings
from wis2node.stackfile import ROOT, find_stack

TEST = find_stack("aq-examplemet-test")
FQDN = TEST.config["wis2-node:fqdn"]
INSTANCE = "aws:ec2/instance:Instance"
VOLUME = "aws:ebs/volume:Volume"
PROVIDED = {
    "wis2-node:tlsMode": "provided",
    "wis2-node:certificateAuthority": "digicert.com",
    "wis2-node:certificate": mock_certificate(FQDN),
}

# key -> (the base it changes from (extra settings), the new value)
IN_PLACE = {
    "wis2-node:retentionDays": ({}, 7),
    "wis2-node:maxFileMb": ({}, 50),
    "wis2-node:alertEmails": ({}, ["night-shift@examplemet.example.org"]),
    "wis2-node:cpuAlarmPercent": ({}, 70),
    "wis2-node:memoryAlarmPercent": ({}, 70),
    "wis2-node:diskAlarmPercent": ({}, 70),
    "wis2-node:certificateAlarmDays": ({}, 14),
    "wis2-node:rebootTime": ({}, "05:00"),  # the runtime parameter; wis2-config rewrites apt's file
    "wis2-node:snapshotRetentionDays": ({}, 30),
    "wis2-node:logRetentionDays": ({}, 90),
    "wis2-node:partners": ({}, [{"cidr": "192.0.2.0/24", "description": "new partner", "ports": [8883]}]),
    "wis2-node:openToInternet": ({}, [443, 8883]),
    "wis2-node:globalServices": ({}, False),
    "wis2-node:excludeOperators": ({}, ["jp-jma"]),
    "wis2-node:uploaderPrincipals": ({}, ["arn:aws:iam::210987654321:role/message-switch"]),
    "wis2-node:tags": ({}, {"cost-centre": "other"}),
    "wis2-node:centreName": ({}, "Another Name"),
    "wis2-node:contactEmail": ({}, "other@examplemet.example.org"),
    "wis2-node:instanceType": ({}, "t4g.medium"),  # in place: AWS stops and starts the instance
    "wis2-node:rootVolumeGb": ({}, 32),  # in place: the volume grows
    "wis2-node:dataVolumeGb": ({}, 40),  # in place: the volume grows
    "wis2-node:certificate": (PROVIDED, mock_certificate(FQDN)),  # its SSM parameter; the node's timer installs it
    "wis2-node:certificateAuthority": (PROVIDED, "sectigo.com"),  # the CAA record
}
REPLACES = {
    "wis2-node:fqdn": ({}, "wis2node-other.examplemet.example.org"),
    "wis2-node:tlsMode": ({}, "self-signed"),
    "wis2-node:imageId": ({}, "ami-0fedcba9876543210"),
    "wis2-node:subnetId": ({}, "subnet-0fedcba9876543210"),
    "wis2-node:availabilityZone": ({}, "eu-west-1b"),
    "wis2-node:dataVolumeSnapshotId": ({}, "snap-0123456789abcdef0"),
}
# A new node altogether (its identity, its region): not evaluated alone here, listed in the README.
IDENTITY = ("wis2-node:centreId", "wis2-node:environment", "wis2-node:hostedZone", "aws:region")


def replacing_inputs(deployment: Deployment) -> dict:
    instance = deployment.one(INSTANCE).inputs
    volume = deployment.one(VOLUME).inputs
    return {
        "userDataBase64": instance["userDataBase64"],
        "ami": instance.get("ami"),
        "subnetId": instance.get("subnetId"),
        "volume": {k: volume.get(k) for k in ("availabilityZone", "snapshotId", "encrypted", "type")},
    }


def evaluate(extra: dict, key: str | None = None, value=None) -> dict:
    config = {**TEST.config, **extra}
    if key:
        config[key] = value
    return replacing_inputs(run_program(TEST.stack, config))


BASES: dict[str, dict] = {}


def base(extra: dict) -> dict:
    name = json.dumps(extra, sort_keys=True)
    if name not in BASES:
        BASES[name] = evaluate(extra)
    return BASES[name]


@pytest.mark.parametrize("key", sorted(IN_PLACE))
def test_a_change_in_place_leaves_the_instance(key):
    extra, value = IN_PLACE[key]
    assert TEST.config.get(key, extra.get(key)) != value
    assert evaluate(extra, key, value) == base(extra), f"{key} would replace the VM"


@pytest.mark.parametrize("key", sorted(REPLACES))
def test_a_change_that_needs_a_new_machine_replaces_it(key):
    extra, value = REPLACES[key]
    assert evaluate(extra, key, value) != base(extra)


def test_a_new_retention_changes_only_the_runtime_parameter():
    before = run_program(TEST.stack, TEST.config)
    after = run_program(TEST.stack, {**TEST.config, "wis2-node:retentionDays": 7})
    assert after.one(INSTANCE).inputs["userDataBase64"] == before.one(INSTANCE).inputs["userDataBase64"]
    assert json.loads(parameters(after)["runtime-config"]["plain_value"])["publishing"]["retention_days"] == 7
    assert "retention_days" not in before.one(INSTANCE).user_data


def test_every_key_is_classified_and_the_readme_lists_the_replacing_ones():
    assert set(IN_PLACE) | set(REPLACES) | set(IDENTITY) == set(NodeSettings.config_keys())
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Changes and the VM", 1)[1].split("\n#", 1)[0]
    listed = set(re.findall(r"`((?:wis2-node|aws):[A-Za-z]+)`", section.split("In place:", 1)[0]))
    assert listed == {*REPLACES, *IDENTITY}
    in_place = set(re.findall(r"`((?:wis2-node|aws):[A-Za-z]+)`", section.split("In place:", 1)[1]))
    assert in_place == set(IN_PLACE)
