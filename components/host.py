"""Host: the node's VM, its role, and the data volume that outlives it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

import pulumi
import pulumi_aws as aws

from components.settings import Platform
from wis2node.payload import HOST_METRIC_NAMESPACE, METRIC_NAMESPACE, DeployFacts, render_user_data
from wis2node.settings import NodeSettings

DATA_DEVICE = "/dev/sdf"

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


def node_policy(settings: NodeSettings, platform: Platform) -> dict:
    """What the node itself may do in the account: its own parameters, its own ACME record."""
    def parameter_arn(name: str) -> str:
        return (f"arn:{platform.partition}:ssm:{settings.region}:{platform.account_id}:parameter"
                f"{settings.parameter_name(name)}")

    statements = [
        {"Sid": "SessionManager", "Effect": "Allow", "Action": SESSION_MANAGER_ACTIONS, "Resource": "*"},
        # The node generates its publisher password on first boot and reads it back afterwards.
        {"Sid": "PublisherPassword", "Effect": "Allow", "Action": ["ssm:GetParameter", "ssm:PutParameter"],
         "Resource": parameter_arn("publisher-password")},
    ]
    # The node's own metrics (certificate days, heartbeat) and the CloudWatch agent's.
    statements.append({"Sid": "Metrics", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
                       "Condition": {"StringEquals": {"cloudwatch:namespace": [METRIC_NAMESPACE,
                                                                              HOST_METRIC_NAMESPACE]}}})
    if settings.uses_private_key_parameter:
        statements.append({"Sid": "TlsKey", "Effect": "Allow", "Action": "ssm:GetParameter",
                           "Resource": [parameter_arn("tls-private-key"), parameter_arn("tls-certificate")]})
    if settings.tls_mode == "letsencrypt":
        # certbot's dns-route53 plugin: only the TXT record _acme-challenge.<fqdn> of its own zone.
        statements += [
            {"Sid": "AcmeChallengeRecord", "Effect": "Allow", "Action": "route53:ChangeResourceRecordSets",
             "Resource": f"arn:{platform.partition}:route53:::hostedzone/{platform.zone_id}",
             "Condition": {"ForAllValues:StringEquals": {
                 "route53:ChangeResourceRecordSetsNormalizedRecordNames": [f"_acme-challenge.{settings.fqdn}"],
                 "route53:ChangeResourceRecordSetsRecordTypes": ["TXT"],
                 "route53:ChangeResourceRecordSetsActions": ["UPSERT", "DELETE"]}}},
            {"Sid": "AcmeChangeStatus", "Effect": "Allow", "Action": "route53:GetChange",
             "Resource": f"arn:{platform.partition}:route53:::change/*"},
            {"Sid": "AcmeFindZone", "Effect": "Allow", "Action": "route53:ListHostedZones", "Resource": "*"},
        ]
    return {"Version": "2012-10-17", "Statement": statements}


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
            assume_role_policy=json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                               "Principal": {"Service": "ec2.amazonaws.com"}}],
            }),
            tags=tags,
            opts=child,
        )
        self.policy = aws.iam.RolePolicy(
            f"{name}-policy",
            role=self.role.id,
            policy=json.dumps(node_policy(settings, args.platform)),
            opts=child,
        )
        self.instance_profile = aws.iam.InstanceProfile(
            f"{name}-profile", role=self.role.name, tags=tags, opts=child)

        # Kept across instance replacements, and protected in production: it holds the
        # certificates, the broker's persistent sessions and the published files.
        self.data_volume = aws.ebs.Volume(
            f"{name}-data",
            availability_zone=settings.availability_zone,
            size=settings.data_volume_gb,
            type="gp3",
            encrypted=True,
            tags={**tags, "Name": f"{settings.stack}-wis2-data"},
            opts=pulumi.ResourceOptions(parent=self, protect=settings.is_production),
        )
        user_data = self.data_volume.id.apply(lambda volume_id: render_user_data(settings, DeployFacts(
            data_volume_id=volume_id, bucket=settings.ingest_bucket(args.platform.account_id),
            package_sha256=args.package_sha256)))

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
            user_data=user_data,
            user_data_replace_on_change=True,
            tags={**tags, "Name": f"{settings.stack}-wis2-node"},
            # The data volume can be attached to one instance at a time: remove the old first.
            # Without a pinned imageId, the image found at the first deployment stays: a newer
            # Ubuntu image never replaces the node by surprise (pin one to move on, see README).
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True, depends_on=list(args.boot_after),
                                        ignore_changes=[] if settings.image_id else ["ami"]),
        )
        self.data_attachment = aws.ec2.VolumeAttachment(
            f"{name}-data-attachment",
            device_name=DATA_DEVICE,
            volume_id=self.data_volume.id,
            instance_id=self.instance.id,
            stop_instance_before_detaching=True,
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        self.register_outputs({"instance_id": self.instance.id, "data_volume_id": self.data_volume.id})
