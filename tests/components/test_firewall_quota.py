"""The node's security groups fit AWS's default quotas for every stack the settings accept.

AWS (Amazon VPC quotas, "Security groups"): 60 inbound rules per security group, counted
separately for IPv4 and IPv6; 5 security groups per network interface. A rule that references an
AWS-managed prefix list counts as the list's weight (Amazon VPC, "AWS-managed prefix lists"):
25 for com.amazonaws.<region>.route53-healthchecks and its ipv6 twin. The counts below come from
what the program declares, not from the settings' own arithmetic.
"""

from __future__ import annotations

import ipaddress
from collections import Counter

import pulumi
import pytest

from tests.pulumi_harness import Deployment, run_program
from wis2node.node import catalogue
from wis2node.node.catalogue import GlobalService
from wis2node.stackfile import StackFile, find_stack

RULES_PER_GROUP = 60
GROUPS_PER_INTERFACE = 5
# Weights AWS documents for the managed lists the program may reference, by name (region removed).
MANAGED_LIST_WEIGHTS = {"route53-healthchecks": (4, 25), "ipv6.route53-healthchecks": (6, 25)}

SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
INSTANCE = "aws:ec2/instance:Instance"


def prefix_lists(deployment: Deployment) -> dict[str, tuple[int, int]]:
    """(IP version, weight) of every prefix list the program looked up, by the id AWS answered."""
    found = {}
    for token, args in deployment.calls:
        if token == "aws:ec2/getManagedPrefixList:getManagedPrefixList":
            name = args["name"].split(".", 3)[3]  # com.amazonaws.<region>.<list>
            found["pl-0123456789abcdef0"] = MANAGED_LIST_WEIGHTS[name]  # the harness's answer
    return found


def rule_counts(deployment: Deployment) -> dict[str, Counter]:
    """Rules each security group counts against AWS's quota: (direction, IP version) -> count."""
    weights = prefix_lists(deployment)
    by_id = {f"{group.name}-id": group.name for group in deployment.of_type(SECURITY_GROUP)}
    counts: dict[str, Counter] = {name: Counter() for name in by_id.values()}
    for direction, type_ in (("in", INGRESS), ("out", EGRESS)):
        for rule in deployment.of_type(type_):
            inputs = rule.inputs
            group = by_id[inputs["securityGroupId"]]
            if "prefixListId" in inputs:
                version, weight = weights[inputs["prefixListId"]]  # an unknown list cannot be counted
            else:
                version, weight = ipaddress.ip_network(inputs.get("cidrIpv4") or inputs["cidrIpv6"]).version, 1
            counts[group][(direction, version)] += weight
    return counts


def assert_within_quota(deployment: Deployment) -> dict[str, Counter]:
    counts = rule_counts(deployment)
    for group, count in counts.items():
        over = {key: n for key, n in count.items() if n > RULES_PER_GROUP}
        assert not over, f"security group {group} needs {over} rules, AWS's default quota is {RULES_PER_GROUP}"
    worn = deployment.one(INSTANCE).inputs["vpcSecurityGroupIds"]
    assert len(worn) <= GROUPS_PER_INTERFACE
    return counts


def test_every_example_stack_fits_the_default_quota(stack_file: StackFile, deployment: Deployment):
    counts = assert_within_quota(deployment)
    # the health checkers' two rules (2 x 25) are in a group without any address rule
    checkers = [group for group, count in counts.items() if count[("in", 4)] == 50]
    assert len(checkers) == 1 and counts[checkers[0]][("in", 6)] == 0


def networks(version: int, count: int) -> list[str]:
    base = ipaddress.ip_network("10.0.0.0/24" if version == 4 else "fd00::/48")
    return [
        str(ipaddress.ip_network((int(base.network_address) + i * base.num_addresses, base.prefixlen)))
        for i in range(count)
    ]


def partners(version: int, count: int, ports=(443, 8883)) -> list[dict]:
    return [
        {"cidr": cidr, "description": f"partner {i}", "ports": list(ports)}
        for i, cidr in enumerate(networks(version, count))
    ]


PROD = find_stack("aq-examplemet-prod")
# The largest allowlist the settings accept: the whole catalogue, both ports open to everyone, and
# as many partners on both ports as the quota leaves room for, in IPv4 and in IPv6.
LARGEST = {
    **PROD.config,
    "wis2-node:globalServices": True,
    "wis2-node:excludeOperators": [],
    "wis2-node:openToInternet": [443, 8883],
    "wis2-node:partners": partners(4, 29) + partners(6, 29),
}


def test_the_largest_allowlist_the_settings_accept_fits_the_default_quota():
    deployment = run_program(PROD.stack, LARGEST)
    counts = assert_within_quota(deployment)
    # it is the largest: a group holds exactly the quota in each IP version
    assert max(count[("in", 4)] for count in counts.values()) == RULES_PER_GROUP
    assert max(count[("in", 6)] for count in counts.values()) == RULES_PER_GROUP


@pytest.mark.parametrize("version", [4, 6], ids=["ipv4", "ipv6"])
def test_one_more_rule_is_refused_naming_the_keys_to_change(version: int):
    extra = {"cidr": networks(version, 30)[-1], "description": "one too many", "ports": [443]}
    with pytest.raises(pulumi.RunError) as refused:
        run_program(PROD.stack, {**LARGEST, "wis2-node:partners": LARGEST["wis2-node:partners"] + [extra]})
    message = str(refused.value)
    assert "wis2-node:partners" in message and "wis2-node:openToInternet" in message, message
    assert f"at most 60 inbound IPv{version} rules" in message and "needs 61" in message, message


def test_a_grown_catalogue_is_refused_naming_the_keys_to_change(monkeypatch):
    grown = tuple(GlobalService("global-cache", f"xx-operator{i // 10}", f"192.0.2.{i}") for i in range(61))
    monkeypatch.setattr(catalogue, "global_services", lambda: grown)
    config = {**PROD.config, "wis2-node:partners": partners(4, 1)}
    with pytest.raises(pulumi.RunError) as refused:
        run_program(PROD.stack, config)
    message = str(refused.value)
    for key in ("wis2-node:excludeOperators", "wis2-node:globalServices", "wis2-node:partners"):
        assert key in message, message
    accepted = run_program(PROD.stack, {**config, "wis2-node:excludeOperators": ["xx-operator0"]})
    assert_within_quota(accepted)
