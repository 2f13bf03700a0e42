"""The policy pack's validators against what the program declares (under Pulumi's mocks)."""

from __future__ import annotations

import copy
import json

import pytest

from policy import rules
from tests.pulumi_harness import Deployment, run_program
from wis2node.settings import WIS2_PORTS, standard_tags
from wis2node.stackfile import find_stack


def resources(deployment: Deployment) -> list[rules.Resource]:
    return [rules.Resource(r.type, r.name, copy.deepcopy(r.inputs)) for r in deployment.resources]


def test_every_example_stack_passes(deployment: Deployment):
    assert rules.violations(resources(deployment)) == {
        name: [] for name in [r.name for r in rules.RESOURCE_RULES] + ["no-self-signed-in-production"]
    }


def test_the_pack_knows_the_node_s_ports_and_standard_tags():
    assert set(WIS2_PORTS) == rules.WIS2_PORTS
    assert set(rules.REQUIRED_TAGS) == set(standard_tags("aq-examplemet", "test", "aq-examplemet-test"))


def test_an_explicitly_public_port_passes():
    stack = find_stack("aq-examplemet-prod")
    deployment = run_program(stack.stack, {**stack.config, "wis2-node:openToInternet": [443]})
    assert not any(rules.violations(resources(deployment)).values())


def broken(deployment: Deployment, type_: str, change, name: str | None = None) -> list[rules.Resource]:
    """The stack's resources with the first one of a type (and name) broken by `change` (or added)."""
    declared = resources(deployment)
    for resource in declared:
        if resource.type == type_ and name in (None, resource.name):
            change(resource)
            return declared
    raise AssertionError(f"no {type_} declared")


def ingress(port=443, cidr="198.51.100.0/24", protocol="tcp", tags=None):
    return rules.Resource(
        rules.INGRESS_RULE,
        "firewall-in-bad",
        {
            "ipProtocol": protocol,
            "fromPort": port,
            "toPort": port,
            "cidrIpv4": cidr,
            "tags": tags or {"wis2-node:open-to-internet": "none"},
        },
    )


def first(violations: dict, name: str) -> str:
    assert violations[name], violations
    return violations[name][0]


@pytest.fixture
def prod() -> Deployment:
    stack = find_stack("aq-examplemet-prod")
    return run_program(stack.stack, stack.config)


def test_ingress_on_another_port_is_reported(prod):
    found = rules.violations(resources(prod) + [ingress(port=80)])
    assert "firewall-in-bad" in first(found, "ingress-only-wis2-ports")


def test_world_ingress_without_the_setting_is_reported(prod):
    found = rules.violations(resources(prod) + [ingress(cidr="0.0.0.0/0"), ingress(cidr="::/0", port=8883)])
    assert len(found["no-world-ingress-unless-asked"]) == 2
    assert "firewall-in-bad" in first(found, "no-world-ingress-unless-asked")


def test_halves_of_the_internet_are_reported_like_the_whole(prod):
    halves = [
        ingress(cidr="0.0.0.0/1"),
        ingress(cidr="128.0.0.0/1"),
        ingress(cidr="2000::/3", port=8883),
        ingress(cidr="64.0.0.0/7"),
    ]
    found = rules.violations(resources(prod) + halves)["no-world-ingress-unless-asked"]
    assert len(found) == 4, found
    assert "0.0.0.0/1" in found[0] and "openToInternet" in found[0]
    narrow = [ingress(cidr="10.0.0.0/8"), ingress(cidr="2a00::/32")]
    assert rules.violations(resources(prod) + narrow)["no-world-ingress-unless-asked"] == []


def test_a_wide_network_in_an_inline_rule_is_reported(prod):
    def add_inline_half(group):
        group.props["ingress"] = [{"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["0.0.0.0/1"]}]

    found = rules.violations(broken(prod, rules.SECURITY_GROUP, add_inline_half, name="firewall-sg"))
    assert "firewall-sg" in first(found, "no-world-ingress-unless-asked")


def test_ssh_is_reported_even_inline(prod):
    def add_inline_ssh(group):
        group.props["ingress"] = [{"protocol": "tcp", "fromPort": 20, "toPort": 25, "cidrBlocks": ["198.51.100.0/24"]}]

    found = rules.violations(broken(prod, rules.SECURITY_GROUP, add_inline_ssh, name="firewall-sg"))
    assert "firewall-sg" in first(found, "no-ssh")
    all_traffic = rules.violations(resources(prod) + [ingress(protocol="-1")])
    assert "firewall-in-bad" in first(all_traffic, "no-ssh")


def test_imdsv1_is_reported(prod):
    found = rules.violations(
        broken(prod, rules.INSTANCE, lambda r: r.props["metadataOptions"].update(httpTokens="optional"))
    )
    assert "host-instance" in first(found, "imdsv2-required")


@pytest.mark.parametrize(
    "type_,change",
    [
        (rules.VOLUME, lambda r: r.props.update(encrypted=False)),
        (rules.INSTANCE, lambda r: r.props["rootBlockDevice"].update(encrypted=False)),
    ],
)
def test_unencrypted_volumes_are_reported(prod, type_, change):
    found = rules.violations(broken(prod, type_, change))
    assert "not encrypted" in first(found, "volumes-encrypted")


def test_key_pairs_are_reported(prod):
    found = rules.violations(broken(prod, rules.INSTANCE, lambda r: r.props.update(keyName="admin")))
    assert "host-instance" in first(found, "no-key-pair")
    found = rules.violations(resources(prod) + [rules.Resource(rules.KEY_PAIR, "admin-key", {})])
    assert "admin-key" in first(found, "no-key-pair")


def test_self_signed_on_production_is_reported(prod):
    found = rules.violations(resources(prod) + [rules.Resource(rules.SELF_SIGNED, "tls-self-signed", {})])
    assert "tls-self-signed" in first(found, "no-self-signed-in-production")
    test = find_stack("aq-examplemet-test")
    allowed = run_program(test.stack, {**test.config, "wis2-node:tlsMode": "self-signed"})
    assert rules.violations(resources(allowed))["no-self-signed-in-production"] == []


def test_missing_tags_are_reported(prod):
    found = rules.violations(broken(prod, rules.VOLUME, lambda r: r.props["tags"].pop("wis2-node:stack")))
    assert "host-data" in first(found, "required-tags") and "wis2-node:stack" in first(found, "required-tags")


@pytest.mark.parametrize("key", [None, "", "alias/aws/sns", "arn:aws:kms:us-east-1:123456789012:alias/aws/sns"])
def test_an_alert_topic_without_a_customer_managed_key_is_reported(prod, key):
    def unencrypt(topic):
        topic.props.pop("kmsMasterKeyId")
        if key is not None:
            topic.props["kmsMasterKeyId"] = key

    found = rules.violations(broken(prod, "aws:sns/topic:Topic", unencrypt))
    assert "monitoring-alerts-" in first(found, "topics-encrypted")


@pytest.mark.parametrize(
    "principal",
    ["210987654321", "arn:aws:iam::210987654321:root", "*", ["arn:aws:iam::210987654321:role/ok", "210987654321"]],
)
def test_a_role_trusting_a_whole_account_is_reported(principal):
    stack = find_stack("aq-examplemet-prod")
    deployment = run_program(
        stack.stack, {**stack.config, "wis2-node:uploaderPrincipals": ["arn:aws:iam::210987654321:role/message-switch"]}
    )
    assert not rules.violations(resources(deployment))["no-account-wide-trust"]

    def widen(role):
        trust = json.loads(role.props["assumeRolePolicy"])
        trust["Statement"][0]["Principal"] = {"AWS": principal}
        role.props["assumeRolePolicy"] = json.dumps(trust)

    found = rules.violations(broken(deployment, "aws:iam/role:Role", widen, name="ingest-uploader-role"))
    assert "ingest-uploader-role" in first(found, "no-account-wide-trust")
