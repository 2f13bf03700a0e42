"""Wis2Node: the whole cloud side of a WIS2 Node, composed from its parts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from components.address import Address, AddressArgs
from components.certificates import Certificates, CertificatesArgs
from components.dns import Dns, DnsArgs
from components.firewall import Firewall, FirewallArgs
from components.host import Host, HostArgs
from components.monitoring import Monitoring, MonitoringArgs
from components.publishing import Publishing, PublishingArgs
from components.settings import Platform
from wis2node.endpoints import endpoints, wmo_registration
from wis2node.metadata import MetadataRecord
from wis2node.payload import node_package
from wis2node.settings import NodeSettings


@dataclass(frozen=True)
class Wis2NodeArgs:
    settings: NodeSettings
    platform: Platform
    metadata: Sequence[MetadataRecord] = ()


class Wis2Node(pulumi.ComponentResource):
    """Firewall, certificates, host, ingest, address and DNS name of one centre's node.

    `exports` is what the stack exports (`pulumi stack output`), and what the node registers as its
    outputs: __main__.py exports it as it is.
    """

    def __init__(self, name: str, args: Wis2NodeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("wis2-node:index:Wis2Node", name, None, opts)
        settings, platform = args.settings, args.platform
        child = pulumi.ResourceOptions(parent=self)
        package = node_package()
        # The parts keep the names they were first deployed with ("firewall", not f"{name}-firewall"):
        # a part's name is in the URN of every resource under it, and a new URN makes `pulumi up`
        # replace the resource (tests/components/test_urns.py).

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
                settings=settings,
                platform=platform,
                instance_id=self.host.instance.id,
                instance_role_name=self.host.role.name,
            ),
            child,
        )
        self.dns = Dns(
            "dns", DnsArgs(settings=settings, zone_id=platform.zone_id, public_ip=self.address.public_ip), child
        )

        urls = endpoints(settings)
        public_ip, instance_id = self.address.public_ip, self.host.instance.id
        # A part a stack does not have (a signing request, an uploader role) is not exported.
        optional = {
            "certificate_signing_request": self.certificates.csr_pem,
            "uploader_role_arn": self.publishing.uploader_role.arn if self.publishing.uploader_role else None,
        }
        self.exports: dict[str, pulumi.Input[Any]] = {
            "fqdn": settings.fqdn,
            "public_ip": public_ip,
            "mqtts_url": urls["mqtts"],
            "https_url": urls["https"],
            "wss_url": urls["wss"],
            "instance_id": instance_id,
            "ssm_session_command": instance_id.apply(
                lambda instance: f"aws ssm start-session --region {settings.region} --target {instance}"
            ),
            "wmo_registration": public_ip.apply(lambda ip: {**wmo_registration(settings), "public_ip": ip}),
            "publisher_password_command": (
                f"aws ssm get-parameter --region {settings.region} --name "
                f"{settings.parameter_name('publisher-password')} --with-decryption "
                "--query Parameter.Value --output text"
            ),
            "ingest_bucket": self.publishing.bucket.id,
            "upload_example": self.publishing.upload_example,
            "uploader_policy_arn": self.publishing.uploader_policy.arn,
            **{name: value for name, value in optional.items() if value is not None},
        }
        self.register_outputs(self.exports)
