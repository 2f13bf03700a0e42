"""The only reader of pulumi.Config: a stack's configuration in, validated settings out.

Also the cloud look-ups that validate a stack (hosted zone, subnet, image for the instance's
architecture), so that every bad input is refused before any resource is declared.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pulumi
import pulumi_aws as aws

from wis2node.metadata import MetadataRecord, load_records
from wis2node.settings import NodeSettings, SettingsError, key

# Canonical publishes the current Ubuntu 24.04 LTS image of each architecture here.
UBUNTU_IMAGE_PARAMETER = "/aws/service/canonical/ubuntu/server/24.04/stable/current/{arch}/hvm/ebs-gp3/ami-id"
# EC2's architecture names -> Ubuntu's; an instance type with none of these has no Ubuntu image.
UBUNTU_ARCHITECTURES = {"arm64": "arm64", "x86_64": "amd64"}


@dataclass(frozen=True)
class Platform:
    """Facts about the account the node is deployed into, looked up once at preview."""

    account_id: str
    partition: str  # aws, aws-cn, aws-us-gov: ARNs differ
    zone_id: str
    vpc_id: str
    subnet_id: str
    architecture: str  # Ubuntu's name: arm64 | amd64
    image_id: str
    health_checkers_prefix_list_id: str  # AWS-managed list of Route53 health checkers' addresses


def load_settings() -> NodeSettings:
    """Read every project key from the stack's config and validate them together."""
    raw: dict[str, Any] = {}
    for config_key, structured in NodeSettings.config_keys().items():
        namespace, name = config_key.split(":", 1)
        text = pulumi.Config(namespace).get(name)
        if text is None:
            continue
        try:
            raw[config_key] = json.loads(text) if structured else text
        except json.JSONDecodeError:
            raise pulumi.RunError(f"{config_key} = {text!r}: expected a YAML list or map") from None
    try:
        return NodeSettings.from_config(pulumi.get_stack(), raw)
    except SettingsError as err:
        raise pulumi.RunError(str(err)) from None


def load_metadata(settings: NodeSettings) -> list[MetadataRecord]:
    """The stack's discovery metadata records, validated with pywcmp and against the firewall; refuse the
    stack otherwise."""
    warnings: list[str] = []
    try:
        records = load_records(settings, warnings=warnings)
    except SettingsError as err:
        raise pulumi.RunError(str(err)) from None
    for warning in warnings:
        pulumi.log.warn(warning)
    problems = settings.open_data_problems(records)
    if problems:
        raise pulumi.RunError("\n".join(problems))
    return records


def look_up_platform(settings: NodeSettings) -> Platform:
    """Find the hosted zone, subnet and Ubuntu image; refuse the stack if one cannot be had."""
    zone = _look_up(
        "hostedZone",
        settings.hosted_zone,
        "an existing public Route53 hosted zone",
        lambda: aws.route53.get_zone(name=settings.hosted_zone, private_zone=False),
    )
    if settings.subnet_id:
        subnet = _look_up(
            "subnetId", settings.subnet_id, "an existing subnet", lambda: aws.ec2.get_subnet(id=settings.subnet_id)
        )
        if subnet.availability_zone != settings.availability_zone:
            raise pulumi.RunError(
                f"{key('subnetId')} = {settings.subnet_id!r}: expected a subnet in "
                f"{settings.availability_zone}, but it is in {subnet.availability_zone}"
            )
    else:
        subnet = _look_up(
            "availabilityZone",
            settings.availability_zone,
            "a zone where the default VPC has a default subnet (or set subnetId)",
            lambda: aws.ec2.get_subnet(availability_zone=settings.availability_zone, default_for_az=True),
        )
    instance_type = _look_up(
        "instanceType",
        settings.instance_type,
        f"an EC2 instance type offered in {settings.region}",
        lambda: aws.ec2.get_instance_type(instance_type=settings.instance_type),
    )
    architecture = _ubuntu_architecture(settings.instance_type, instance_type.supported_architectures)
    image_id = settings.image_id or aws.ssm.get_parameter(name=UBUNTU_IMAGE_PARAMETER.format(arch=architecture)).value
    checkers = _look_up(
        "availabilityZone",
        settings.region,
        "a region with Route53 health checkers' prefix list",
        lambda: aws.ec2.get_managed_prefix_list(name=settings.health_checkers_prefix_list),
    )
    identity = aws.get_caller_identity()
    return Platform(
        account_id=identity.account_id,
        partition=aws.get_partition().partition,
        zone_id=zone.zone_id,
        vpc_id=subnet.vpc_id,
        subnet_id=subnet.id,
        architecture=architecture,
        image_id=image_id,
        health_checkers_prefix_list_id=checkers.id,
    )


def _ubuntu_architecture(instance_type: str, supported: Sequence[str] | None) -> str:
    for ec2_name, ubuntu_name in UBUNTU_ARCHITECTURES.items():
        if ec2_name in (supported or []):
            return ubuntu_name
    raise pulumi.RunError(
        f"{key('instanceType')} = {instance_type!r}: expected an instance type with an Ubuntu 24.04 "
        f"image (arm64 or x86_64), but it supports only {', '.join(supported or []) or 'nothing'}; "
        "t4g.small (arm64) or t3.small (x86_64) are good choices"
    )


T = TypeVar("T")


def _look_up(name: str, value: str, expected: str, invoke: Callable[[], T]) -> T:
    try:
        return invoke()
    except Exception as err:  # an invoke fails with the provider's own error type
        raise pulumi.RunError(f"{key(name)} = {value!r}: expected {expected} ({err})") from None
