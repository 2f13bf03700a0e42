"""`python -m wis2node verify`: a healthy node passes, each kind of drift is named, errors are clear.

AWS is moto in server mode; the network checks talk to the real local node. moto has no SSM
DescribeInstanceInformation, so that one call is answered by a stand-in on loopback that speaks
the same JSON protocol (AWS_ENDPOINT_URL_SSM), saying the instance is online.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from wis2node.alarms import HEALTH_CHECK_ALARMS, HEALTH_CHECK_REGION, NODE_ALARMS, alarm_name
from wis2node.local import LocalNode
from wis2node.localcloud import client, moto_server, run_environment
from wis2node.stackfile import ROOT, find_stack

# Starts the node's daemons: not in the quick loop, `pytest -m "not slow"` (docs/DEVELOPING.md).
pytestmark = pytest.mark.slow

SETTINGS = find_stack("aq-examplemet-test").settings()
STACK_TAG = [{"Key": "wis2-node:stack", "Value": SETTINGS.stack}]


class SsmStandIn(BaseHTTPRequestHandler):
    """DescribeInstanceInformation only: every instance asked about is online."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        assert self.headers["X-Amz-Target"] == "AmazonSSM.DescribeInstanceInformation"
        ids = [v for f in body.get("Filters", []) if f["Key"] == "InstanceIds" for v in f["Values"]]
        answer = json.dumps({"InstanceInformationList": [{"InstanceId": i, "PingStatus": "Online"} for i in ids]})
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer.encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def ssm_online():
    server = ThreadingHTTPServer(("127.0.0.1", 0), SsmStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class Deployed:
    """What `pulumi up` leaves in an account, made in moto for the test stack."""

    def __init__(self, aws: dict[str, str]):
        self.ec2 = client("ec2", aws)
        vpc = self.ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        self.group = self.ec2.create_security_group(GroupName="wis2-node", Description="wis2", VpcId=vpc)["GroupId"]
        for rule in SETTINGS.ingress_rules():
            ranges = (
                {"IpRanges": [{"CidrIp": rule.cidr}]}
                if rule.ip_version == 4
                else {"Ipv6Ranges": [{"CidrIpv6": rule.cidr}]}
            )
            self.allow(rule.port, **ranges)
        checkers = self.ec2.create_managed_prefix_list(
            PrefixListName=f"com.amazonaws.{SETTINGS.region}.route53-healthchecks", MaxEntries=10, AddressFamily="IPv4"
        )["PrefixList"]["PrefixListId"]
        for port in (443, 8883):
            self.allow(port, PrefixListIds=[{"PrefixListId": checkers}])
        image = self.ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        self.instance = self.ec2.run_instances(
            ImageId=image,
            MinCount=1,
            MaxCount=1,
            InstanceType="t4g.small",
            SecurityGroupIds=[self.group],
            Placement={"AvailabilityZone": SETTINGS.availability_zone},
            MetadataOptions={"HttpTokens": "required"},
            BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 16, "Encrypted": True}}],
            TagSpecifications=[{"ResourceType": "instance", "Tags": STACK_TAG}],
        )["Instances"][0]["InstanceId"]
        self.attach_volume(encrypted=True)
        address = self.ec2.allocate_address(
            Domain="vpc", TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": STACK_TAG}]
        )
        self.allocation, self.public_ip = address["AllocationId"], address["PublicIp"]
        self.association = self.ec2.associate_address(AllocationId=self.allocation, InstanceId=self.instance)[
            "AssociationId"
        ]
        route53 = client("route53", aws)
        zone = route53.create_hosted_zone(Name=SETTINGS.hosted_zone, CallerReference="wis2")["HostedZone"]["Id"]
        route53.change_resource_record_sets(
            HostedZoneId=zone,
            ChangeBatch={
                "Changes": [
                    {
                        "Action": "UPSERT",
                        "ResourceRecordSet": {
                            "Name": SETTINGS.fqdn,
                            "Type": "A",
                            "TTL": 300,
                            "ResourceRecords": [{"Value": self.public_ip}],
                        },
                    }
                ]
            },
        )
        self.cloudwatch = {}
        for region, labels in ((SETTINGS.region, NODE_ALARMS), (HEALTH_CHECK_REGION, HEALTH_CHECK_ALARMS)):
            self.cloudwatch[region] = client("cloudwatch", {**aws, "AWS_DEFAULT_REGION": region})
            for label in labels:
                self.cloudwatch[region].put_metric_alarm(
                    AlarmName=alarm_name(SETTINGS.stack, label),
                    MetricName="m",
                    Namespace="WIS2Node",
                    Statistic="Average",
                    Period=60,
                    EvaluationPeriods=1,
                    Threshold=1,
                    ComparisonOperator="GreaterThanThreshold",
                )

    def allow(self, port: int, **source) -> None:
        self.ec2.authorize_security_group_ingress(
            GroupId=self.group, IpPermissions=[{"IpProtocol": "tcp", "FromPort": port, "ToPort": port, **source}]
        )

    def attach_volume(self, encrypted: bool, device: str = "/dev/sdf") -> str:
        volume = self.ec2.create_volume(
            AvailabilityZone=SETTINGS.availability_zone,
            Size=10,
            Encrypted=encrypted,
            TagSpecifications=[{"ResourceType": "volume", "Tags": STACK_TAG}],
        )["VolumeId"]
        self.ec2.attach_volume(VolumeId=volume, InstanceId=self.instance, Device=device)
        return volume


@pytest.fixture
def aws():
    with moto_server(SETTINGS.region) as environment:
        yield environment


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with LocalNode(SETTINGS, tmp_path_factory.mktemp("node")) as running:
        yield running


def run_verify(environment: dict[str, str], node: LocalNode | None, *extra: str) -> tuple[int, dict, str]:
    network = (
        [
            "--host",
            "127.0.0.1",
            "--https-port",
            str(node.ports.https),
            "--mqtts-port",
            str(node.ports.mqtts),
            "--ca-file",
            str(node.ca_file),
            "--no-wis2",
        ]
        if node
        else ["--no-network"]
    )  # WIS2: test_verify_wis2
    run = subprocess.run(
        [sys.executable, "-m", "wis2node", "verify", "--stack", SETTINGS.stack, "--json", *network, *extra],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in run.stderr, run.stderr
    return run.returncode, json.loads(run.stdout), run.stderr


def failures(result: dict) -> list[str]:
    return [f"{c['name']}: {c['detail']}" for c in result["checks"] if not c["ok"]]


def test_a_healthy_node_passes_every_check(aws, node, ssm_online):
    Deployed(aws)
    status, result, _ = run_verify({**run_environment(aws), "AWS_ENDPOINT_URL_SSM": ssm_online}, node)
    assert failures(result) == [] and status == 0
    names = {c["name"] for c in result["checks"]}
    assert names == {
        "instance",
        "imdsv2",
        "volumes-encrypted",
        "firewall",
        "elastic-ip",
        "dns",
        "ssm-online",
        "alarms",
        "certificate-https",
        "certificate-mqtts",
        "mqtt-read-only",
        "https-read-only",
    }
    details = {c["name"]: c["detail"] for c in result["checks"]}
    assert "can subscribe and cannot publish" in details["mqtt-read-only"]
    assert "89 days left" in details["certificate-https"] or "90 days left" in details["certificate-https"]


DRIFTS = {
    "extra port": (
        lambda d: d.allow(22, IpRanges=[{"CidrIp": "198.51.100.0/24"}]),
        "firewall: extra rule: tcp/22 from 198.51.100.0/24",
    ),
    "extra cidr": (
        lambda d: d.allow(443, IpRanges=[{"CidrIp": "192.0.2.0/24"}]),
        "firewall: extra rule: tcp/443 from 192.0.2.0/24",
    ),
    "detached address": (lambda d: d.ec2.disassociate_address(AssociationId=d.association), "elastic-ip: "),
    "unencrypted volume": (
        lambda d: d.attach_volume(encrypted=False, device="/dev/sdg"),
        "volumes-encrypted: not encrypted: vol-",
    ),
    "alarm in ALARM": (
        lambda d: d.cloudwatch[SETTINGS.region].set_alarm_state(
            AlarmName=alarm_name(SETTINGS.stack, "disk-data-high"), StateValue="ALARM", StateReason="test"
        ),
        f"alarms: {SETTINGS.stack}-disk-data-high is in ALARM",
    ),
}


@pytest.mark.parametrize("drift,named", DRIFTS.values(), ids=DRIFTS.keys())
def test_each_drift_is_named_and_fails(aws, ssm_online, drift, named):
    deployed = Deployed(aws)
    drift(deployed)
    status, result, _ = run_verify({**run_environment(aws), "AWS_ENDPOINT_URL_SSM": ssm_online}, None)
    assert status == 1
    found = failures(result)
    assert any(line.startswith(named) for line in found), found
    assert len(found) == 1, found  # nothing else is blamed


def test_a_stack_never_deployed_gets_a_message_per_missing_part(aws, ssm_online):
    status, result, _ = run_verify({**run_environment(aws), "AWS_ENDPOINT_URL_SSM": ssm_online}, None)
    assert status == 1
    found = failures(result)
    assert found[0].startswith("instance: no instance tagged wis2-node:stack=aq-examplemet-test")
    assert "dns: no public hosted zone examplemet.example.org" in found
    assert f"alarms: missing alarm {SETTINGS.stack}-cpu-high ({SETTINGS.region})" in found
    assert "firewall: not checked: no instance" in found


def test_partial_resources_are_named(aws, ssm_online):
    deployed = Deployed(aws)
    deployed.ec2.disassociate_address(AssociationId=deployed.association)
    deployed.ec2.release_address(AllocationId=deployed.allocation)
    deployed.cloudwatch[HEALTH_CHECK_REGION].delete_alarms(AlarmNames=[alarm_name(SETTINGS.stack, "https-unreachable")])
    status, result, _ = run_verify({**run_environment(aws), "AWS_ENDPOINT_URL_SSM": ssm_online}, None)
    found = failures(result)
    assert status == 1
    assert "elastic-ip: no Elastic IP tagged wis2-node:stack=aq-examplemet-test" in found
    assert f"alarms: missing alarm {SETTINGS.stack}-https-unreachable (us-east-1)" in found


def test_without_credentials_it_says_so(tmp_path):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    environment.update(
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    status, result, _ = run_verify(environment, None)
    assert status == 1
    assert failures(result) == ["aws-credentials: no AWS credentials found (environment, profile, SSO or role)"]


def test_the_table_is_readable(aws, ssm_online):
    Deployed(aws)
    run = subprocess.run(
        [sys.executable, "-m", "wis2node", "verify", "--stack", SETTINGS.stack, "--no-network"],
        cwd=ROOT,
        env={**run_environment(aws), "AWS_ENDPOINT_URL_SSM": ssm_online},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines()[-1] == "9 checks, 0 failed"  # alarms: one line per region
    assert run.stdout.splitlines()[0].startswith("ok    instance")
