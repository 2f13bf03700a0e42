"""Host: the node's VM, its role, and the data volume that outlives it."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.iam import trust_policy
from components.settings import Platform
from wis2node.node import journal
from wis2node.payload import (
    HOST_METRIC_NAMESPACE,
    METRIC_NAMESPACE,
    RUNTIME_PARAMETER,
    DeployFacts,
    pack_user_data,
    render_user_data,
    runtime_config,
)
from wis2node.settings import NodeSettings

DATA_DEVICE = "/dev/sdf"
# Data Lifecycle Manager snapshots the volumes that carry this tag (its value: the stack's data
# volume, so two stacks in one account never share a policy's target, which DLM refuses).
BACKUP_TAG = "wis2-node:backup"
# When (UTC) the daily snapshot starts: crash-consistent, like a power cut, which the data
# volume's journal and the broker's and agent's own files survive.
SNAPSHOT_TIME = "02:00"
# DLM's own role policy (AWS managed): create, tag and delete the snapshots of its policies.
DLM_MANAGED_POLICY = "policy/service-role/AWSDataLifecycleManagerServiceRole"

# Admin access through Session Manager only (no SSH, no key pair): the agent registers the
# instance and opens the channels a session runs over. These actions take no resource ARNs.
SESSION_MANAGER_ACTIONS = [
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
]


@dataclass(frozen=True)
class HostArgs:
    settings: NodeSettings
    platform: Platform
    # Every security group of the node (at most GROUPS_PER_INTERFACE, AWS's default).
    security_group_ids: Sequence[pulumi.Input[str]]
    # The node package's hash: a new package is a new payload, hence a new instance.
    package_sha256: str = ""
    # What must exist before the instance boots (its TLS key and certificate parameters).
    boot_after: Sequence[pulumi.Resource] = ()


def node_policy(settings: NodeSettings, platform: Platform) -> dict[str, Any]:
    """What the node itself may do in the account: its own parameters, its own ACME record."""

    def parameter_arn(name: str) -> str:
        return (
            f"arn:{platform.partition}:ssm:{settings.region}:{platform.account_id}:parameter"
            f"{settings.parameter_name(name)}"
        )

    statements = [
        {"Sid": "SessionManager", "Effect": "Allow", "Action": SESSION_MANAGER_ACTIONS, "Resource": "*"},
        # The node generates its publisher password on first boot and reads it back afterwards.
        {
            "Sid": "PublisherPassword",
            "Effect": "Allow",
            "Action": ["ssm:GetParameter", "ssm:PutParameter"],
            "Resource": parameter_arn("publisher-password"),
        },
        # ... but only creates it: a node (or whoever holds its role) can never replace the password
        # publishers use. An explicit Deny outranks any Allow; ssm:Overwrite is "true" only on a
        # PutParameter that asks to overwrite (AWS Systems Manager, "Preventing changes to existing
        # parameters using ssm:Overwrite").
        {
            "Sid": "PublisherPasswordCreateOnly",
            "Effect": "Deny",
            "Action": "ssm:PutParameter",
            "Resource": parameter_arn("publisher-password"),
            "Condition": {"StringEquals": {"ssm:Overwrite": "true"}},
        },
    ]
    # What changes in place: the node reads it every minute (wis2-config.timer).
    statements.append(
        {
            "Sid": "RuntimeConfig",
            "Effect": "Allow",
            "Action": "ssm:GetParameter",
            "Resource": parameter_arn(RUNTIME_PARAMETER),
        }
    )
    # Its services' logs, into their own groups only (wis2-logs.timer); the groups are Pulumi's.
    statements.append(
        {
            "Sid": "Logs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [
                f"arn:{platform.partition}:logs:{settings.region}:{platform.account_id}:log-group:{group}:*"
                for group in journal.log_groups(settings.stack).values()
            ],
        }
    )
    # The node's own metrics (certificate days, heartbeat) and the CloudWatch agent's.
    statements.append(
        {
            "Sid": "Metrics",
            "Effect": "Allow",
            "Action": "cloudwatch:PutMetricData",
            "Resource": "*",
            "Condition": {"StringEquals": {"cloudwatch:namespace": [METRIC_NAMESPACE, HOST_METRIC_NAMESPACE]}},
        }
    )
    if settings.uses_private_key_parameter:
        statements.append(
            {
                "Sid": "TlsKey",
                "Effect": "Allow",
                "Action": "ssm:GetParameter",
                "Resource": [parameter_arn("tls-private-key"), parameter_arn("tls-certificate")],
            }
        )
    if settings.tls_mode == "letsencrypt":
        # certbot's dns-route53 plugin: only the TXT record _acme-challenge.<fqdn> of its own zone.
        statements += [
            {
                "Sid": "AcmeChallengeRecord",
                "Effect": "Allow",
                "Action": "route53:ChangeResourceRecordSets",
                "Resource": f"arn:{platform.partition}:route53:::hostedzone/{platform.zone_id}",
                "Condition": {
                    "ForAllValues:StringEquals": {
                        "route53:ChangeResourceRecordSetsNormalizedRecordNames": [f"_acme-challenge.{settings.fqdn}"],
                        "route53:ChangeResourceRecordSetsRecordTypes": ["TXT"],
                        "route53:ChangeResourceRecordSetsActions": ["UPSERT", "DELETE"],
                    }
                },
            },
            {
                "Sid": "AcmeChangeStatus",
                "Effect": "Allow",
                "Action": "route53:GetChange",
                "Resource": f"arn:{platform.partition}:route53:::change/*",
            },
            # certbot-dns-route53 (2.x, Ubuntu 24.04's 2.9 included) finds the zone by listing every
            # hosted zone: ListHostedZones takes no resource ARN and no condition, so it stays on "*".
            # It reveals the names and ids of the account's zones, not their records.
            {"Sid": "AcmeFindZone", "Effect": "Allow", "Action": "route53:ListHostedZones", "Resource": "*"},
        ]
    return {"Version": "2012-10-17", "Statement": statements}


def backup_target(settings: NodeSettings) -> str:
    """The value of BACKUP_TAG on the stack's data volume, which its snapshot policy targets."""
    return f"{settings.stack}-data"


class Host(pulumi.ComponentResource):
    """An Ubuntu 24.04 instance reached only through SSM, with an encrypted data volume."""

    def __init__(self, name: str, args: HostArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("wis2-node:index:Host", name, None, opts)
        settings = args.settings
        tags = settings.resource_tags
        child = pulumi.ResourceOptions(parent=self)

        self.role = aws.iam.Role(
            f"{name}-role",
            description=f"WIS2 Node {settings.stack}: the instance's own permissions",
            assume_role_policy=json.dumps(trust_policy({"Service": "ec2.amazonaws.com"})),
            tags=tags,
            opts=child,
        )
        self.policy = aws.iam.RolePolicy(
            f"{name}-policy",
            role=self.role.id,
            policy=json.dumps(node_policy(settings, args.platform)),
            opts=child,
        )
        self.instance_profile = aws.iam.InstanceProfile(f"{name}-profile", role=self.role.name, tags=tags, opts=child)

        # Kept across instance replacements, and protected in production: it holds the
        # certificates, the broker's persistent sessions and the published files.
        self.data_volume = aws.ebs.Volume(
            f"{name}-data",
            availability_zone=settings.availability_zone,
            size=settings.data_volume_gb,
            # A restore (README, "Backups and restore"): a new volume from one of its snapshots.
            snapshot_id=settings.data_volume_snapshot_id,
            type="gp3",
            encrypted=True,
            tags={**tags, "Name": f"{settings.stack}-wis2-data", BACKUP_TAG: backup_target(settings)},
            opts=pulumi.ResourceOptions(parent=self, protect=settings.is_production),
        )
        self.snapshot_role = aws.iam.Role(
            f"{name}-snapshots-role",
            description=f"WIS2 Node {settings.stack}: Data Lifecycle Manager snapshots the data volume",
            assume_role_policy=json.dumps(trust_policy({"Service": "dlm.amazonaws.com"})),
            tags=tags,
            opts=child,
        )
        self.snapshot_role_policy = aws.iam.RolePolicyAttachment(
            f"{name}-snapshots-role-policy",
            role=self.snapshot_role.name,
            policy_arn=f"arn:{args.platform.partition}:iam::aws:{DLM_MANAGED_POLICY}",
            opts=child,
        )
        self.snapshots = aws.dlm.LifecyclePolicy(
            f"{name}-snapshots",
            # DLM accepts only letters, digits, spaces, _ and - in a description and a schedule name.
            description=re.sub(
                r"[^0-9A-Za-z _-]", "-", f"WIS2 Node {settings.stack} daily snapshots of the data volume"
            ),
            execution_role_arn=self.snapshot_role.arn,
            state="ENABLED",
            policy_details=aws.dlm.LifecyclePolicyPolicyDetailsArgs(
                policy_type="EBS_SNAPSHOT_MANAGEMENT",
                resource_types=["VOLUME"],
                target_tags={BACKUP_TAG: backup_target(settings)},
                schedules=[
                    aws.dlm.LifecyclePolicyPolicyDetailsScheduleArgs(
                        name=f"daily kept {settings.snapshot_retention_days} days",
                        create_rule=aws.dlm.LifecyclePolicyPolicyDetailsScheduleCreateRuleArgs(
                            interval=24, interval_unit="HOURS", times=SNAPSHOT_TIME
                        ),
                        retain_rule=aws.dlm.LifecyclePolicyPolicyDetailsScheduleRetainRuleArgs(
                            interval=settings.snapshot_retention_days, interval_unit="DAYS"
                        ),
                        copy_tags=True,
                        tags_to_add={"wis2-node:snapshot": "daily"},
                    )
                ],
            ),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.snapshot_role_policy]),
        )
        # What can change without a new machine: the node re-reads it every minute and applies
        # only what changed (wis2node/node/runtime.py); never in user data, so a change here never
        # replaces the instance.
        self.runtime_parameter = aws.ssm.Parameter(
            f"{name}-runtime-config",
            name=settings.parameter_name(RUNTIME_PARAMETER),
            description=f"WIS2 Node {settings.stack}: runtime configuration, applied in place by wis2-config",
            type="String",
            value=json.dumps(runtime_config(settings), sort_keys=True),
            tags=tags,
            opts=child,
        )
        # The services' logs (wis2-logs.timer ships the journal), kept logRetentionDays.
        self.log_groups = {
            service: aws.cloudwatch.LogGroup(
                f"{name}-logs-{service}",
                name=group,
                retention_in_days=settings.log_retention_days,
                tags=tags,
                opts=child,
            )
            for service, group in journal.log_groups(settings.stack).items()
        }
        # Gzipped: cloud-init unpacks it, and EC2's 16 KB limit applies to the packed bytes.
        user_data = self.data_volume.id.apply(
            lambda volume_id: pack_user_data(
                render_user_data(
                    settings,
                    DeployFacts(
                        data_volume_id=volume_id,
                        bucket=settings.ingest_bucket(args.platform.account_id),
                        package_sha256=args.package_sha256,
                    ),
                )
            )
        )

        self.instance = aws.ec2.Instance(
            f"{name}-instance",
            ami=args.platform.image_id,
            instance_type=settings.instance_type,
            subnet_id=args.platform.subnet_id,
            vpc_security_group_ids=list(args.security_group_ids),
            iam_instance_profile=self.instance_profile.name,
            metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
                http_endpoint="enabled",
                http_tokens="required",  # IMDSv2 only
                http_put_response_hop_limit=1,
            ),
            root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                volume_type="gp3",
                volume_size=settings.root_volume_gb,
                encrypted=True,
                delete_on_termination=True,
                tags={**tags, "Name": f"{settings.stack}-wis2-root"},
            ),
            monitoring=True,
            user_data_base64=user_data,
            user_data_replace_on_change=True,
            tags={**tags, "Name": f"{settings.stack}-wis2-node"},
            # The data volume can be attached to one instance at a time: remove the old first.
            # Without a pinned imageId, the image found at the first deployment stays: a newer
            # Ubuntu image never replaces the node by surprise (pin one to move on, see README).
            opts=pulumi.ResourceOptions(
                parent=self,
                delete_before_replace=True,
                depends_on=[*args.boot_after, self.runtime_parameter],
                ignore_changes=[] if settings.image_id else ["ami"],
            ),
        )
        self.data_attachment = aws.ec2.VolumeAttachment(
            f"{name}-data-attachment",
            device_name=DATA_DEVICE,
            volume_id=self.data_volume.id,
            instance_id=self.instance.id,
            stop_instance_before_detaching=True,
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        self.register_outputs(
            {
                "instance_id": self.instance.id,
                "data_volume_id": self.data_volume.id,
                "snapshot_policy": self.snapshots.id,
            }
        )
