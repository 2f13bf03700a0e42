"""IAM, keys and recoverability as the program declares them (issue 12 item 5, issue 14 item 6).

Each test reads the documents the program hands AWS (trust and permission policies, key
policies, bucket and snapshot configuration) under Pulumi's mocks, and names the attack or the
loss it prevents.
"""

from __future__ import annotations

import json
import re

import pulumi
import pytest

from tests.pulumi_harness import ACCOUNT, Deployment, run_program
from wis2node.settings import NodeSettings, SettingsError
from wis2node.stackfile import StackFile

INSTANCE = "aws:ec2/instance:Instance"
KEY = "aws:kms/key:Key"
TOPIC = "aws:sns/topic:Topic"
VOLUME = "aws:ebs/volume:Volume"
DLM = "aws:dlm/lifecyclePolicy:LifecyclePolicy"


def statements(resource) -> list[dict]:
    return json.loads(resource.inputs["policy"])["Statement"]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


# -- the uploader role trusts roles, never a whole account ----------------------------------------

WHOLE_ACCOUNT = ["210987654321", "arn:aws:iam::210987654321:root"]
NOT_A_ROLE = [
    "arn:aws:iam::210987654321:user/message-switch",
    "arn:aws:iam::210987654321:group/uploaders",
    "arn:aws:sts::210987654321:assumed-role/message-switch/session",
    "message-switch",
    "arn:aws:iam::210987654321:role/",
]


@pytest.mark.parametrize("principal", WHOLE_ACCOUNT)
def test_an_uploader_principal_naming_a_whole_account_is_refused(stack_file: StackFile, principal: str):
    """Trusting an account lets every user and role its administrators allow assume the uploader role."""
    with pytest.raises(pulumi.RunError) as refused:
        run_program(stack_file.stack, {**stack_file.config, "wis2-node:uploaderPrincipals": [principal]})
    message = str(refused.value)
    assert "wis2-node:uploaderPrincipals[0]" in message or "wis2-node:uploaderPrincipals" in message, message
    assert principal in message and "whole account" in message and ":role/" in message, message


@pytest.mark.parametrize("principal", NOT_A_ROLE)
def test_an_uploader_principal_that_is_not_a_role_is_refused(stack_file: StackFile, principal: str):
    with pytest.raises(SettingsError) as refused:
        NodeSettings.from_config(stack_file.stack, {**stack_file.config, "wis2-node:uploaderPrincipals": [principal]})
    message = str(refused.value)
    assert "wis2-node:uploaderPrincipals" in message and principal in message and ":role/" in message, message


def test_the_uploader_role_trusts_exactly_the_listed_roles(stack_file: StackFile):
    roles = ["arn:aws:iam::210987654321:role/message-switch", "arn:aws:iam::210987654321:role/ingest/backup"]
    deployment = run_program(stack_file.stack, {**stack_file.config, "wis2-node:uploaderPrincipals": roles})
    trust = json.loads(deployment.named("ingest-uploader-role").inputs["assumeRolePolicy"])["Statement"]
    assert [(s["Effect"], s["Action"], s["Principal"]) for s in trust] == [("Allow", "sts:AssumeRole", {"AWS": roles})]
    for principal in trust[0]["Principal"]["AWS"]:
        assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@/-]+", principal), principal


# -- the instance role ----------------------------------------------------------------------------


def test_the_node_may_create_the_publisher_password_but_never_overwrite_it(
    stack_file: StackFile, deployment: Deployment
):
    """A node (or a process that steals its role's credentials) cannot replace the password publishers use."""
    parameter = f"arn:aws:ssm:eu-west-1:{ACCOUNT}:parameter/wis2-node/{stack_file.stack}/publisher-password"
    policy = statements(deployment.named("host-policy"))
    puts = [s for s in policy if "ssm:PutParameter" in as_list(s["Action"])]
    allows = [s for s in puts if s["Effect"] == "Allow"]
    assert [s["Resource"] for s in allows] == [parameter] and not [s for s in allows if "Condition" in s]
    denials = [s for s in puts if s["Effect"] == "Deny"]
    assert [(s["Resource"], s["Condition"]) for s in denials] == [
        (parameter, {"StringEquals": {"ssm:Overwrite": "true"}})
    ], "PutParameter may overwrite the password"


def test_only_actions_that_take_no_resource_are_granted_on_everything(deployment: Deployment):
    """ "*" only where IAM offers nothing narrower, each named here; the rest names its resources."""
    unscoped = {}
    for name in ("host-policy", "ingest-node"):
        for statement in statements(deployment.named(name)):
            if "*" in as_list(statement["Resource"]):
                assert statement["Effect"] == "Allow"
                unscoped[statement["Sid"]] = (sorted(as_list(statement["Action"])), statement.get("Condition"))
    session = sorted(
        [
            "ssm:UpdateInstanceInformation",
            "ssmmessages:CreateControlChannel",
            "ssmmessages:CreateDataChannel",
            "ssmmessages:OpenControlChannel",
            "ssmmessages:OpenDataChannel",
        ]
    )
    expected = {
        "SessionManager": (session, None),
        "Metrics": (
            ["cloudwatch:PutMetricData"],
            {"StringEquals": {"cloudwatch:namespace": ["WIS2Node", "WIS2Node/Host"]}},
        ),
        # certbot-dns-route53 lists the hosted zones to find the node's: no resource ARN exists
        "AcmeFindZone": (["route53:ListHostedZones"], None),
    }
    assert unscoped == expected


# -- alert topics ---------------------------------------------------------------------------------


def test_every_alert_topic_is_encrypted_with_a_key_cloudwatch_may_use(deployment: Deployment):
    keys = {k.inputs["region"]: k for k in deployment.of_type(KEY)}
    topics = deployment.of_type(TOPIC)
    assert {t.inputs["region"] for t in topics} == set(keys) == {"eu-west-1", "us-east-1"}
    for topic in topics:
        region = topic.inputs["region"]
        # the stack's own key of the topic's region: alias/aws/sns would refuse CloudWatch alarms
        assert topic.inputs["kmsMasterKeyId"] == f"arn:aws:kms:{region}:{ACCOUNT}:key/{keys[region].name}"
    for key in keys.values():
        assert key.inputs["enableKeyRotation"] is True and key.inputs["keyUsage"] == "ENCRYPT_DECRYPT"
        policy = {s["Sid"]: s for s in statements(key)}
        assert set(policy) == {"AccountAdministers", "CloudWatchAlarmsPublish"}
        assert policy["AccountAdministers"]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
        cloudwatch = policy["CloudWatchAlarmsPublish"]
        assert cloudwatch["Effect"] == "Allow" and cloudwatch["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
        assert sorted(cloudwatch["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]


def test_health_check_alarms_publish_to_the_encrypted_topic_of_their_region(deployment: Deployment):
    topics = {t.inputs["region"]: t for t in deployment.of_type(TOPIC)}
    alarms = [
        a
        for a in deployment.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
        if a.inputs.get("namespace") == "AWS/Route53"
    ]
    assert alarms
    for alarm in alarms:
        assert alarm.inputs["region"] == "us-east-1"
        assert alarm.inputs["alarmActions"] == [f"arn:aws:sns:us-east-1:{ACCOUNT}:{topics['us-east-1'].name}"]


# -- ingest bucket --------------------------------------------------------------------------------


def test_an_overwritten_or_deleted_upload_stays_recoverable_and_retention_still_applies(
    stack_file: StackFile, deployment: Deployment
):
    versioning = deployment.one("aws:s3/bucketVersioning:BucketVersioning").inputs
    assert versioning["versioningConfiguration"]["status"] == "Enabled"
    rules = {
        r["id"]: r
        for r in deployment.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs["rules"]
    }
    assert rules["expire-data"]["expiration"]["days"] == stack_file.settings().retention_days
    old_versions = rules["expire-old-versions"]
    assert old_versions["status"] == "Enabled" and not old_versions["filter"].get("prefix")
    assert old_versions["noncurrentVersionExpiration"]["noncurrentDays"] == 14  # the dead-letter queue's days
    assert old_versions["expiration"]["expiredObjectDeleteMarker"] is True
    # a deletion on a versioned bucket is s3:ObjectRemoved:DeleteMarkerCreated: still an event the node gets
    notification = deployment.one("aws:s3/bucketNotification:BucketNotification").inputs
    assert all("s3:ObjectRemoved:*" in q["events"] for q in notification["queues"])
    # uploaders can overwrite, never remove a version
    uploader = statements(deployment.one("aws:iam/policy:Policy"))
    assert [s["Action"] for s in uploader] == ["s3:PutObject"]


# -- snapshots of the data volume -----------------------------------------------------------------


def test_the_data_volume_and_only_it_is_snapshotted_daily(stack_file: StackFile, deployment: Deployment):
    settings = stack_file.settings()
    policy = deployment.one(DLM).inputs
    details = policy["policyDetails"]
    assert policy["state"] == "ENABLED" and details["policyType"] == "EBS_SNAPSHOT_MANAGEMENT"
    assert details["resourceTypes"] == ["VOLUME"]
    target = details["targetTags"]
    volume = deployment.one(VOLUME).inputs
    assert target.items() <= volume["tags"].items(), "the policy does not target the data volume"
    root_tags = deployment.one(INSTANCE).inputs["rootBlockDevice"]["tags"]
    assert not target.items() & root_tags.items(), "the root volume would be snapshotted too"
    (schedule,) = details["schedules"]
    assert schedule["createRule"] == {"interval": 24, "intervalUnit": "HOURS", "times": "02:00"}
    assert schedule["retainRule"] == {"interval": settings.snapshot_retention_days, "intervalUnit": "DAYS"}
    assert schedule["copyTags"] is True
    # DLM accepts only these characters in a description and a schedule name
    for text in (policy["description"], schedule["name"]):
        assert re.fullmatch(r"[0-9A-Za-z _-]{1,120}", text), text


def test_two_stacks_never_target_the_same_volumes(deployments: dict[str, Deployment]):
    targets = [
        json.dumps(d.one(DLM).inputs["policyDetails"]["targetTags"], sort_keys=True) for d in deployments.values()
    ]
    assert len(set(targets)) == len(targets)


def test_the_snapshot_role_is_dlms_alone(deployment: Deployment):
    policy = deployment.one(DLM).inputs
    role = deployment.named("host-snapshots-role")
    assert policy["executionRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/host-snapshots-role"
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert [(s["Effect"], s["Action"], s["Principal"]) for s in trust] == [
        ("Allow", "sts:AssumeRole", {"Service": "dlm.amazonaws.com"})
    ]
    attached = deployment.named("host-snapshots-role-policy").inputs
    assert attached["role"] == "host-snapshots-role"
    assert attached["policyArn"] == "arn:aws:iam::aws:policy/service-role/AWSDataLifecycleManagerServiceRole"


def test_snapshot_retention_is_a_setting_that_does_not_replace_the_node(stack_file: StackFile, deployment: Deployment):
    changed = run_program(
        stack_file.stack,
        {**stack_file.config, "wis2-node:snapshotRetentionDays": 30, "wis2-node:centreName": "Another name"},
    )
    assert changed.one(DLM).inputs["policyDetails"]["schedules"][0]["retainRule"]["interval"] == 30
    assert changed.one(INSTANCE).user_data == deployment.one(INSTANCE).user_data


@pytest.mark.parametrize("days", [0, 366, "a week"])
def test_a_bad_snapshot_retention_is_refused(stack_file: StackFile, days):
    with pytest.raises(SettingsError, match=r"wis2-node:snapshotRetentionDays = "):
        NodeSettings.from_config(stack_file.stack, {**stack_file.config, "wis2-node:snapshotRetentionDays": days})


def test_a_restore_makes_the_data_volume_from_the_snapshot_named(stack_file: StackFile, deployment: Deployment):
    assert "snapshotId" not in deployment.one(VOLUME).inputs
    restored = run_program(
        stack_file.stack, {**stack_file.config, "wis2-node:dataVolumeSnapshotId": "snap-0123456789abcdef0"}
    )
    volume = restored.one(VOLUME).inputs
    assert volume["snapshotId"] == "snap-0123456789abcdef0" and volume["encrypted"] is True
    # the restored volume is snapshotted like the one it replaces
    assert restored.one(DLM).inputs["policyDetails"]["targetTags"].items() <= volume["tags"].items()


@pytest.mark.parametrize("snapshot", ["vol-0123456789abcdef0", "snap-XYZ", "snap-0123"])
def test_a_bad_snapshot_id_is_refused(stack_file: StackFile, snapshot: str):
    with pytest.raises(SettingsError, match=rf"wis2-node:dataVolumeSnapshotId = '{snapshot}'"):
        NodeSettings.from_config(stack_file.stack, {**stack_file.config, "wis2-node:dataVolumeSnapshotId": snapshot})
