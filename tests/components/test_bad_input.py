"""Every invalid stack is refused before any resource is declared, naming the key and the value."""

from __future__ import annotations

import pulumi
import pytest

from tests.pulumi_harness import run_program
from wis2node.stackfile import stack_files

BASE = next(s for s in stack_files() if s.stack.endswith("-prod"))


def without(*keys):
    return {k: v for k, v in BASE.config.items() if k not in keys}


def partner(cidr="198.51.100.0/24", ports=(443,), description="a partner"):
    return {"cidr": cidr, "description": description, "ports": list(ports)}


CASES = {
    "uppercase centre-id": ({"wis2-node:centreId": "AQ-ExampleMet"}, "wis2-node:centreId", "AQ-ExampleMet"),
    "centre-id without tld": ({"wis2-node:centreId": "examplemet"}, "wis2-node:centreId", "examplemet"),
    "centre-id unknown tld": ({"wis2-node:centreId": "qq-examplemet"}, "wis2-node:centreId", "qq"),
    "test id on production": ({"wis2-node:centreId": "aq-examplemet-test"}, "wis2-node:centreId", "-test"),
    "fqdn outside the zone": (
        {"wis2-node:fqdn": "wis2node.other.example.net"},
        "wis2-node:fqdn",
        "wis2node.other.example.net",
    ),
    "fqdn is the zone apex": ({"wis2-node:fqdn": "examplemet.example.org"}, "wis2-node:fqdn", "apex"),
    "malformed cidr": (
        {"wis2-node:partners": [partner("198.51.100.300/24")]},
        "wis2-node:partners[0].cidr",
        "198.51.100.300/24",
    ),
    "host bits set": (
        {"wis2-node:partners": [partner("198.51.100.7/24")]},
        "wis2-node:partners[0].cidr",
        "198.51.100.0/24",
    ),
    "partner is the ipv4 internet": (
        {"wis2-node:partners": [partner("0.0.0.0/0")]},
        "wis2-node:partners[0].cidr",
        "openToInternet",
    ),
    "partner is the ipv6 internet": (
        {"wis2-node:partners": [partner("::/0")]},
        "wis2-node:partners[0].cidr",
        "openToInternet",
    ),
    "partners are half the ipv4 internet each": (
        {"wis2-node:partners": [partner("0.0.0.0/1"), partner("128.0.0.0/1", description="other half")]},
        "wis2-node:partners[0].cidr = '0.0.0.0/1'",
        "openToInternet",
    ),
    "partner is most of the ipv4 internet": (
        {"wis2-node:partners": [partner("64.0.0.0/7")]},
        "wis2-node:partners[0].cidr = '64.0.0.0/7'",
        "/8 or longer",
    ),
    "partner is the ipv6 unicast internet": (
        {"wis2-node:partners": [partner("2000::/3")]},
        "wis2-node:partners[0].cidr = '2000::/3'",
        "openToInternet",
    ),
    "partner is a wide ipv6 block": (
        {"wis2-node:partners": [partner("2a00::/31")]},
        "wis2-node:partners[0].cidr = '2a00::/31'",
        "/32 or longer",
    ),
    "ssh port": ({"wis2-node:partners": [partner(ports=(22,))]}, "wis2-node:partners[0].ports[0]", "443"),
    "public ssh": ({"wis2-node:openToInternet": [22]}, "wis2-node:openToInternet[0]", "22"),
    "duplicate partner": (
        {"wis2-node:partners": [partner(), partner(description="again")]},
        "wis2-node:partners[1]",
        "already allowed",
    ),
    "duplicate port": ({"wis2-node:partners": [partner(ports=(443, 443))]}, "wis2-node:partners[0].ports", "twice"),
    "duplicate public port": ({"wis2-node:openToInternet": [8883, 8883]}, "wis2-node:openToInternet", "twice"),
    "standard tag overridden": ({"wis2-node:tags": {"managed-by": "hand"}}, "wis2-node:tags", "managed-by"),
    "partner repeats a global service": (
        {"wis2-node:partners": [partner("141.38.3.181/32")]},
        "wis2-node:partners[0]",
        "de-dwd",
    ),
    "unknown operator": ({"wis2-node:excludeOperators": ["xx-nowhere"]}, "wis2-node:excludeOperators", "xx-nowhere"),
    "nobody can reach the node": (
        {"wis2-node:globalServices": False, "wis2-node:partners": []},
        "wis2-node:partners",
        "nobody",
    ),
    "self-signed production": ({"wis2-node:tlsMode": "self-signed"}, "wis2-node:tlsMode", "self-signed"),
    "provided without ca": ({"wis2-node:tlsMode": "provided"}, "wis2-node:certificateAuthority", "CAA"),
    "zone of another region": (
        {"wis2-node:availabilityZone": "us-east-1a"},
        "wis2-node:availabilityZone",
        "eu-west-1a",
    ),
    "bad email": ({"wis2-node:alertEmails": ["ops-at-example"]}, "wis2-node:alertEmails", "ops-at-example"),
    "too small root volume": ({"wis2-node:rootVolumeGb": 2}, "wis2-node:rootVolumeGb", "2"),
    "instance type without an ubuntu image": (
        {"wis2-node:instanceType": "mac1.metal"},
        "wis2-node:instanceType",
        "macOS",
    ),
    "unknown instance type": ({"wis2-node:instanceType": "t9z.small"}, "wis2-node:instanceType", "t9z.small"),
}


@pytest.mark.parametrize("change,config_key,detail", CASES.values(), ids=CASES.keys())
def test_bad_stack_is_refused_naming_the_key(change, config_key, detail):
    with pytest.raises(pulumi.RunError) as refused:
        run_program(BASE.stack, {**BASE.config, **change})
    message = str(refused.value)
    assert config_key in message and detail in message, message


@pytest.mark.parametrize(
    "missing",
    [
        "wis2-node:centreId",
        "wis2-node:fqdn",
        "wis2-node:hostedZone",
        "wis2-node:environment",
        "wis2-node:availabilityZone",
        "aws:region",
    ],
)
def test_missing_required_key_is_named(missing):
    with pytest.raises(pulumi.RunError, match=f"{missing} is required"):
        run_program(BASE.stack, without(missing))


def test_nothing_is_declared_before_the_stack_is_accepted():
    from tests import pulumi_harness

    recorded = pulumi_harness.Deployment()
    original = pulumi_harness.Deployment
    pulumi_harness.Deployment = lambda: recorded
    try:
        with pytest.raises(pulumi.RunError):
            run_program(BASE.stack, {**BASE.config, "wis2-node:instanceType": "mac1.metal"})
    finally:
        pulumi_harness.Deployment = original
    assert recorded.resources == []


def test_partners_as_wide_as_allowed_are_accepted():
    wide = [partner("10.0.0.0/8", ports=(443, 8883)), partner("2a00::/32", description="an ipv6 block")]
    deployment = run_program(BASE.stack, {**BASE.config, "wis2-node:partners": wide})
    sources = {
        r.inputs.get("cidrIpv4") or r.inputs.get("cidrIpv6")
        for r in deployment.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    }
    assert {"10.0.0.0/8", "2a00::/32"} <= sources
