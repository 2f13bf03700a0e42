"""The node's settings: one validated, typed object built from a stack's configuration.

This module is pure (no Pulumi): the Pulumi program, the offline checker, the local node and the
tests all validate a stack through `NodeSettings.from_config`, so a stack accepted by one is
accepted by all.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from wis2node.errors import SettingsError
from wis2node.node import catalogue, tls

if TYPE_CHECKING:
    from wis2node.metadata import MetadataRecord

PROJECT = "wis2-node"
HTTPS_PORT: Final = 443
MQTTS_PORT: Final = 8883
WIS2_PORTS = (HTTPS_PORT, MQTTS_PORT)
Port = Literal[443, 8883]


def _each_port_once(value: list[Port]) -> list[Port]:
    if len(set(value)) != len(value):
        raise ValueError("a port is listed twice; expected each of 443 and 8883 at most once")
    return sorted(value)


# A list of WIS2 ports, each at most once, in order.
Ports = Annotated[list[Port], AfterValidator(_each_port_once)]

# The certificate authority each TLS mode uses, as written in the CAA record of the node's name.
# ";" is CAA's "no CA may issue" (RFC 8659 §4.2): a self-signed node needs no public CA.
LETSENCRYPT_CAA = "letsencrypt.org"
NO_CA = ";"

_CENTRE_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)+$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d+$")
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
_IMAGE_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")
_SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_SNAPSHOT_ID = re.compile(r"^snap-[0-9a-f]{8,17}$")
# An uploader is one role, named by its ARN (IAM role names: letters, digits and +=,.@_- ; paths).
_ROLE_ARN = re.compile(r"^arn:aws(-cn|-us-gov)?:iam::\d{12}:role/([\w+=,.@-]+/)*[\w+=,.@-]{1,64}$")
_ACCOUNT = re.compile(r"^(\d{12}|arn:aws[a-z-]*:iam::(\d{12}):root)$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-zA-Z]{2,}$")
# Characters EC2 accepts in a security group rule description.
_RULE_DESCRIPTION = re.compile(r"^[a-zA-Z0-9. _\-:/()#,@\[\]+=&;{}!$*]{1,200}$")


def standard_tags(centre_id: str, environment: str, stack: str) -> dict[str, str]:
    """The tags on every resource: who owns it and which stack manages it (a stack's own tags come on top)."""
    return {
        "wis2-node:centre-id": centre_id,
        "wis2-node:environment": environment,
        "wis2-node:stack": stack,
        "managed-by": "pulumi",
    }


# Keys a stack's own tags may not use.
_STANDARD_TAGS = frozenset(standard_tags("", "", ""))
# The widest network a partner may be: anything wider is most of the internet, and a few of them
# (0.0.0.0/1 + 128.0.0.0/1, 2000::/3) would open a port to everyone without openToInternet.
PARTNER_MIN_PREFIX = {4: 8, 6: 32}

# AWS's default quotas (Amazon VPC quotas, "Security groups"): 60 inbound rules per security
# group, counted separately for IPv4 and IPv6, and 5 security groups per network interface. A rule
# that references a prefix list counts as the list's weight: 25 for the Route53 health checkers'
# com.amazonaws.<region>.route53-healthchecks (Amazon VPC, "AWS-managed prefix lists").
INBOUND_RULES_PER_GROUP = 60
GROUPS_PER_INTERFACE = 5
HEALTH_CHECKERS_WEIGHT = 25
# The node's security groups: the base group (Route53 health checkers on both WIS2 ports, and the
# egress rules), the Global Services catalogue, the stack's partners and openToInternet ports.
BASE_GROUP, CATALOGUE_GROUP, PARTNERS_GROUP = "node", "global-services", "partners"


# The retentions CloudWatch Logs accepts (PutRetentionPolicy, retentionInDays), in days.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)


def key(name: str) -> str:
    """The full config key of a project setting, as written in a stack file."""
    return name if ":" in name or name.startswith("<") else f"{PROJECT}:{name}"


# The ingest queue, as the publishing component declares it and the local stand-in mirrors it:
# an event the agent has received comes back after EVENT_VISIBILITY_SECONDS unless deleted, and
# goes to the dead-letter queue once received EVENT_MAX_RECEIVES times.
EVENT_VISIBILITY_SECONDS = 60
EVENT_MAX_RECEIVES = 5


class Partner(BaseModel):
    """A local partner allowed in on one or both WIS2 ports."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cidr: str
    description: str
    ports: Ports = Field(min_length=1)

    @field_validator("cidr")
    @classmethod
    def _network(cls, value: str) -> str:
        try:
            network = ipaddress.ip_network(value, strict=True)
        except ValueError as err:
            if "host bits set" in str(err):
                fixed = ipaddress.ip_network(value, strict=False)
                raise ValueError(f"host bits are set; expected the network address, e.g. {fixed}") from None
            raise ValueError("expected an IPv4 or IPv6 network in CIDR form, e.g. 192.0.2.0/24") from None
        if network.prefixlen < PARTNER_MIN_PREFIX[network.version]:
            raise ValueError(
                f"expected a network of /{PARTNER_MIN_PREFIX[network.version]} or longer for IPv{network.version}: "
                f"a partner cannot be the whole internet or a large part of it; to open a port to everyone, "
                f"list it in {key('openToInternet')} instead"
            )
        if not network.is_global and not network.is_private:
            raise ValueError("expected a routable network, not a reserved or loopback range")
        return str(network)

    @field_validator("description")
    @classmethod
    def _description(cls, value: str) -> str:
        if not _RULE_DESCRIPTION.match(value):
            raise ValueError("expected 1 to 200 characters of letters, digits, spaces and ._-:/()#,@[]+=&;{}!$*")
        return value

    @property
    def ip_version(self) -> int:
        return ipaddress.ip_network(self.cidr).version


class IngressRule(BaseModel):
    """One allowed (source, port) pair on the node's firewall."""

    model_config = ConfigDict(frozen=True)

    cidr: str
    port: Port
    description: str

    @property
    def ip_version(self) -> int:
        return ipaddress.ip_network(self.cidr).version

    @property
    def name(self) -> str:
        """A stable, readable resource name: the same rule keeps the same name across previews."""
        source = self.cidr.replace(".", "-").replace(":", "-").replace("/", "-")
        return f"{'mqtts' if self.port == MQTTS_PORT else 'https'}-{source}"


class NodeSettings(BaseModel):
    """Everything a stack says about its node, validated; field aliases are the config keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    stack: str
    centre_id: str = Field(alias="wis2-node:centreId")
    environment: Literal["production", "test"] = Field(alias="wis2-node:environment")
    fqdn: str = Field(alias="wis2-node:fqdn")
    hosted_zone: str = Field(alias="wis2-node:hostedZone")
    region: str = Field(alias="aws:region")
    availability_zone: str = Field(alias="wis2-node:availabilityZone")
    subnet_id: str | None = Field(default=None, alias="wis2-node:subnetId")
    instance_type: str = Field(default="t4g.small", alias="wis2-node:instanceType")
    image_id: str | None = Field(default=None, alias="wis2-node:imageId")
    root_volume_gb: int = Field(default=16, ge=8, le=1024, alias="wis2-node:rootVolumeGb")
    data_volume_gb: int = Field(default=20, ge=1, le=16384, alias="wis2-node:dataVolumeGb")
    global_services: bool = Field(default=True, alias="wis2-node:globalServices")
    exclude_operators: list[str] = Field(default_factory=list, alias="wis2-node:excludeOperators")
    partners: list[Partner] = Field(default_factory=list, alias="wis2-node:partners")
    open_to_internet: Ports = Field(default_factory=list, alias="wis2-node:openToInternet")
    alert_emails: list[str] = Field(default_factory=list, alias="wis2-node:alertEmails")
    tags: dict[str, str] = Field(default_factory=dict, alias="wis2-node:tags")
    tls_mode: Literal["letsencrypt", "provided", "self-signed"] = Field(
        default="letsencrypt", alias="wis2-node:tlsMode"
    )
    certificate_authority: str | None = Field(default=None, alias="wis2-node:certificateAuthority")
    certificate: str | None = Field(default=None, alias="wis2-node:certificate")
    retention_days: int = Field(default=30, ge=1, le=3650, alias="wis2-node:retentionDays")
    max_file_mb: int = Field(default=100, ge=1, le=5120, alias="wis2-node:maxFileMb")
    uploader_principals: list[str] = Field(default_factory=list, alias="wis2-node:uploaderPrincipals")
    cpu_alarm_percent: int = Field(default=80, ge=1, le=100, alias="wis2-node:cpuAlarmPercent")
    memory_alarm_percent: int = Field(default=85, ge=1, le=100, alias="wis2-node:memoryAlarmPercent")
    disk_alarm_percent: int = Field(default=85, ge=1, le=100, alias="wis2-node:diskAlarmPercent")
    certificate_alarm_days: int = Field(default=21, ge=1, le=90, alias="wis2-node:certificateAlarmDays")
    reboot_time: str = Field(default="03:30", alias="wis2-node:rebootTime")
    snapshot_retention_days: int = Field(default=7, ge=1, le=365, alias="wis2-node:snapshotRetentionDays")
    data_volume_snapshot_id: str | None = Field(default=None, alias="wis2-node:dataVolumeSnapshotId")
    log_retention_days: int = Field(default=30, alias="wis2-node:logRetentionDays")
    centre_name: str = Field(default="", max_length=200, alias="wis2-node:centreName")
    contact_email: str = Field(default="", alias="wis2-node:contactEmail")

    # -- single fields -------------------------------------------------------------------------

    @field_validator("centre_id")
    @classmethod
    def _centre_id(cls, value: str) -> str:
        if not _CENTRE_ID.match(value):
            raise ValueError(
                "expected the WIS2 form tld-name in lowercase letters, digits and hyphens, e.g. fr-meteofrance"
            )
        tld = value.split("-", 1)[0]
        if tld.upper() not in catalogue.top_level_domains():
            raise ValueError(f"'{tld}' is not a top-level domain in IANA's list")
        return value

    @field_validator("fqdn", "hosted_zone")
    @classmethod
    def _domain_name(cls, value: str) -> str:
        name = value.lower().rstrip(".")
        labels = name.split(".")
        if len(name) > 253 or len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
            raise ValueError("expected a DNS name such as wis2.example.org (letters, digits, hyphens)")
        return name

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not _REGION.match(value):
            raise ValueError("expected an AWS region such as eu-west-1")
        return value

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, value: str) -> str:
        if not _INSTANCE_TYPE.match(value):
            raise ValueError("expected an EC2 instance type such as t4g.small")
        if value.startswith("mac"):  # known offline; other types are checked against AWS at preview
            raise ValueError(
                "Mac instances run only macOS images; expected a type with an Ubuntu "
                "image, e.g. t4g.small (arm64) or t3.small (x86_64)"
            )
        return value

    @field_validator("image_id")
    @classmethod
    def _image_id(cls, value: str | None) -> str | None:
        if value is not None and not _IMAGE_ID.match(value):
            raise ValueError("expected an AMI id such as ami-0123456789abcdef0")
        return value

    @field_validator("subnet_id")
    @classmethod
    def _subnet_id(cls, value: str | None) -> str | None:
        if value is not None and not _SUBNET_ID.match(value):
            raise ValueError("expected a subnet id such as subnet-0123456789abcdef0")
        return value

    @field_validator("exclude_operators")
    @classmethod
    def _operators(cls, value: list[str]) -> list[str]:
        known = catalogue.operators()
        for operator in value:
            if operator not in known:
                raise ValueError(
                    f"'{operator}' is not an operator in the Global Services catalogue; "
                    f"expected one of {', '.join(sorted(known))}"
                )
        if len(set(value)) != len(value):
            raise ValueError("an operator is listed twice")
        return value

    @field_validator("alert_emails")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        for address in value:
            if not _EMAIL.match(address):
                raise ValueError(f"'{address}' is not an e-mail address; expected name@example.org")
        if len(set(value)) != len(value):
            raise ValueError("an address is listed twice")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        for tag, tag_value in value.items():
            if tag.lower().startswith("aws:") or tag in _STANDARD_TAGS:
                raise ValueError(f"tag '{tag}' is reserved; expected a key of your own")
            if not 1 <= len(tag) <= 128 or len(tag_value) > 256:
                raise ValueError(f"tag '{tag}' is too long; expected keys up to 128, values up to 256 characters")
        return value

    @field_validator("certificate")
    @classmethod
    def _certificate(cls, value: str | None) -> str | None:
        if value is not None:
            tls.read_chain(value)  # raises ValueError with what is wrong
        return value

    @field_validator("reboot_time")
    @classmethod
    def _reboot_time(cls, value: str) -> str:
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError("expected a time of day HH:MM (UTC), e.g. 03:30")
        return value

    @field_validator("uploader_principals")
    @classmethod
    def _principals(cls, value: list[str]) -> list[str]:
        for principal in value:
            account = _ACCOUNT.match(principal)
            if account:
                raise ValueError(
                    f"'{principal}' names the whole account {account.group(2) or principal}: every user and role "
                    "its administrators allow could then upload; expected the ARN of the one role your systems "
                    "upload with, e.g. arn:aws:iam::123456789012:role/message-switch"
                )
            if not _ROLE_ARN.match(principal):
                raise ValueError(
                    f"'{principal}' is not the ARN of an IAM role; expected e.g. "
                    "arn:aws:iam::123456789012:role/message-switch (users have long-lived keys: "
                    "give the uploading system a role)"
                )
        if len(set(value)) != len(value):
            raise ValueError("a role is listed twice")
        return value

    @field_validator("data_volume_snapshot_id")
    @classmethod
    def _snapshot_id(cls, value: str | None) -> str | None:
        if value is not None and not _SNAPSHOT_ID.match(value):
            raise ValueError(
                'expected an EBS snapshot id such as snap-0123456789abcdef0 (README, "Backups and restore")'
            )
        return value

    @field_validator("log_retention_days")
    @classmethod
    def _log_retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise ValueError(
                f"{value} is not a retention CloudWatch Logs offers; expected one of "
                f"{', '.join(map(str, LOG_RETENTION_DAYS))}"
            )
        return value

    @field_validator("contact_email")
    @classmethod
    def _contact_email(cls, value: str) -> str:
        if value and not _EMAIL.match(value):
            raise ValueError(f"'{value}' is not an e-mail address; expected name@example.org")
        return value

    @field_validator("centre_name")
    @classmethod
    def _centre_name(cls, value: str) -> str:
        if value != value.strip() or not value.isprintable():
            raise ValueError("expected the centre's name on one line, e.g. Example Meteorological Service")
        return value

    # -- relations between fields --------------------------------------------------------------

    @model_validator(mode="after")
    def _consistent(self) -> NodeSettings:
        problems: list[tuple[str, Any, str]] = []
        if self.fqdn == self.hosted_zone or not self.fqdn.endswith("." + self.hosted_zone):
            problems.append(
                (
                    "fqdn",
                    self.fqdn,
                    f"a name inside the hosted zone {self.hosted_zone}, "
                    f"e.g. wis2node.{self.hosted_zone} (the zone apex itself is refused: its "
                    "CAA record would bind the whole domain)",
                )
            )
        if not (
            self.availability_zone.startswith(self.region)
            and re.fullmatch(r"[a-z]", self.availability_zone[len(self.region) :] or "")
        ):
            problems.append(
                ("availabilityZone", self.availability_zone, f"a zone of region {self.region}, e.g. {self.region}a")
            )
        is_test_id = self.centre_id.endswith("-test")
        if self.environment == "production" and is_test_id:
            problems.append(("centreId", self.centre_id, "a centre-id without the -test suffix on a production stack"))
        if self.environment == "test" and not is_test_id:
            problems.append(
                ("centreId", self.centre_id, f"a centre-id ending in -test on a test stack, e.g. {self.centre_id}-test")
            )
        if self.tls_mode == "self-signed" and self.environment == "production":
            problems.append(
                (
                    "tlsMode",
                    self.tls_mode,
                    "letsencrypt or provided: Global Services must be able to trust a production node's certificate",
                )
            )
        if self.tls_mode == "provided" and not self.certificate_authority:
            problems.append(
                (
                    "certificateAuthority",
                    None,
                    "the CAA domain of the CA that issues the certificate, e.g. digicert.com",
                )
            )
        if self.certificate and self.tls_mode != "provided":
            problems.append(
                (
                    "certificate",
                    "(a PEM certificate)",
                    "no certificate unless tlsMode is provided (the other modes make their own)",
                )
            )
        if self.certificate:
            uncovered = tls.uncovered_name(self.certificate, self.fqdn)
            if uncovered:
                problems.append(("certificate", uncovered, f"a certificate valid for {self.fqdn}"))
        if self.certificate_authority and self.tls_mode != "provided":
            problems.append(
                (
                    "certificateAuthority",
                    self.certificate_authority,
                    "no value unless tlsMode is provided (the CA is implied otherwise)",
                )
            )
        seen = {
            rule_key: f"the Global Services catalogue ({rule.description})"
            for rule_key, rule in self._catalogue_rules().items()
        }
        for index, partner in enumerate(self.partners):
            for port in partner.ports:
                if (partner.cidr, port) in seen:
                    problems.append(
                        (
                            f"partners[{index}]",
                            partner.cidr,
                            f"each network once per port, but port {port} is already "
                            f"allowed for it by {seen[(partner.cidr, port)]}",
                        )
                    )
                seen[(partner.cidr, port)] = f"partners entry '{partner.description}'"
        if len(self.stack) > 32:  # S3 bucket names: 63 characters, the account id takes 12 of them
            problems.append(("<stack name>", self.stack, "a stack name of at most 32 characters"))
        problems.extend(self._quota_problems())
        if not self.ingress_rules():
            problems.append(
                (
                    "partners",
                    [],
                    "at least one allowed source: with globalServices off and no partners "
                    "or openToInternet ports, nobody could reach the node",
                )
            )
        if problems:
            raise ValueError("\n".join(_explain(key(name), value, expected) for name, value, expected in problems))
        return self

    def open_data_problems(self, records: Sequence[MetadataRecord]) -> list[str]:
        """Records whose data anyone must be able to download, on a stack that filters HTTPS by address.

        WIS2 Guide part 1 §1.3.3.6: a node may filter its HTTPS port by source address only when it
        publishes core data alone; data under `recommended` (and core data with cache=false, a
        per-file choice the agent refuses on such a stack) must be downloadable by anyone.
        """
        if HTTPS_PORT in self.open_to_internet:
            return []
        problems = []
        for record in records:
            name = f"stacks/{self.stack}/metadata/{record.path.name}"
            try:
                document = json.loads(record.content)
            except ValueError:
                continue  # load_records refuses it, naming the file
            properties = document.get("properties") if isinstance(document, dict) else None
            policy = properties.get("wmo:dataPolicy") if isinstance(properties, dict) else None
            links = document.get("links") if isinstance(document, dict) else None
            topics = [
                str(link.get("channel"))
                for link in links or []
                if isinstance(link, dict) and "/data/recommended/" in str(link.get("channel", ""))
            ]
            if policy == "recommended" or topics:
                why = "wmo:dataPolicy is recommended" if policy == "recommended" else f"it publishes under {topics[0]}"
                problems.append(
                    _explain(
                        key("openToInternet"),
                        self.open_to_internet,
                        f"{HTTPS_PORT} among its ports, because {name} declares data under recommended ({why}): "
                        "the WIS2 Guide allows filtering HTTPS by address only on a node that publishes core data "
                        f"alone, and recommended data must be downloadable by anyone; add {HTTPS_PORT} to "
                        f"{key('openToInternet')}, or publish this dataset from another node",
                    )
                )
        return problems

    def _quota_problems(self) -> list[tuple[str, Any, str]]:
        """The security groups that AWS's default inbound rule quota would refuse, and what to change."""
        problems: list[tuple[str, Any, str]] = []
        counts = self.inbound_rule_counts()
        for version in (4, 6):
            needed = counts.get(CATALOGUE_GROUP, {}).get(version, 0)
            if needed > INBOUND_RULES_PER_GROUP:
                problems.append(
                    (
                        "excludeOperators",
                        self.exclude_operators,
                        f"at most {INBOUND_RULES_PER_GROUP} inbound IPv{version} rules in the Global "
                        f"Services' security group (AWS's default quota per security group), but the "
                        f"catalogue's addresses need {needed}: leave out the operators you do not use "
                        f"with {key('excludeOperators')}, or set {key('globalServices')} to false and "
                        f"allow the services you use as {key('partners')}",
                    )
                )
            needed = counts.get(PARTNERS_GROUP, {}).get(version, 0)
            if needed > INBOUND_RULES_PER_GROUP:
                networks = sum(partner.ip_version == version for partner in self.partners)
                problems.append(
                    (
                        "partners",
                        f"{networks} IPv{version} networks",
                        f"at most {INBOUND_RULES_PER_GROUP} inbound IPv{version} rules in the partners' "
                        f"security group (AWS's default quota per security group; each network counts "
                        f"once per port, and each port of {key('openToInternet')} once), but this stack "
                        f"needs {needed}: merge neighbouring networks into wider ones or list fewer "
                        f"ports in {key('partners')}, or list fewer ports in {key('openToInternet')}",
                    )
                )
        return problems

    # -- derived values ------------------------------------------------------------------------

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def caa_issuer(self) -> str:
        """The CA domain allowed to issue for the node's name, for its CAA record."""
        if self.tls_mode == "letsencrypt":
            return LETSENCRYPT_CAA
        if self.tls_mode == "provided":
            return self.certificate_authority or NO_CA
        return NO_CA

    @property
    def uses_private_key_parameter(self) -> bool:
        """Whether Pulumi makes the TLS key (self-signed, provided) and hands it over through SSM."""
        return self.tls_mode in ("self-signed", "provided")

    def ingest_bucket(self, account_id: str) -> str:
        """The ingest bucket's name: global in S3, hence the account; stable, so the VM can know it."""
        return f"{self.stack}-wis2-ingest-{account_id}"

    @property
    def ingest_queue(self) -> str:
        """The bucket's event queue (see EVENT_VISIBILITY_SECONDS and EVENT_MAX_RECEIVES)."""
        return f"{self.stack}-wis2-ingest"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.stack}-wis2-ingest-failed"

    def parameter_name(self, name: str) -> str:
        """The SSM Parameter Store name of one of the node's secrets."""
        return f"/{PROJECT}/{self.stack}/{name}"

    @property
    def health_checkers_prefix_list(self) -> str:
        """The name of the AWS-managed prefix list of the region's Route53 health checkers (IPv4)."""
        return f"com.amazonaws.{self.region}.route53-healthchecks"

    @property
    def resource_tags(self) -> dict[str, str]:
        """Tags on every resource: the standard ones, plus the stack's own."""
        return {**standard_tags(self.centre_id, self.environment, self.stack), **self.tags}

    def ingress_rules(self) -> list[IngressRule]:
        """Exactly the firewall's allowed (source, port) pairs, in a stable order."""
        return _in_order([rule for rules in self.security_groups().values() for rule in rules])

    def security_groups(self) -> dict[str, list[IngressRule]]:
        """The address rules of each security group that has some (the base group has prefix lists only)."""
        groups = {
            CATALOGUE_GROUP: _in_order(self._catalogue_rules().values()),
            PARTNERS_GROUP: _in_order(self._partner_rules().values()),
        }
        return {name: rules for name, rules in groups.items() if rules}

    def inbound_rule_counts(self) -> dict[str, dict[int, int]]:
        """What each security group counts against AWS's inbound rule quota, per IP version."""
        counts = {BASE_GROUP: {4: HEALTH_CHECKERS_WEIGHT * len(WIS2_PORTS), 6: 0}}
        for name, rules in self.security_groups().items():
            counts[name] = {version: sum(rule.ip_version == version for rule in rules) for version in (4, 6)}
        return counts

    def _partner_rules(self) -> dict[tuple[str, int], IngressRule]:
        """The stack's partners on their ports, and the ports it opens to the whole internet."""
        rules: dict[tuple[str, int], IngressRule] = {}
        for partner in self.partners:
            for port in partner.ports:
                rules[(partner.cidr, port)] = IngressRule(
                    cidr=partner.cidr, port=port, description=f"partner {partner.description}"
                )
        for port in self.open_to_internet:
            for cidr in ("0.0.0.0/0", "::/0"):
                rules[(cidr, port)] = IngressRule(
                    cidr=cidr, port=port, description="open to the internet (openToInternet)"
                )
        return rules

    def _catalogue_rules(self) -> dict[tuple[str, int], IngressRule]:
        """Global Brokers on the MQTT port, Global Caches on the HTTPS port, less excluded operators."""
        rules: dict[tuple[str, int], IngressRule] = {}
        if not self.global_services:
            return rules
        for service in catalogue.global_services():
            if service.operator in self.exclude_operators:
                continue
            port: Port = MQTTS_PORT if service.service == "global-broker" else HTTPS_PORT
            rule_key = (f"{service.ip}/32", port)
            label = f"WIS2 {service.service} {service.operator}"
            if rule_key in rules:  # one address may serve two operators on the same port
                label = f"{rules[rule_key].description}, {service.operator}"
            rules[rule_key] = IngressRule(cidr=rule_key[0], port=port, description=label)
        return rules

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def from_config(cls, stack: str, config: dict[str, Any]) -> NodeSettings:
        """Validate a stack's config (full keys, decoded values); raise SettingsError naming each bad key."""
        try:
            return cls.model_validate({"stack": stack, **config})
        except ValidationError as err:
            raise SettingsError(_describe(stack, err)) from None

    @classmethod
    def config_keys(cls) -> dict[str, bool]:
        """Every config key a stack may set, mapped to whether its value is structured (list or map)."""
        return {
            field.alias: get_origin(field.annotation) in (list, dict)
            for field in cls.model_fields.values()
            if field.alias
        }


def _in_order(rules: Iterable[IngressRule]) -> list[IngressRule]:
    return sorted(rules, key=lambda r: (r.port, r.ip_version, ipaddress.ip_network(r.cidr)))


def _explain(config_key: str, value: Any, expected: str) -> str:
    return f"{config_key} = {value!r}: expected {expected}"


def _describe(stack: str, err: ValidationError) -> str:
    """Turn pydantic's errors into lines that name the config key, the bad value and the fix."""
    lines = []
    for error in err.errors(include_url=False):
        loc = list(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if not loc:  # relations between fields: each line is already fully explained
            lines.extend(message.splitlines())
            continue
        config_key = str(loc[0])
        for part in loc[1:]:
            config_key += f"[{part}]" if isinstance(part, int) else f".{part}"
        if error["type"] == "missing":
            lines.append(f"{config_key} is required but not set in the stack")
        elif error["type"] == "extra_forbidden":
            lines.append(f"{config_key} is not a setting of this project; check its spelling")
        elif error["type"] == "literal_error":
            lines.append(f"{config_key} = {error.get('input')!r}: expected {error['ctx']['expected']}")
        else:
            lines.append(f"{config_key} = {error.get('input')!r}: {message}")
    return f"stack {stack}: invalid configuration\n  " + "\n  ".join(lines)
