"""Customer managed KMS keys for what AWS services write on the node's behalf (its alert topics)."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from components.settings import Platform
from wis2node.settings import NodeSettings


def alerts_key_policy(account_id: str, partition: str) -> dict[str, Any]:
    """The account administers the key; CloudWatch alarms may encrypt what they publish with it.

    The AWS managed key alias/aws/sns cannot serve: its policy, which nobody can edit, does not
    let CloudWatch alarms use it, and they fail with "CloudWatch Alarms does not have authorization
    to access the SNS topic encryption key" (AWS re:Post, "configure a CloudWatch alarm with an
    encrypted SNS topic"). Route53 health check alarms are CloudWatch alarms in us-east-1: same
    service principal. Who may publish to the topic at all is the topic policy's business (the
    account's own principals and services acting for it); the key only lets CloudWatch encrypt.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AccountAdministers",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "CloudWatchAlarmsPublish",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
            },
        ],
    }


def alerts_key(
    name: str, region: str, settings: NodeSettings, platform: Platform, opts: pulumi.ResourceOptions
) -> aws.kms.Key:
    """One key per region of alert topics (a KMS key serves its own region only)."""
    return aws.kms.Key(
        name,
        region=region,
        description=f"WIS2 Node {settings.stack}: encrypts the alert topic in {region}",
        key_usage="ENCRYPT_DECRYPT",
        customer_master_key_spec="SYMMETRIC_DEFAULT",
        enable_key_rotation=True,
        deletion_window_in_days=30 if settings.is_production else 7,
        policy=json.dumps(alerts_key_policy(platform.account_id, platform.partition)),
        tags=settings.resource_tags,
        opts=opts,
    )
