"""The node's files, rendered from templates: settings + deploy-time facts in, bytes out.

Pure and deterministic (no Pulumi, no clock, no randomness): the same inputs give the same bytes,
so a preview shows a user-data change only when something really changed.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from wis2node import journal
from wis2node.endpoints import PUBLISHER_USER, READ_ONLY_USER
from wis2node.media_types import DEFAULT_MEDIA_TYPE, METADATA_TYPE, nginx_types
from wis2node.settings import HTTPS_PORT, MQTTS_PORT, NodeSettings

TEMPLATES = Path(__file__).parent / "templates"
DATA_ROOT = "/srv/wis2"
LETSENCRYPT_PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
# EC2 refuses user data over 16 KB (before base64; the node's is gzipped, see pack_user_data).
USER_DATA_LIMIT = 16 * 1024

# TLS on 8883 and 443: Mozilla's "intermediate" profile (guideline 6.0), ECDSA and RSA suites for
# TLS 1.2 (TLS 1.3's are OpenSSL's defaults, the profile's three), and the key-exchange groups
# X25519, P-256 and P-384 (README: TLS policy).
TLS_POLICY = {
    "ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305",
    "groups": "X25519:prime256v1:secp384r1",
}
# The broker's bounds (mosquitto.conf) and the files its service may open (LimitNOFILE), which
# must hold every connection the listeners allow plus the broker's own files.
BROKER_LIMITS = {
    "max_packet_size": 16384,  # a WNM (8192 bytes at most) + topic + MQTT overhead, with room to spare
    "max_queued_messages": 2000,
    "max_queued_bytes": 2000 * 4096,
    "session_expiry": "1d",
    "max_connections": {"mqtts": 2000, "websockets": 2000, "local": 64},
    "max_files": 8192,
    # The broker refuses allocations past this (its websockets listener ignores max_packet_size:
    # a CONNECT there claiming more is dropped at once); systemd's bounds are above it.
    "memory_limit": 128 * 1024 * 1024,
    "memory_high": "384M",
    "memory_max": "512M",
}
# nginx: per-address limits and capacity; worker_rlimit_nofile within the service's LimitNOFILE.
WEB_LIMITS = {
    "worker_connections": 8192,
    "max_files": 16384,
    "requests_per_address": 100,
    "mqtt_per_address": 20,
}

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)


@dataclass(frozen=True)
class DeployFacts:
    """What only the deployment knows: ids of resources created alongside the instance."""

    data_volume_id: str
    # The ingest bucket (its name is stable) and the hash of the node package uploaded there.
    bucket: str = ""
    package_sha256: str = ""


@dataclass(frozen=True)
class Ports:
    """Where the node listens. The VM uses the WIS2 ports; a local node picks free ones."""

    mqtts: int = MQTTS_PORT
    https: int = HTTPS_PORT
    mqtt_local: int = 1883  # loopback only
    websockets: int = 8081  # loopback only, behind nginx's /mqtt


@dataclass(frozen=True)
class Layout:
    """Where the node's files and state live: "/" on the VM, or a local work directory.

    A local node is the VM's own tree rebased under its work directory, so the files it runs
    are the files the VM runs, but for paths, ports and the accounts the daemons run as.
    """

    prefix: str = ""
    ports: Ports = field(default_factory=Ports)
    public_host: str = ""  # "" listens on every address (the VM); a local node uses loopback
    broker_user: str = "mosquitto"
    web_user: str = "www-data"

    def path(self, vm_path: str) -> str:
        """Where a file the VM keeps at vm_path lives in this layout."""
        return self.prefix + vm_path

    @property
    def listen(self) -> dict[str, str]:
        """The public listeners' addresses, written as mosquitto and nginx expect them."""
        https = self.ports.https
        if not self.public_host:
            return {"mqtts": f"{self.ports.mqtts}", "https_v4": f"{https}", "https_v6": f"[::]:{https}"}
        return {
            "mqtts": f"{self.ports.mqtts} {self.public_host}",
            "https_v4": f"{self.public_host}:{https}",
            "https_v6": f"[::1]:{https}",
        }

    @property
    def paths(self) -> dict[str, str]:
        return {
            "etc": self.path("/etc"),
            "data": self.path(DATA_ROOT),
            "tls": self.path(DATA_ROOT + "/tls"),
            "sbin": self.path("/usr/local/sbin"),
            "run": self.path("/run/wis2"),
            "log": self.path("/var/log/wis2"),
            "mosquitto_pid": self.path("/run/mosquitto/mosquitto.pid"),
            "nginx_pid": self.path("/run/nginx.pid"),
            "nginx_state": self.path("/var/lib/nginx"),
            "letsencrypt_work": self.path("/var/lib/letsencrypt"),
            "node_software": self.path("/var/lib/wis2node"),
            "letsencrypt_logs": self.path("/var/log/letsencrypt"),
            "logs_state": self.path("/var/lib/wis2-logs"),  # the log shipper's cursor (its StateDirectory)
        }


VM = Layout()


@dataclass(frozen=True)
class NodeFile:
    """One file the VM gets, with its owner and mode."""

    path: str
    content: bytes
    mode: str = "0644"
    owner: str = "root:root"


# (template under templates/ = its path on the VM, mode, owner)
_FILES = (
    ("/etc/mosquitto/mosquitto.conf", "0644", "root:root"),
    ("/etc/mosquitto/acl", "0644", "root:root"),
    ("/etc/mosquitto/openssl.cnf", "0644", "root:root"),
    ("/etc/nginx/nginx.conf", "0644", "root:root"),
    ("/etc/systemd/system/mosquitto.service.d/wis2.conf", "0644", "root:root"),
    ("/etc/systemd/system/nginx.service.d/wis2.conf", "0644", "root:root"),
    ("/etc/wis2/node.json", "0644", "root:root"),
    ("/etc/systemd/system/wis2-certificate.service", "0644", "root:root"),
    ("/etc/systemd/system/wis2-certificate.timer", "0644", "root:root"),
    ("/usr/local/sbin/wis2-data-volume", "0755", "root:root"),
    ("/usr/local/sbin/wis2-setup", "0755", "root:root"),
    ("/usr/local/sbin/wis2-install-software", "0755", "root:root"),
    ("/etc/systemd/system/wis2-data-volume.service", "0644", "root:root"),
    ("/etc/systemd/system/wis2-setup.service", "0644", "root:root"),
    ("/etc/systemd/system/wis2-node-software.service", "0644", "root:root"),
    ("/etc/systemd/system/wis2-publisher-credential.service", "0644", "root:root"),
    ("/etc/systemd/system/wis2-cloudwatch-agent.service", "0644", "root:root"),
    ("/usr/local/sbin/wis2-install-certificate", "0755", "root:root"),
    ("/etc/systemd/system/wis2-agent.service", "0644", "root:root"),
    ("/etc/systemd/system/wis2-retention.service", "0644", "root:root"),
    ("/etc/systemd/system/wis2-retention.timer", "0644", "root:root"),
    ("/etc/systemd/system/wis2-reporter.service", "0644", "root:root"),
    ("/etc/systemd/system/wis2-reporter.timer", "0644", "root:root"),
    ("/etc/systemd/system/wis2-watcher.service", "0644", "root:root"),
    ("/etc/systemd/system/wis2-republish.service", "0644", "root:root"),
    ("/etc/systemd/system/wis2-republish.timer", "0644", "root:root"),
    ("/etc/systemd/system/wis2-gdc-check.service", "0644", "root:root"),
    ("/etc/systemd/system/wis2-gdc-check.timer", "0644", "root:root"),
    ("/etc/wis2/cloudwatch-agent.json", "0644", "root:root"),
    ("/etc/apt/apt.conf.d/52wis2-unattended-upgrades", "0644", "root:root"),
    # What changes in place (runtime configuration, publisher password) and the logs' shipping.
    ("/etc/systemd/system/wis2-config.service", "0644", "root:root"),
    ("/etc/systemd/system/wis2-config.timer", "0644", "root:root"),
    ("/etc/systemd/system/wis2-logs.service", "0644", "root:root"),
    ("/etc/systemd/system/wis2-logs.timer", "0644", "root:root"),
)

# Files the local node runs (the rest are the VM's boot and systemd plumbing).
LOCAL_FILES = (
    "/etc/mosquitto/mosquitto.conf",
    "/etc/mosquitto/acl",
    "/etc/mosquitto/openssl.cnf",
    "/etc/nginx/nginx.conf",
    "/etc/wis2/node.json",
    "/usr/local/sbin/wis2-install-certificate",
)
_PACKAGES = ("mosquitto", "nginx", "python3-boto3", "python3-venv", "certbot", "python3-certbot-dns-route53", "gnupg")
# Each step of the node is a unit of its own that systemd orders and retries (none stops the
# others); every boot starts them the same way. The units the node enables, in start order:
UNITS = (
    "wis2-data-volume.service",
    "wis2-setup.service",
    "mosquitto.service",
    "nginx.service",
    "wis2-node-software.service",
    "wis2-publisher-credential.service",
    "wis2-config.service",
    "wis2-agent.service",
    "wis2-watcher.service",
    "wis2-certificate.timer",
    "wis2-retention.timer",
    "wis2-reporter.timer",
    "wis2-config.timer",
    "wis2-logs.timer",
    "wis2-republish.timer",
    "wis2-gdc-check.timer",
    "wis2-cloudwatch-agent.service",
)
# The first boot: the packages started mosquitto and nginx on their defaults; restart them on the
# node's files (which pulls in the data volume and the set-up) and start the rest, without waiting.
_COMMANDS = (
    "systemctl daemon-reload",
    "systemctl enable " + " ".join(UNITS),
    "systemctl restart --no-block mosquitto.service nginx.service",
    "systemctl start --no-block " + " ".join(UNITS),
    "systemctl start --no-block wis2-certificate.service",
)
# Without Let's Encrypt, certbot's own timer has nothing to renew, unless the data volume still holds
# the renewal settings of an earlier letsencrypt node: it would then retry (and fail) every day.
_COMMANDS_WITHOUT_CERTBOT = ("systemctl disable --now --no-block certbot.timer",)
# Amazon's CloudWatch agent: the version the node installs and the fingerprint of the key Amazon
# signs its packages with (AWS documentation, "Verify the signature of the CloudWatch agent package").
CLOUDWATCH_AGENT = {"version": "1.300072.0b1766", "signer": "937616F3450B7D806CBD9725D58167303B789C72"}


PACKAGE_KEY = "node/wis2node.zip"
# Where the node's metrics go: its own reports, and the CloudWatch agent's host metrics.
METRIC_NAMESPACE = "WIS2Node"
HOST_METRIC_NAMESPACE = "WIS2Node/Host"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # holds wis2node/ and requirements-node.txt


@dataclass(frozen=True)
class NodePackage:
    """The node's own Python software (agent, certificate and credential tools), as one zip."""

    archive: bytes
    key: str = PACKAGE_KEY

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.archive).hexdigest()


def node_package(root: Path = PACKAGE_ROOT) -> NodePackage:
    """A deterministic zip (fixed times, sorted) of wis2node/ and its pinned requirements."""
    files = [root / "requirements-node.txt", root / "requirements-node.lock"] + sorted(
        path
        for path in (root / "wis2node").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            info = zipfile.ZipInfo(str(path.relative_to(root)), date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return NodePackage(archive=buffer.getvalue())


def _context(settings: NodeSettings, facts: DeployFacts, layout: Layout) -> dict:
    return {
        "centre_id": settings.centre_id,
        "environment": settings.environment,
        "stack": settings.stack,
        "fqdn": settings.fqdn,
        "hostname": settings.fqdn.split(".", 1)[0],
        "data_volume_id": facts.data_volume_id,
        "paths": layout.paths,
        "ports": layout.ports,
        "listen": layout.listen,
        "broker_user": layout.broker_user,
        "web_user": layout.web_user,
        "read_only_user": READ_ONLY_USER,
        "publisher_user": PUBLISHER_USER,
        "region": settings.region,
        "publishing": {
            "bucket": facts.bucket,
            "queue": settings.ingest_queue,
            "dead_letter_queue": settings.dead_letter_queue,
            "package_key": PACKAGE_KEY,
            "package_sha256": facts.package_sha256,
        },
        "cloudwatch_agent": CLOUDWATCH_AGENT,
        "units": UNITS if layout == VM else (),
        "tls_policy": TLS_POLICY,
        "broker": BROKER_LIMITS,
        "web": WEB_LIMITS,
        # nginx serves each file with the type its notification announces.
        "media_types": {"by_type": nginx_types(), "default": DEFAULT_MEDIA_TYPE, "metadata": METADATA_TYPE},
        "monitoring": {"namespace": METRIC_NAMESPACE, "host_namespace": HOST_METRIC_NAMESPACE},
        "publisher_password_parameter": settings.parameter_name("publisher-password"),
        "runtime": {"parameter": settings.parameter_name(RUNTIME_PARAMETER)},
        "logs": {"groups": journal.log_groups(settings.stack), "units": journal.units()},
        "alerts_topic_parameter": settings.parameter_name("alerts-topic"),  # the watcher's SNS topic
        "tls": {
            "mode": settings.tls_mode,
            # Test stacks use Let's Encrypt's staging CA: same protocol, no rate limits, untrusted.
            "acme_server": LETSENCRYPT_PRODUCTION if settings.is_production else LETSENCRYPT_STAGING,
            "key_parameter": settings.parameter_name("tls-private-key")
            if settings.uses_private_key_parameter
            else None,
            "certificate_parameter": (
                settings.parameter_name("tls-certificate") if settings.uses_private_key_parameter else None
            ),
        },
    }


RUNTIME_PARAMETER = "runtime-config"


def runtime_config(settings: NodeSettings) -> dict:
    """What the node can change without a new machine (nodeconfig.RUNTIME_KEYS), as the SSM
    parameter carries it to the node's wis2-config unit. Never in user data."""
    return {
        "publishing": {"retention_days": settings.retention_days, "max_file_bytes": settings.max_file_mb * 1024 * 1024},
        "tls": {"letsencrypt_email": settings.alert_emails[0] if settings.alert_emails else None},
        "monitoring": {"certificate_alarm_days": settings.certificate_alarm_days},
        "upgrades": {"reboot_time": settings.reboot_time},
    }


def render_files(settings: NodeSettings, facts: DeployFacts, layout: Layout = VM) -> list[NodeFile]:
    """Every file the node gets, at its path in the layout, in a stable order."""
    context = _context(settings, facts, layout)
    files = [
        NodeFile(
            path=layout.path(path),
            mode=mode,
            owner=owner,
            content=_ENV.get_template(path.lstrip("/")).render(context).encode("utf-8"),
        )
        for path, mode, owner in _FILES
    ]
    return files


def render_user_data(settings: NodeSettings, facts: DeployFacts) -> str:
    """The cloud-init document that turns a fresh Ubuntu instance into the node."""
    document = _ENV.get_template("cloud-config.yaml").render(
        _context(settings, facts, VM),
        files=render_files(settings, facts),
        packages=_PACKAGES,
        commands=_COMMANDS + (() if settings.tls_mode == "letsencrypt" else _COMMANDS_WITHOUT_CERTBOT),
    )
    pack_user_data(document)  # refuse, here already, a document EC2 would refuse
    return document


def pack_user_data(document: str) -> str:
    """What EC2 gets: the document gzipped (cloud-init unpacks it), base64-encoded for the API.

    gzip without a timestamp is deterministic for a given zlib, like the node package's zip.
    """
    packed = gzip.compress(document.encode("utf-8"), compresslevel=9, mtime=0)
    if len(packed) > USER_DATA_LIMIT:
        raise ValueError(f"user data is {len(packed)} bytes gzipped, over EC2's limit of {USER_DATA_LIMIT}")
    return base64.b64encode(packed).decode("ascii")
