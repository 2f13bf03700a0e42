"""Address: the node's Elastic IP, which outlives any one instance."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from wis2node.settings import NodeSettings


@dataclass(frozen=True)
class AddressArgs:
    settings: NodeSettings
    instance_id: pulumi.Input[str]


class Address(pulumi.ComponentResource):
    """An Elastic IP in the VPC, associated with the node's instance."""

    def __init__(self, name: str, args: AddressArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("wis2-node:index:Address", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Protected: the address is what WMO and the Global Services know the node by.
        self.eip = aws.ec2.Eip(
            f"{name}-eip",
            domain="vpc",
            tags={**args.settings.resource_tags, "Name": args.settings.fqdn},
            opts=pulumi.ResourceOptions(parent=self, protect=args.settings.is_production),
        )
        self.association = aws.ec2.EipAssociation(
            f"{name}-association",
            allocation_id=self.eip.allocation_id,
            instance_id=args.instance_id,
            opts=child,
        )
        self.public_ip = self.eip.public_ip
        self.register_outputs({"public_ip": self.public_ip})
