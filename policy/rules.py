"""The WIS2 security recommendations as plain validators (the policy pack wires them to CrossGuard).

Each resource rule takes (type, name, props) as the engine gives them (camelCase inputs) and
returns violation messages naming the resource. Stack rules take every resource at once. Plain
functions, so the tests run them against what the program declares under Pulumi's mocks.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

# The pack runs from its own folder with its own requirements (PulumiPolicy.yaml), so it cannot import
# wis2node: the ports and the standard tags are written here again, and tests/policy/test_rules.py
# checks that they agree with wis2node/settings.py.
WIS2_PORTS = {443, 8883}
WORLD = {"0.0.0.0/0", "::/0"}
# A network wider than this is the internet or a large part of it (0.0.0.0/1 + 128.0.0.0/1 is all of
# it): like the world itself, only on the ports the stack opens to everyone (wis2node/settings.py).
MIN_PREFIX = {4: 8, 6: 32}
REQUIRED_TAGS = ("wis2-node:centre-id", "wis2-node:environment", "wis2-node:stack", "managed-by")
OPEN_TO_INTERNET_TAG = "wis2-node:open-to-internet"

INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
LEGACY_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
VOLUME = "aws:ebs/volume:Volume"
KEY_PAIR = "aws:ec2/keyPair:KeyPair"
SELF_SIGNED = "tls:index/selfSignedCert:SelfSignedCert"
TOPIC = "aws:sns/topic:Topic"
ROLE = "aws:iam/role:Role"
# A principal that is a whole account (its id or its root ARN), or everyone.
_ACCOUNT_PRINCIPAL = re.compile(r"^(\*|\d{12}|arn:aws[a-z-]*:iam::\d{12}:root)$")
TAGGED = {
    SECURITY_GROUP,
    INGRESS_RULE,
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
    INSTANCE,
    VOLUME,
    "aws:ec2/eip:Eip",
    "aws:iam/role:Role",
    "aws:iam/instanceProfile:InstanceProfile",
    "aws:ssm/parameter:Parameter",
}


class Resource(NamedTuple):
    type: str
    name: str
    props: Mapping[str, Any]


class Rule(NamedTuple):
    name: str
    description: str
    check: Callable[[Resource], list[str]]


def _ingress(resource: Resource) -> Iterable[Mapping[str, Any]]:
    """Every inbound permission a resource declares, in the standalone rule's shape."""
    props = resource.props
    if resource.type == INGRESS_RULE:
        yield props
    elif resource.type == LEGACY_RULE and props.get("type") == "ingress":
        for cidr in (props.get("cidrBlocks") or []) + (props.get("ipv6CidrBlocks") or []) or [None]:
            yield {**props, "ipProtocol": props.get("protocol"), "cidrIpv4": cidr}
    elif resource.type == SECURITY_GROUP:
        for rule in props.get("ingress") or []:
            for cidr in (rule.get("cidrBlocks") or []) + (rule.get("ipv6CidrBlocks") or []) or [None]:
                yield {**rule, "ipProtocol": rule.get("protocol"), "cidrIpv4": cidr, "tags": props.get("tags")}


def _ports(rule: Mapping[str, Any]) -> tuple[int, int]:
    if str(rule.get("ipProtocol")) in ("-1", "all"):
        return 0, 65535
    return int(rule.get("fromPort", 0)), int(rule.get("toPort", 65535))


def only_wis2_ports(resource: Resource) -> list[str]:
    problems = []
    for rule in _ingress(resource):
        low, high = _ports(rule)
        if str(rule.get("ipProtocol")).lower() != "tcp" or low != high or low not in WIS2_PORTS:
            problems.append(
                f"{resource.name}: ingress {rule.get('ipProtocol')} {low}-{high}; only TCP 443 "
                "(HTTPS) and 8883 (MQTTS) may be open"
            )
    return problems


def _too_wide(cidr: str) -> bool:
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return True  # what cannot be read cannot be shown to be narrow
    return network.prefixlen < MIN_PREFIX[network.version]


def no_world_unless_asked(resource: Resource) -> list[str]:
    problems = []
    for rule in _ingress(resource):
        cidr = rule.get("cidrIpv4") or rule.get("cidrIpv6")
        if cidr and _too_wide(str(cidr)):
            allowed = str((rule.get("tags") or {}).get(OPEN_TO_INTERNET_TAG, "none")).split(",")
            if str(_ports(rule)[0]) not in allowed:
                what = (
                    "the whole internet"
                    if cidr in WORLD
                    else (
                        f"wider than /{MIN_PREFIX[4]} (IPv4) or /{MIN_PREFIX[6]} (IPv6), a large part of the internet"
                    )
                )
                problems.append(
                    f"{resource.name}: {cidr} ({what}) on port {_ports(rule)[0]} without the stack's "
                    "explicit wis2-node:openToInternet setting"
                )
    return problems


def no_ssh(resource: Resource) -> list[str]:
    return [
        f"{resource.name}: port 22 (SSH) is reachable; use SSM Session Manager"
        for rule in _ingress(resource)
        if _ports(rule)[0] <= 22 <= _ports(rule)[1]
    ]


def imdsv2_required(resource: Resource) -> list[str]:
    if resource.type not in (INSTANCE, LAUNCH_TEMPLATE):
        return []
    tokens = (resource.props.get("metadataOptions") or {}).get("httpTokens")
    return [] if tokens == "required" else [f"{resource.name}: IMDSv2 not required (httpTokens {tokens!r})"]


def volumes_encrypted(resource: Resource) -> list[str]:
    props = resource.props
    if resource.type == VOLUME and props.get("encrypted") is not True:
        return [f"{resource.name}: EBS volume not encrypted"]
    if resource.type == INSTANCE:
        devices = [("root volume", props.get("rootBlockDevice") or {})]
        devices += [(d.get("deviceName", "EBS volume"), d) for d in props.get("ebsBlockDevices") or []]
        return [f"{resource.name}: {label} not encrypted" for label, d in devices if d.get("encrypted") is not True]
    return []


def no_key_pair(resource: Resource) -> list[str]:
    if resource.type == KEY_PAIR:
        return [f"{resource.name}: EC2 key pairs are not used; admin access is through SSM Session Manager"]
    if resource.type in (INSTANCE, LAUNCH_TEMPLATE) and resource.props.get("keyName"):
        return [f"{resource.name}: key pair {resource.props['keyName']!r} attached; use SSM Session Manager"]
    return []


def required_tags(resource: Resource) -> list[str]:
    if resource.type not in TAGGED:
        return []
    missing = [tag for tag in REQUIRED_TAGS if tag not in (resource.props.get("tags") or {})]
    return [f"{resource.name}: missing tags {', '.join(missing)}"] if missing else []


def topics_encrypted(resource: Resource) -> list[str]:
    """Alert topics under a customer managed key (CloudWatch alarms cannot use alias/aws/sns)."""
    if resource.type != TOPIC:
        return []
    key = resource.props.get("kmsMasterKeyId") or ""
    if not key:
        return [f"{resource.name}: SNS topic not encrypted; give it a customer managed KMS key"]
    if key == "alias/aws/sns" or key.endswith(":alias/aws/sns"):
        return [
            f"{resource.name}: SNS topic encrypted with alias/aws/sns, which CloudWatch alarms cannot use; "
            "give it a customer managed KMS key"
        ]
    return []


def no_account_wide_trust(resource: Resource) -> list[str]:
    """A role is assumed by named principals (roles, services), never by a whole account or everyone."""
    if resource.type != ROLE:
        return []
    document = resource.props.get("assumeRolePolicy") or "{}"
    statements = json.loads(document).get("Statement", []) if isinstance(document, str) else []
    found = []
    for statement in statements if isinstance(statements, list) else [statements]:
        if statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal")
        aws = principal.get("AWS", []) if isinstance(principal, dict) else [principal]
        for name in aws if isinstance(aws, list) else [aws]:
            if _ACCOUNT_PRINCIPAL.match(str(name)):
                found.append(
                    f"{resource.name}: trusts {name}, i.e. every principal of an account (or everyone); "
                    "name the roles instead"
                )
    return found


RESOURCE_RULES = (
    Rule("ingress-only-wis2-ports", "Only TCP 443 and 8883 are open inbound.", only_wis2_ports),
    Rule(
        "no-world-ingress-unless-asked",
        "0.0.0.0/0, ::/0 and any network wider than /8 (IPv4) or /32 (IPv6) only on ports the stack opens explicitly.",
        no_world_unless_asked,
    ),
    Rule("no-ssh", "Port 22 is never open.", no_ssh),
    Rule("imdsv2-required", "Instances require IMDSv2.", imdsv2_required),
    Rule("volumes-encrypted", "Every EBS volume is encrypted.", volumes_encrypted),
    Rule("no-key-pair", "No EC2 key pair: admin access is through SSM.", no_key_pair),
    Rule("required-tags", "Resources carry the centre, environment, stack and manager tags.", required_tags),
    Rule("topics-encrypted", "SNS topics are encrypted with a customer managed KMS key.", topics_encrypted),
    Rule("no-account-wide-trust", "No role trusts a whole account or everyone.", no_account_wide_trust),
)


def no_self_signed_in_production(resources: list[Resource]) -> list[str]:
    """A production node must present a certificate Global Services trust."""
    production = any((r.props.get("tags") or {}).get("wis2-node:environment") == "production" for r in resources)
    if not production:
        return []
    return [
        f"{r.name}: self-signed certificate on a production stack; use letsencrypt or provided"
        for r in resources
        if r.type == SELF_SIGNED
    ]


STACK_RULES = (
    ("no-self-signed-in-production", "Production stacks use a trusted certificate.", no_self_signed_in_production),
)


def violations(resources: list[Resource]) -> dict[str, list[str]]:
    """Every rule's violations over a stack's resources (empty lists when compliant)."""
    found = {rule.name: [m for r in resources for m in rule.check(r)] for rule in RESOURCE_RULES}
    for name, _, check in STACK_RULES:
        found[name] = check(resources)
    return found
