"""The policy pack itself, started as the Pulumi engine starts it and asked over its gRPC API."""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from policy import rules
from wis2node.stackfile import ROOT


@pytest.fixture(scope="module")
def analyzer():
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "policy" / "__main__.py")],
        cwd=ROOT / "policy",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    port = int(process.stdout.readline())  # the pack prints its port, as the engine expects
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        channel.close()
        process.kill()
        process.wait()


def test_the_pack_registers_every_rule_as_mandatory(analyzer):
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "wis2-node-security"
    names = {policy.name for policy in info.policies}
    assert names == {rule.name for rule in rules.RESOURCE_RULES} | {name for name, *_ in rules.STACK_RULES}
    assert all(policy.enforcementLevel == analyzer_pb2.MANDATORY for policy in info.policies)


def analyze(analyzer, type_: str, name: str, properties: dict):
    props = struct_pb2.Struct()
    props.update(properties)
    request = analyzer_pb2.AnalyzeRequest(
        type=type_, name=name, properties=props, urn=f"urn:pulumi:s::wis2-node::{type_}::{name}"
    )
    return analyzer.Analyze(request).diagnostics


def test_the_pack_reports_a_violation_with_the_resource_named(analyzer):
    diagnostics = analyze(
        analyzer,
        rules.INSTANCE,
        "host-instance",
        {
            "metadataOptions": {"httpTokens": "optional"},
            "keyName": "admin",
            "rootBlockDevice": {"encrypted": True},
            "tags": dict.fromkeys(rules.REQUIRED_TAGS, "x"),
        },
    )
    found = {d.policyName: d.message for d in diagnostics}
    assert set(found) == {"imdsv2-required", "no-key-pair"}
    assert all("host-instance" in message for message in found.values())


def test_the_pack_passes_a_compliant_rule(analyzer):
    assert not analyze(
        analyzer,
        rules.INGRESS_RULE,
        "firewall-in-https",
        {
            "ipProtocol": "tcp",
            "fromPort": 443,
            "toPort": 443,
            "cidrIpv4": "198.51.100.0/24",
            "tags": {**dict.fromkeys(rules.REQUIRED_TAGS, "x"), rules.OPEN_TO_INTERNET_TAG: "none"},
        },
    )


def test_the_pack_reports_half_the_internet_on_a_port_not_opened(analyzer):
    tags = {**dict.fromkeys(rules.REQUIRED_TAGS, "x"), rules.OPEN_TO_INTERNET_TAG: "none"}
    diagnostics = analyze(
        analyzer,
        rules.INGRESS_RULE,
        "firewall-in-https-0-0-0-0-1",
        {"ipProtocol": "tcp", "fromPort": 443, "toPort": 443, "cidrIpv4": "0.0.0.0/1", "tags": tags},
    )
    assert [d.policyName for d in diagnostics] == ["no-world-ingress-unless-asked"]
    assert "0.0.0.0/1" in diagnostics[0].message
