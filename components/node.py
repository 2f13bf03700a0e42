"""Wis2Node: the whole cloud side of a WIS2 Node, composed from its parts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from components.address import Address, AddressArgs
from components.certificates import Certificates, CertificatesArgs
from components.dns import Dns, DnsArgs
from components.firewall import Firewall, FirewallArgs
from components.host import Host, HostArgs
from components.monitoring import Monitoring, MonitoringArgs
from components.publishing import Publishing, PublishingArgs
from components.settings import Platform
from wis2node.metadata import MetadataRecord
from wis2node.payload import node_package
from wis2node.settings import NodeSettings


@dataclass(frozen=True)
class Wis2NodeArgs:
    settings: NodeSettings
    platform: Platform
    metadata: Sequence[MetadataRecord] = ()


class Wis2Node(pulumi.ComponentResource):
    """Firewall, certificates, host, ingest, address and DNS name of one centre's node."""

    def __init__(self, name: str, args: Wis2NodeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("wis2-node:index:Wis2Node", name, None, opts)
        settings, platform = args.settings, args.platform
        child = pulumi.ResourceOptions(parent=self)
        package = node_package()

        self.firewall = Firewall(
            "firewall",
            FirewallArgs(
                settings=settings,
                vpc_id=platform.vpc_id,
                health_checkers_prefix_list_id=platform.health_checkers_prefix_list_id,
            ),
            child,
        )
        self.certificates = Certificates("tls", CertificatesArgs(settings=settings), child)
        self.host = Host(
            "host",
            HostArgs(
                settings=settings,
                platform=platform,
                security_group_ids=self.firewall.security_group_ids,
                package_sha256=package.sha256,
                boot_after=[p for p in (self.certificates.key_parameter, self.certificates.certificate_parameter) if p],
            ),
            child,
        )
        self.publishing = Publishing(
            "ingest",
            PublishingArgs(
                settings=settings,
                platform=platform,
                instance_role_name=self.host.role.name,
                metadata=args.metadata,
                package=package,
            ),
            child,
        )
        self.address = Address("address", AddressArgs(settings=settings, instance_id=self.host.instance.id), child)
        self.monitoring = Monitoring(
            "monitoring",
            MonitoringArgs(
                settings=settings, instance_id=self.host.instance.id, instance_role_name=self.host.role.name
            ),
            child,
        )
        self.dns = Dns(
            "dns", DnsArgs(settings=settings, zone_id=platform.zone_id, public_ip=self.address.public_ip), child
        )

        self.fqdn = settings.fqdn
        self.public_ip = self.address.public_ip
        self.instance_id = self.host.instance.id
        self.register_outputs({"fqdn": self.fqdn, "public_ip": self.public_ip, "instance_id": self.instance_id})
