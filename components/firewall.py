"""Firewall: the node's security groups, open only on the WIS2 ports to the allowed sources."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from wis2node.settings import BASE_GROUP, CATALOGUE_GROUP, HTTPS_PORT, MQTTS_PORT, PARTNERS_GROUP, NodeSettings

# What the host itself must reach: packages (Ubuntu's archive is served over HTTP, signed with
# apt's keys), AWS APIs and Let's Encrypt over HTTPS. Amazon's DNS resolver and Time Sync service
# (169.254.169.123) are link-local and never filtered by security groups, so they need no rule.
EGRESS = (
    ("https", 443, "HTTPS: AWS APIs, package mirrors, certificate authority"),
    ("http", 80, "HTTP: Ubuntu package archive (signed packages)"),
)


@dataclass(frozen=True)
class FirewallArgs:
    settings: NodeSettings
    vpc_id: str
    # Route53 health checkers (AWS-managed prefix list): let in on the two WIS2 ports only.
    health_checkers_prefix_list_id: str


# What each of the node's security groups lets in (see wis2node.settings for the quota they keep),
# in the characters EC2 accepts in a group's description (no apostrophe).
GROUP_PURPOSES = {
    BASE_GROUP: "Route53 health checkers on MQTTS 8883 and HTTPS 443; egress of the node",
    CATALOGUE_GROUP: "WIS2 Global Brokers on MQTTS 8883 and Global Caches on HTTPS 443",
    PARTNERS_GROUP: "partners of the centre and ports opened to the internet, on MQTTS 8883 and HTTPS 443",
}


class Firewall(pulumi.ComponentResource):
    """The node's security groups, each within AWS's default rule quota: one ingress rule per allowed
    (source, port), the health checkers in a group of their own, and minimal egress."""

    def __init__(self, name: str, args: FirewallArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("wis2-node:index:Firewall", name, None, opts)
        settings = args.settings
        child = pulumi.ResourceOptions(parent=self)
        # The stack's explicit choice, on each rule, so the policy pack can tell it from a typo.
        ingress_tags = {
            **settings.resource_tags,
            "wis2-node:open-to-internet": ",".join(map(str, settings.open_to_internet)) or "none",
        }

        def group(resource_name: str, purpose: str) -> aws.ec2.SecurityGroup:
            return aws.ec2.SecurityGroup(
                resource_name,
                description=f"WIS2 Node {settings.centre_id}: {GROUP_PURPOSES[purpose]}",
                vpc_id=args.vpc_id,
                revoke_rules_on_delete=True,
                tags={
                    **settings.resource_tags,
                    "Name": f"{settings.stack}-wis2-node-{purpose}",
                    "wis2-node:security-group": purpose,
                },
                opts=child,
            )

        self.security_group = group(f"{name}-sg", BASE_GROUP)
        self.health_check_rules = [
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-in-{label}-route53-health-checkers",
                security_group_id=self.security_group.id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                prefix_list_id=args.health_checkers_prefix_list_id,
                description="Route53 health checkers (uptime from outside)",
                tags=ingress_tags,
                opts=child,
            )
            for label, port in (("https", HTTPS_PORT), ("mqtts", MQTTS_PORT))
        ]
        self.egress_rules = [
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-out-{label}",
                security_group_id=self.security_group.id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                cidr_ipv4="0.0.0.0/0",
                description=description,
                tags=settings.resource_tags,
                opts=child,
            )
            for label, port, description in EGRESS
        ]

        self.address_groups: dict[str, aws.ec2.SecurityGroup] = {}
        self.ingress_rules: list[aws.vpc.SecurityGroupIngressRule] = []
        for purpose, rules in settings.security_groups().items():
            address_group = self.address_groups[purpose] = group(f"{name}-{purpose}-sg", purpose)
            self.ingress_rules += [
                aws.vpc.SecurityGroupIngressRule(
                    f"{name}-in-{rule.name}",
                    security_group_id=address_group.id,
                    ip_protocol="tcp",
                    from_port=rule.port,
                    to_port=rule.port,
                    cidr_ipv4=rule.cidr if rule.ip_version == 4 else None,
                    cidr_ipv6=rule.cidr if rule.ip_version == 6 else None,
                    description=rule.description,
                    tags=ingress_tags,
                    opts=child,
                )
                for rule in rules
            ]
        # Every group the instance wears (AWS allows it GROUPS_PER_INTERFACE by default).
        self.security_group_ids = [self.security_group.id, *(g.id for g in self.address_groups.values())]
        self.register_outputs({"security_group_ids": self.security_group_ids})
