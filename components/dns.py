"""DNS: the node's name under the centre's domain, and who may certify it."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from wis2node.settings import NodeSettings


@dataclass(frozen=True)
class DnsArgs:
    settings: NodeSettings
    zone_id: str
    public_ip: pulumi.Input[str]


class Dns(pulumi.ComponentResource):
    """An A record for the FQDN and a CAA record naming the only CA that may issue for it."""

    def __init__(self, name: str, args: DnsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("wis2-node:index:Dns", name, None, opts)
        settings = args.settings
        child = pulumi.ResourceOptions(parent=self)
        self.a_record = aws.route53.Record(
            f"{name}-a",
            zone_id=args.zone_id,
            name=settings.fqdn,
            type="A",
            ttl=300,
            records=[args.public_ip],
            opts=child,
        )
        # RFC 8659: "issue" names the CA allowed to issue for this name; "issuewild" ";" forbids
        # wildcard certificates covering it. A CA that is not named must refuse to issue.
        self.caa_record = aws.route53.Record(
            f"{name}-caa",
            zone_id=args.zone_id,
            name=settings.fqdn,
            type="CAA",
            ttl=3600,
            records=[f'0 issue "{settings.caa_issuer}"', '0 issuewild ";"'],
            opts=child,
        )
        self.register_outputs({"fqdn": self.a_record.fqdn})
