"""Publishing: where a centre's systems hand files to the node, and how the node hears of them.

A private, encrypted S3 bucket (data/ from the centre, metadata/ from this repository), an SQS
queue fed by the bucket's events with a dead-letter queue, a put-only policy (and optionally a
role) for the centre's uploaders, and the instance's read-and-consume permissions.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.iam import trust_policy
from components.settings import Platform
from wis2node.metadata import MetadataRecord
from wis2node.payload import NodePackage
from wis2node.settings import EVENT_MAX_RECEIVES, EVENT_VISIBILITY_SECONDS, NodeSettings

EVENTS = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
# How long an overwritten or deleted upload stays recoverable (a noncurrent version): as long as
# the dead-letter queue keeps the event of a file that failed.
NONCURRENT_VERSION_DAYS = 14


def queue_policy(queue_arn: str, bucket_arn: str, account_id: str) -> dict[str, Any]:
    """Only S3, for this bucket of this account, may put events on the queue: a forged event is refused."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "BucketEvents",
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {
                    "ArnEquals": {"aws:SourceArn": bucket_arn},
                    "StringEquals": {"aws:SourceAccount": account_id},
                },
            },
            # Explicit denials outrank any Allow an identity policy in the account grants (even the
            # account's administrators'). A negated condition holds when its key is absent, so a direct
            # send (no aws:SourceArn, no aws:SourceAccount) is denied too. Only sending is denied: the
            # owner still manages the queue, and the node still receives and deletes.
            {
                "Sid": "DenySendersButThisBucket",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnNotEquals": {"aws:SourceArn": bucket_arn}},
            },
            {
                "Sid": "DenySendersOfOtherAccounts",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"StringNotEquals": {"aws:SourceAccount": account_id}},
            },
        ],
    }


def tls_only_policy(bucket_arn: str) -> dict[str, Any]:
    """The bucket refuses every request that does not come over TLS."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyPlainHttp",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def uploader_policy(bucket_arn: str) -> dict[str, Any]:
    """What the centre's systems may do: put files under data/, nothing else."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "PutData", "Effect": "Allow", "Action": "s3:PutObject", "Resource": f"{bucket_arn}/data/*"}
        ],
    }


def node_ingest_policy(bucket_arn: str, queue_arn: str, dead_letter_queue_arn: str) -> dict[str, Any]:
    """What the node itself may do: read the bucket, consume the queue, park failures."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadIngest",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:ListBucket"],
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
            },
            {
                "Sid": "ConsumeEvents",
                "Effect": "Allow",
                "Action": [
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes",
                ],
                "Resource": queue_arn,
            },
            {
                "Sid": "ParkFailures",
                "Effect": "Allow",
                "Action": ["sqs:SendMessage"],
                "Resource": dead_letter_queue_arn,
            },
        ],
    }


@dataclass(frozen=True)
class PublishingArgs:
    settings: NodeSettings
    platform: Platform
    instance_role_name: pulumi.Input[str]
    metadata: Sequence[MetadataRecord]
    package: NodePackage


class Publishing(pulumi.ComponentResource):
    """Ingest bucket, event queues, uploader access, repository metadata and the node's package."""

    def __init__(self, name: str, args: PublishingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("wis2-node:index:Publishing", name, None, opts)
        settings, platform = args.settings, args.platform
        tags = settings.resource_tags
        child = pulumi.ResourceOptions(parent=self)

        self.bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket=settings.ingest_bucket(platform.account_id),
            force_destroy=not settings.is_production,
            tags=tags,
            opts=child,
        )
        self.public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-private",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        self.ownership = aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=self.bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        )
        self.encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=self.bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="AES256"
                    )
                )
            ],
            opts=child,
        )
        # Versioned: an upload overwritten or deleted by mistake (by an uploader, who may only put)
        # can be restored for NONCURRENT_VERSION_DAYS (README, "Recovering an upload"). A deletion
        # leaves a delete marker, whose ObjectRemoved:DeleteMarkerCreated event the node handles as
        # any deletion.
        self.versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=self.bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=child,
        )
        # The node keeps what it publishes on its data volume: the bucket only has to hold a file
        # until the node has copied it. Expire it after the stack's retention all the same (on a
        # versioned bucket the file becomes a noncurrent version, deleted NONCURRENT_VERSION_DAYS
        # later, and the delete marker left alone goes too). Lifecycle actions send no events.
        noncurrent = aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
            noncurrent_days=NONCURRENT_VERSION_DAYS
        )
        self.lifecycle = aws.s3.BucketLifecycleConfiguration(
            f"{name}-retention",
            bucket=self.bucket.id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-data",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix="data/"),
                    expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=settings.retention_days),
                    abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                        days_after_initiation=1
                    ),
                ),
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-old-versions",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(),
                    noncurrent_version_expiration=noncurrent,
                    expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(expired_object_delete_marker=True),
                ),
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.versioning]),
        )
        self.bucket_policy = aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=self.bucket.id,
            policy=self.bucket.arn.apply(lambda arn: json.dumps(tls_only_policy(arn))),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.public_access_block]),
        )

        self.dead_letter_queue = aws.sqs.Queue(
            f"{name}-failed",
            name=settings.dead_letter_queue,
            sqs_managed_sse_enabled=True,
            message_retention_seconds=14 * 24 * 3600,
            tags=tags,
            opts=child,
        )
        self.queue = aws.sqs.Queue(
            f"{name}-queue",
            name=settings.ingest_queue,
            sqs_managed_sse_enabled=True,
            visibility_timeout_seconds=EVENT_VISIBILITY_SECONDS,
            message_retention_seconds=4 * 24 * 3600,
            redrive_policy=self.dead_letter_queue.arn.apply(
                lambda arn: json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": EVENT_MAX_RECEIVES})
            ),
            tags=tags,
            opts=child,
        )
        self.queue_policy = aws.sqs.QueuePolicy(
            f"{name}-bucket-events",
            queue_url=self.queue.url,
            policy=pulumi.Output.all(self.queue.arn, self.bucket.arn).apply(
                lambda arns: json.dumps(queue_policy(arns[0], arns[1], platform.account_id))
            ),
            opts=child,
        )
        self.notification = aws.s3.BucketNotification(
            f"{name}-events",
            bucket=self.bucket.id,
            queues=[
                aws.s3.BucketNotificationQueueArgs(
                    id=prefix.rstrip("/"), queue_arn=self.queue.arn, events=EVENTS, filter_prefix=prefix
                )
                for prefix in ("data/", "metadata/")
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.queue_policy]),
        )

        # What the centre's systems may do: put files under data/, nothing else.
        self.uploader_policy = aws.iam.Policy(
            f"{name}-uploader",
            description=f"Upload files to the WIS2 Node {settings.fqdn} (put only)",
            policy=self.bucket.arn.apply(lambda arn: json.dumps(uploader_policy(arn))),
            tags=tags,
            opts=child,
        )
        self.uploader_role: aws.iam.Role | None = None
        self.uploader_attachment: aws.iam.RolePolicyAttachment | None = None
        # Trusted: the roles listed, each by its ARN, never a whole account (wis2node/settings.py).
        if settings.uploader_principals:
            self.uploader_role = aws.iam.Role(
                f"{name}-uploader-role",
                description=f"Assumed by {settings.centre_id}'s systems to upload",
                assume_role_policy=json.dumps(trust_policy({"AWS": settings.uploader_principals})),
                tags=tags,
                opts=child,
            )
            self.uploader_attachment = aws.iam.RolePolicyAttachment(
                f"{name}-uploader-role-policy",
                role=self.uploader_role.name,
                policy_arn=self.uploader_policy.arn,
                opts=child,
            )

        # What the node itself may do: read the bucket, consume the queue, park failures.
        self.node_policy = aws.iam.RolePolicy(
            f"{name}-node",
            role=args.instance_role_name,
            policy=pulumi.Output.all(self.bucket.arn, self.queue.arn, self.dead_letter_queue.arn).apply(
                lambda arns: json.dumps(node_ingest_policy(*arns))
            ),
            opts=child,
        )

        # Each dataset's GTS headers, where the agent reads them (no event: outside data/ and metadata/),
        # before its record: the record's event is what makes the agent read its datasets again.
        self.gts_objects = {
            record.key: aws.s3.BucketObjectv2(
                f"{name}-{record.path.stem}-gts",
                bucket=self.bucket.id,
                key=record.gts_key,
                content_base64=base64.b64encode(record.gts_mapping).decode(),
                content_type="text/csv",
                opts=child,
            )
            for record in args.metadata
            if record.gts_mapping is not None
        }
        # The repository's discovery metadata, and the node's own software.
        self.metadata_objects = [
            aws.s3.BucketObjectv2(
                f"{name}-{record.path.stem}",
                bucket=self.bucket.id,
                key=record.key,
                content_base64=base64.b64encode(record.content).decode(),
                content_type="application/geo+json",
                metadata={"metadata-id": record.id},
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[
                        self.notification,
                        *([self.gts_objects[record.key]] if record.key in self.gts_objects else []),
                    ],
                ),
            )
            for record in args.metadata
        ]
        self.package_object = aws.s3.BucketObjectv2(
            f"{name}-node-package",
            bucket=self.bucket.id,
            key=args.package.key,
            content_base64=base64.b64encode(args.package.archive).decode(),
            content_type="application/zip",
            opts=child,
        )

        self.upload_example = self.bucket.id.apply(
            lambda bucket: (
                f"aws s3 cp A_ISMD01LFPW.bufr4 s3://{bucket}/data/core/weather/"
                "surface-based-observations/synop/A_ISMD01LFPW.bufr4"
            )
        )
        self.register_outputs(
            {"bucket": self.bucket.id, "queue_url": self.queue.url, "uploader_policy_arn": self.uploader_policy.arn}
        )
