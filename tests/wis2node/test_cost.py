"""`python -m wis2node cost`: counts equal to what the program declares, items that add up, prices only
from the table, and the traffic assumptions that move the S3, SQS and transfer lines."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from tests.pulumi_harness import Deployment, run_program
from tests.wis2node.test_reporter import node  # noqa: F401  (the local node whose certificates are measured)
from wis2node import cost
from wis2node.cost import Assumptions, declared, estimate, report
from wis2node.errors import SettingsError
from wis2node.localcloud import client, moto_server, run_environment
from wis2node.stackfile import ROOT, StackFile, stack_files

# What the program may declare that costs nothing by itself (or is priced through another line:
# the root volume is the instance's block device, the bucket's traffic is the S3 lines). A new
# resource type fails here until the estimate knows about it.
PRICED = {
    "aws:ec2/instance:Instance",
    "aws:ebs/volume:Volume",
    "aws:ec2/eip:Eip",
    "aws:route53/healthCheck:HealthCheck",
    "aws:cloudwatch/metricAlarm:MetricAlarm",
    "aws:cloudwatch/dashboard:Dashboard",
    "aws:sns/topic:Topic",
    "aws:sns/topicSubscription:TopicSubscription",
    "aws:s3/bucket:Bucket",
    "aws:sqs/queue:Queue",
    "aws:dlm/lifecyclePolicy:LifecyclePolicy",
    "aws:kms/key:Key",
}
# A log group itself costs nothing; what it ingests and stores is usage, not yet in the estimate.
FREE = {
    "aws:cloudwatch/logGroup:LogGroup",
    "aws:ec2/securityGroup:SecurityGroup",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
    "aws:iam/role:Role",
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/instanceProfile:InstanceProfile",
    "aws:iam/policy:Policy",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:ec2/volumeAttachment:VolumeAttachment",
    "aws:ec2/eipAssociation:EipAssociation",
    "aws:route53/record:Record",
    "aws:ssm/parameter:Parameter",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "aws:s3/bucketPolicy:BucketPolicy",
    "aws:sqs/queuePolicy:QueuePolicy",
    "aws:s3/bucketNotification:BucketNotification",
    "aws:s3/bucketObjectv2:BucketObjectv2",
    "tls:index/privateKey:PrivateKey",
    "tls:index/selfSignedCert:SelfSignedCert",
    "tls:index/certRequest:CertRequest",
    "random:index/randomPassword:RandomPassword",
    # Old versions are kept 14 days: inside the S3 storage line's order of magnitude.
    "aws:s3/bucketVersioning:BucketVersioning",
}

EXAMPLES = {f.stack: f for f in stack_files() if f.is_example}
US_EAST = StackFile(
    "aq-examplemet-us",
    EXAMPLES["aq-examplemet-test"].path,
    {**EXAMPLES["aq-examplemet-test"].config, "aws:region": "us-east-1", "wis2-node:availabilityZone": "us-east-1a"},
)


def from_program(deployment: Deployment, settings) -> cost.Counts:
    """The same counts, read from what the program declared under Pulumi's mocks."""
    region = settings.region
    instance = deployment.one("aws:ec2/instance:Instance").inputs
    volumes = deployment.of_type("aws:ebs/volume:Volume")
    alarms: dict[str, dict[str, int]] = {}
    for alarm in deployment.of_type("aws:cloudwatch/metricAlarm:MetricAlarm"):
        kinds = alarms.setdefault(alarm.inputs.get("region", region), {"standard": 0, "high-resolution": 0})
        kinds["high-resolution" if alarm.inputs["period"] < 60 else "standard"] += 1
    root = instance["rootBlockDevice"]
    assert {v.inputs["type"] for v in volumes} == {root["volumeType"]}
    return cost.Counts(
        instance_type=instance["instanceType"],
        root_volume_gb=root["volumeSize"],
        data_volume_gb=sum(v.inputs["size"] for v in volumes),
        volume_type=root["volumeType"],
        public_ipv4=len(deployment.of_type("aws:ec2/eip:Eip")),
        health_checks=tuple(h.inputs["type"] for h in deployment.of_type("aws:route53/healthCheck:HealthCheck")),
        alarms=alarms,
        custom_metrics=cost.agent_metrics(settings) + 3 + 2 * len(cost.REPORTED_ENDPOINTS) + cost.wis2_metrics(),
        dashboards=len(deployment.of_type("aws:cloudwatch/dashboard:Dashboard")),
        topics=tuple(t.inputs.get("region", region) for t in deployment.of_type("aws:sns/topic:Topic")),
        email_subscriptions=sum(
            s.inputs["protocol"] == "email" for s in deployment.of_type("aws:sns/topicSubscription:TopicSubscription")
        ),
        snapshot_policies=len(deployment.of_type("aws:dlm/lifecyclePolicy:LifecyclePolicy")),
        kms_keys=len(deployment.of_type("aws:kms/key:Key")),
        buckets=len(deployment.of_type("aws:s3/bucket:Bucket")),
        queues=len(deployment.of_type("aws:sqs/queue:Queue")),
    )


def comparable(counts: cost.Counts) -> dict:
    """The counts with the order of declaration (not fixed under the mocks) left out."""
    return {**counts.__dict__, "health_checks": sorted(counts.health_checks), "topics": sorted(counts.topics)}


def test_counts_are_what_the_program_declares(stack_file, deployment):
    settings = stack_file.settings()
    assert comparable(declared(settings)) == comparable(from_program(deployment, settings))


def test_counts_follow_the_settings_as_the_program_does():
    """Another region (us-east-1: one topic, all alarms there), sizes, type and no alert address."""
    config = {
        **US_EAST.config,
        "wis2-node:instanceType": "t4g.medium",
        "wis2-node:rootVolumeGb": 20,
        "wis2-node:dataVolumeGb": 100,
        "wis2-node:alertEmails": [],
    }
    settings = StackFile(US_EAST.stack, US_EAST.path, config).settings()
    here = declared(settings)
    assert comparable(here) == comparable(from_program(run_program(US_EAST.stack, config), settings))
    assert here.alarms == {"us-east-1": {"standard": 19, "high-resolution": 0}} and here.topics == ("us-east-1",)


def test_the_program_declares_nothing_the_estimate_does_not_know(deployment):
    unknown = {r.type for r in deployment.resources} - PRICED - FREE
    assert not unknown, f"resource types the cost estimate does not price nor know to be free: {unknown}"


@pytest.mark.parametrize("stack", sorted(EXAMPLES))
def test_each_example_stack_is_itemised_and_adds_up(stack):
    settings = EXAMPLES[stack].settings()
    result = estimate(settings)
    labels = " | ".join(line.label for line in result.lines)
    for item in (
        f"instance {settings.instance_type}",
        "root volume gp3 16 GB",
        f"data volume gp3 {settings.data_volume_gb} GB",
        "public IPv4 address x1",
        "Route 53 health checks x2 (HTTPS, TCP)",
        "CloudWatch alarms",
        "CloudWatch custom metrics x30",
        "CloudWatch dashboard x1",
        "SNS topics x2",
        "S3 PUT",
        "SQS requests",
        "data transfer out",
    ):
        assert item in labels, labels
    assert result.total == round(sum(line.monthly for line in result.lines if line.monthly is not None), 2)
    assert result.total > 0
    instance = next(line for line in result.lines if line.label.startswith("instance"))
    hourly = {"t4g.small": 0.0184, "t4g.micro": 0.0092}[settings.instance_type]  # eu-west-1, from the table
    assert instance.monthly == round(730 * hourly, 2)
    ipv4 = next(line for line in result.lines if line.label.startswith("public IPv4"))
    assert ipv4.monthly == round(730 * 0.005, 2)
    # The Route 53 alarms live in us-east-1 and are priced there; the table's figure for the node's region.
    assert any(
        line.label == "CloudWatch alarms, standard, x2 in us-east-1" and line.monthly == 0.2 for line in result.lines
    )
    text = report(result)
    assert f"{'total'}" in text and f"{result.total:.2f}" in text
    assert "PROVISIONAL" in text and "NOT IN THE TOTAL" in text  # what the table cannot price, said


def test_every_price_used_is_a_row_of_the_table_with_its_source_and_date():
    table = cost.price_table()
    assert table, "empty price table"
    for row in table.values():
        assert row.usd > 0 and row.source and row.read == "2026-11-25", row
    result = estimate(US_EAST.settings())
    for line in result.lines:
        if line.monthly is not None:
            assert "read 2026-11-25" in line.basis, line


def test_a_region_without_prices_is_refused_naming_aws_region(tmp_path):
    config = {
        **EXAMPLES["aq-examplemet-prod"].config,
        "aws:region": "sa-east-1",
        "wis2-node:availabilityZone": "sa-east-1a",
    }
    path = tmp_path / "Pulumi.aq-examplemet-sa.yaml"
    path.write_text(yaml.safe_dump({"config": config}))
    with pytest.raises(SettingsError, match=r"aws:region = 'sa-east-1'.*no prices"):
        estimate(StackFile("aq-examplemet-sa", path, config).settings())
    run = subprocess.run(
        [sys.executable, "-m", "wis2node", "cost", "--stack", str(path)], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 2 and "aws:region = 'sa-east-1'" in run.stderr, run.stdout + run.stderr
    assert "monthly estimate: none (aws:region = 'sa-east-1'" in cost.one_line(
        StackFile("aq-examplemet-sa", path, config).settings()
    )


def _lines(assumptions: Assumptions) -> dict[str, float | None]:
    return {line.label.split(" (")[0]: line.monthly for line in estimate(US_EAST.settings(), assumptions).lines}


def test_the_traffic_assumptions_move_the_s3_sqs_and_transfer_lines():
    base = _lines(Assumptions())
    more_files = _lines(Assumptions(files_per_day=100_000))
    bigger = _lines(Assumptions(mb_per_file=5))
    subscribed = _lines(Assumptions(subscribers=20))
    for item in ("S3 PUT requests", "S3 GET requests", "S3 storage", "SQS requests", "data transfer out"):
        assert base[item] is not None, item
        assert more_files[item] > base[item] or (item == "SQS requests" and more_files[item] >= base[item]), item
    assert more_files["SQS requests"] > base["SQS requests"]
    assert bigger["S3 storage"] > base["S3 storage"] and bigger["data transfer out"] > base["data transfer out"]
    assert bigger["S3 PUT requests"] == base["S3 PUT requests"]
    assert subscribed["data transfer out"] > base["data transfer out"]
    assert subscribed["S3 storage"] == base["S3 storage"]
    for unchanged in ("instance t4g.micro", "public IPv4 address x1"):
        assert base[unchanged] == more_files[unchanged] == bigger[unchanged] == subscribed[unchanged]


def test_the_cli_prints_the_estimate_and_the_assumptions_it_was_given():
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "wis2node",
            "cost",
            "--stack",
            "aq-examplemet-prod",
            "--files-per-day",
            "5000",
            "--mb-per-file",
            "0.5",
            "--subscribers",
            "3",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "aq-examplemet-prod: monthly estimate in eu-west-1" in run.stdout
    assert "5000 files a day of 0.5 MB" in run.stdout and "+ 3 subscribers" in run.stdout
    assert "total" in run.stdout


def test_check_prints_the_monthly_total_in_one_line_per_stack():
    run = subprocess.run([sys.executable, "-m", "wis2node", "check"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = [line for line in run.stdout.splitlines() if "monthly estimate" in line]
    assert len(lines) == len(stack_files())
    for stack_file in stack_files():
        expected = estimate(stack_file.settings()).total
        assert any(f"{expected:.2f} USD" in line and stack_file.stack in line for line in lines), lines


def test_the_custom_metrics_are_those_the_agent_is_configured_with_and_the_reporter_sends(node):
    settings = EXAMPLES["aq-examplemet-test"].settings()
    with moto_server(settings.region) as aws:
        run = subprocess.run(
            [sys.executable, "-m", "wis2node", "reporter", str(node.path("/etc/wis2/node.json"))],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=run_environment(aws),
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        sent = client("cloudwatch", aws).list_metrics(Namespace="WIS2Node")["Metrics"]
    # heartbeat, days left and renewal overdue per endpoint; CertificateRenewalFailed needs systemd (the VM's)
    assert len(sent) == 1 + 2 * len(cost.REPORTED_ENDPOINTS)
    from wis2node.payload import DeployFacts, render_files

    rendered = {f.path: f.content for f in render_files(settings, DeployFacts(data_volume_id="vol-0"))}
    collected = json.loads(rendered["/etc/wis2/cloudwatch-agent.json"])["metrics"]["metrics_collected"]
    # mem_used_percent; disk used_percent on / and the data volume; pid_count of three processes
    assert (
        cost.agent_metrics(settings)
        == 1 + 2 + 3
        == (len(collected["mem"]["measurement"]) + len(collected["disk"]["resources"]) + len(collected["procstat"]))
    )
    # + CertificateRenewalFailed and UnitsFailing, which need systemd and the VM's unit list
    assert cost.declared(settings).custom_metrics == cost.agent_metrics(settings) + len(sent) + 2 + cost.wis2_metrics()


def test_the_wis2_metrics_are_those_the_watcher_and_the_gdc_check_put(tmp_path):
    from tests.wis2node.nodejson import rendered_node_json
    from wis2node.node import gdc
    from wis2node.node.nodeconfig import parse
    from wis2node.node.watcher import Watcher

    document = rendered_node_json()
    document["wis2"]["state_dir"] = str(tmp_path)
    config = parse(document)
    watcher = Watcher(config, alert=lambda *a: None, put=lambda data: None, clock=lambda: 10_000.0)
    watcher.listening = lambda: 2
    watcher.relays.published("m-1", "d-1", True, 9_000.0)  # settled, cacheable: every relay figure
    watcher.relays.relayed("gb-one", "m-1", 9_000.5)
    put = {d["MetricName"] for d in watcher.tick()}  # no event came: no WIS2Events (not counted, pro rata)
    daily = gdc.metrics(config.stack, [gdc.Finding(name) for name, _ in gdc.catalogues()])
    assert cost.wis2_metrics() == len(put) + len({(d["MetricName"], str(d["Dimensions"])) for d in daily})
