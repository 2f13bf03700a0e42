"""Audit a deployed node, read-only: is it healthy and still locked down as designed?

    python -m wis2node verify --stack STACK [--json] [--no-network] [--no-wis2] [--wis2-wait S]

One line per check, from AWS (found by the stack's tags; credentials from the usual chain,
nothing is changed) and, unless --no-network, from the node's own endpoints and then the WIS2
section (wis2node/verify_wis2.py: the node's watcher, the Global Brokers relaying, the Global
Discovery Catalogues, the latest WIS2 alerts). Exit status 1 when any check fails; a Global
Service this machine cannot reach is a "skip" line, not a failure.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from wis2node.alarms import HEALTH_CHECK_ALARMS, HEALTH_CHECK_REGION, NODE_ALARMS, alarm_name
from wis2node.endpoints import READ_ONLY_PASSWORD, READ_ONLY_USER
from wis2node.node.rules import topic_root
from wis2node.node.tls import days_left
from wis2node.settings import HTTPS_PORT, MQTTS_PORT, NodeSettings

if TYPE_CHECKING:
    from wis2node.verify_wis2 import Wis2Options

STACK_TAG = "wis2-node:stack"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    skipped: bool = False  # not judged: a Global Service this machine cannot reach (never a failure)


@dataclass
class Endpoints:
    """Where the network checks connect: the node's FQDN by default, a local node in tests."""

    host: str
    https_port: int = HTTPS_PORT
    mqtts_port: int = MQTTS_PORT
    ca_file: str | None = None  # default: the system's trusted CAs


class Verifier:
    def __init__(self, settings: NodeSettings, session=None):
        import boto3

        self.settings = settings
        self.session = session or boto3.session.Session(region_name=settings.region)
        self.checks: list[Check] = []
        self.address: str | None = None  # the Elastic IP, once the elastic-ip check has found it

    def add(self, name: str, ok: bool, detail: str, skipped: bool = False) -> None:
        self.checks.append(Check(name, ok, detail, skipped))

    # -- AWS -----------------------------------------------------------------------------------

    def run_aws(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        ec2 = self.session.client("ec2")
        try:
            instance = self._instance(ec2)
        except NoCredentialsError:
            self.add("aws-credentials", False, "no AWS credentials found (environment, profile, SSO or role)")
            return
        except (BotoCoreError, ClientError) as err:
            self.add("aws", False, f"cannot query EC2: {err}")
            return
        found: dict = instance or {}  # read only by the steps that run when there is an instance
        steps: list[tuple[str, Callable]] = [
            ("imdsv2", lambda: self._imdsv2(found)),
            ("volumes-encrypted", lambda: self._volumes(ec2, found)),
            ("firewall", lambda: self._firewall(ec2, found)),
            ("elastic-ip", lambda: self._address(ec2, found)),
            ("dns", lambda: self._dns()),
            ("ssm-online", lambda: self._ssm(found)),
            ("alarms", lambda: self._alarms()),
        ]
        for name, step in steps:
            if instance is None and name not in ("dns", "alarms"):
                self.add(name, False, "not checked: no instance")
                continue
            try:
                step()
            except (BotoCoreError, ClientError) as err:
                self.add(name, False, f"cannot check: {err}")

    def _instance(self, ec2) -> dict | None:
        reservations = ec2.describe_instances(
            Filters=[
                {"Name": f"tag:{STACK_TAG}", "Values": [self.settings.stack]},
                {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
            ]
        )["Reservations"]
        instances = [i for r in reservations for i in r["Instances"]]
        if not instances:
            self.add(
                "instance",
                False,
                f"no instance tagged {STACK_TAG}={self.settings.stack} in "
                f"{self.settings.region}: never deployed, or another account?",
            )
            return None
        instance = instances[0]
        state = instance["State"]["Name"]
        self.add("instance", state == "running", f"{instance['InstanceId']} is {state}")
        return instance

    def _imdsv2(self, instance: dict) -> None:
        tokens = instance.get("MetadataOptions", {}).get("HttpTokens")
        self.add("imdsv2", tokens == "required", f"metadata tokens {tokens}")

    def _volumes(self, ec2, instance: dict) -> None:
        ids = {m["Ebs"]["VolumeId"] for m in instance.get("BlockDeviceMappings", []) if "Ebs" in m}
        tagged = ec2.describe_volumes(Filters=[{"Name": f"tag:{STACK_TAG}", "Values": [self.settings.stack]}])
        ids |= {v["VolumeId"] for v in tagged["Volumes"]}
        volumes = ec2.describe_volumes(VolumeIds=sorted(ids))["Volumes"] if ids else []
        plain = [v["VolumeId"] for v in volumes if not v.get("Encrypted")]
        self.add(
            "volumes-encrypted",
            bool(volumes) and not plain,
            f"not encrypted: {', '.join(plain)}" if plain else f"{len(volumes)} volumes, all encrypted",
        )

    def _firewall(self, ec2, instance: dict) -> None:
        groups = [g["GroupId"] for g in instance.get("SecurityGroups", [])]
        rules = (
            ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": groups}])["SecurityGroupRules"]
            if groups
            else []
        )
        declared = set()
        for rule in rules:
            if rule.get("IsEgress"):
                continue
            source = (
                rule.get("CidrIpv4")
                or rule.get("CidrIpv6")
                or rule.get("PrefixListId")
                or rule.get("ReferencedGroupInfo", {}).get("GroupId", "?")
            )
            declared.add((source, rule.get("IpProtocol"), rule.get("FromPort"), rule.get("ToPort")))
        expected = {(r.cidr, "tcp", r.port, r.port) for r in self.settings.ingress_rules()}
        checkers = self._health_checkers(ec2)
        if checkers:
            expected |= {(checkers, "tcp", port, port) for port in (HTTPS_PORT, MQTTS_PORT)}
        extra, missing = sorted(declared - expected, key=str), sorted(expected - declared, key=str)
        for source, protocol, low, high in extra:
            ports = low if low == high else f"{low}-{high}"
            self.add("firewall", False, f"extra rule: {protocol}/{ports} from {source}")
        for source, protocol, low, _ in missing:
            self.add("firewall", False, f"missing rule: {protocol}/{low} from {source}")
        if not extra and not missing:
            self.add("firewall", True, f"ingress is exactly the declared {len(expected)} rules on 443/8883")

    def _health_checkers(self, ec2) -> str | None:
        lists = ec2.describe_managed_prefix_lists(
            Filters=[{"Name": "prefix-list-name", "Values": [self.settings.health_checkers_prefix_list]}]
        )
        return lists["PrefixLists"][0]["PrefixListId"] if lists["PrefixLists"] else None

    def _address(self, ec2, instance: dict) -> None:
        addresses = ec2.describe_addresses(Filters=[{"Name": f"tag:{STACK_TAG}", "Values": [self.settings.stack]}])[
            "Addresses"
        ]
        if not addresses:
            self.add("elastic-ip", False, f"no Elastic IP tagged {STACK_TAG}={self.settings.stack}")
            return
        address = addresses[0]
        attached = address.get("InstanceId") == instance["InstanceId"]
        self.address = address["PublicIp"]
        self.add("elastic-ip", attached, f"{address['PublicIp']} attached to {address.get('InstanceId') or 'nothing'}")

    def _dns(self) -> None:
        route53 = self.session.client("route53")
        zone_name = self.settings.hosted_zone + "."
        zones = [
            z
            for z in route53.list_hosted_zones_by_name(DNSName=zone_name)["HostedZones"]
            if z["Name"] == zone_name and not z.get("Config", {}).get("PrivateZone")
        ]
        if not zones:
            self.add("dns", False, f"no public hosted zone {self.settings.hosted_zone}")
            return
        records = route53.list_resource_record_sets(
            HostedZoneId=zones[0]["Id"], StartRecordName=self.settings.fqdn, StartRecordType="A", MaxItems="1"
        )["ResourceRecordSets"]
        values = [
            r["Value"]
            for s in records
            if s["Name"] == self.settings.fqdn + "." and s["Type"] == "A"
            for r in s.get("ResourceRecords", [])
        ]
        expected = self.address
        self.add(
            "dns",
            bool(values) and values == [expected],
            f"A {self.settings.fqdn} -> {', '.join(values) or 'nothing'}"
            + ("" if values == [expected] else f" (the Elastic IP is {expected or 'unknown'})"),
        )

    def _ssm(self, instance: dict) -> None:
        ssm = self.session.client("ssm")
        found = ssm.describe_instance_information(Filters=[{"Key": "InstanceIds", "Values": [instance["InstanceId"]]}])[
            "InstanceInformationList"
        ]
        status = found[0]["PingStatus"] if found else "not registered"
        self.add("ssm-online", status == "Online", f"Session Manager agent: {status}")

    def _alarms(self) -> None:
        for region, labels in ((self.settings.region, NODE_ALARMS), (HEALTH_CHECK_REGION, HEALTH_CHECK_ALARMS)):
            cloudwatch = self.session.client("cloudwatch", region_name=region)
            names = [alarm_name(self.settings.stack, label) for label in labels]
            found = {
                a["AlarmName"]: a["StateValue"] for a in cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]
            }
            for name in names:
                if name not in found:
                    self.add("alarms", False, f"missing alarm {name} ({region})")
                elif found[name] == "ALARM":
                    self.add("alarms", False, f"{name} is in ALARM")
            if set(names) <= set(found) and "ALARM" not in found.values():
                self.add("alarms", True, f"{len(names)} alarms in {region}, none in ALARM")

    # -- the node's endpoints ------------------------------------------------------------------

    def run_network(self, endpoints: Endpoints) -> None:
        if endpoints.host == self.settings.fqdn:  # the public name, as clients resolve it
            self._resolves()
        for label, port in (("https", endpoints.https_port), ("mqtts", endpoints.mqtts_port)):
            self._certificate(label, endpoints, port)
        self._mqtt_read_only(endpoints)
        self._https_read_only(endpoints)

    def _resolves(self) -> None:
        try:
            found = sorted({str(info[4][0]) for info in socket.getaddrinfo(self.settings.fqdn, None, socket.AF_INET)})
        except OSError as err:
            self.add("dns-resolves", False, f"{self.settings.fqdn} does not resolve: {err}")
            return
        expected = self.address
        self.add(
            "dns-resolves",
            found == [expected],
            f"{self.settings.fqdn} resolves to {', '.join(found)}"
            + ("" if found == [expected] else f" (the Elastic IP is {expected or 'unknown'})"),
        )

    def _context(self, endpoints: Endpoints) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=endpoints.ca_file)

    def _certificate(self, label: str, endpoints: Endpoints, port: int) -> None:
        try:
            with (
                socket.create_connection((endpoints.host, port), timeout=10) as raw,
                self._context(endpoints).wrap_socket(raw, server_hostname=self.settings.fqdn) as tls,
            ):
                der = tls.getpeercert(binary_form=True)
            if der is None:
                raise ssl.SSLError("no certificate served")
            left = days_left(der)
            self.add(f"certificate-{label}", True, f"valid for {self.settings.fqdn}, {left:.0f} days left")
        except (OSError, ssl.SSLError) as err:
            self.add(f"certificate-{label}", False, f"port {port}: {err}")

    def _mqtt_read_only(self, endpoints: Endpoints) -> None:
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.username_pw_set(READ_ONLY_USER, READ_ONLY_PASSWORD)
        context = self._context(endpoints)
        context.check_hostname = False  # the certificate check above already named the FQDN
        client.tls_set_context(context)
        events = {"connected": threading.Event(), "subscribed": threading.Event(), "acked": threading.Event()}
        results: dict = {}

        def on_connect(c, u, f, reason, p):  # paho's callback signatures
            results.update(connect=reason.value)
            events["connected"].set()

        def on_subscribe(c, u, mid, reasons, p):
            results.update(subscribe=reasons[0].value)
            events["subscribed"].set()

        def on_publish(c, u, mid, reason, p):
            results.update(publish=reason.value)
            events["acked"].set()

        client.on_connect, client.on_subscribe, client.on_publish = on_connect, on_subscribe, on_publish
        try:
            client.connect(endpoints.host, endpoints.mqtts_port, keepalive=10)
        except (OSError, ssl.SSLError) as err:
            self.add("mqtt-read-only", False, f"cannot connect as {READ_ONLY_USER}: {err}")
            return
        client.loop_start()
        try:
            if not events["connected"].wait(10) or results.get("connect") != 0:
                self.add("mqtt-read-only", False, f"{READ_ONLY_USER} cannot log in ({results.get('connect')})")
                return
            client.subscribe(f"{topic_root(self.settings.centre_id)}/#", qos=1)
            subscribed = events["subscribed"].wait(10) and results.get("subscribe", 128) < 0x80
            client.publish(f"{topic_root(self.settings.centre_id)}/data/core/weather/verify", b"{}", qos=1)
            refused = events["acked"].wait(10) and results.get("publish", 0) >= 0x80
            self.add(
                "mqtt-read-only",
                subscribed and refused,
                f"{READ_ONLY_USER} {'can' if subscribed else 'cannot'} subscribe and "
                f"{'cannot' if refused else 'CAN'} publish",
            )
        finally:
            client.disconnect()
            client.loop_stop()

    def _https_read_only(self, endpoints: Endpoints) -> None:
        import http.client

        refused = []
        for method in ("PUT", "POST", "DELETE"):
            try:
                connection = http.client.HTTPSConnection(
                    endpoints.host, endpoints.https_port, timeout=10, context=self._unverified()
                )
                connection.request(method, "/data/verify-probe", body=b"x", headers={"Host": self.settings.fqdn})
                status = connection.getresponse().status
                connection.close()
            except (OSError, ssl.SSLError) as err:
                self.add("https-read-only", False, f"{method}: {err}")
                return
            if status not in (403, 405):
                self.add("https-read-only", False, f"{method} /data/ answered {status}")
                return
            refused.append(f"{method} {status}")
        self.add("https-read-only", True, ", ".join(refused))

    @staticmethod
    def _unverified() -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # this check is about methods, the certificate has its own
        return context

    # -- WIS2: the node as the Global Services see it (wis2node/verify_wis2.py) ---------------------

    def run_wis2(self, options: Wis2Options, endpoints: Endpoints | None = None) -> None:
        """After run_aws found credentials: every AWS or network error becomes a line of its own."""
        from wis2node import verify_wis2

        node = (
            None if endpoints is None else verify_wis2.Endpoint("node", endpoints.host, endpoints.mqtts_port, "mqtts")
        )
        ca_file = None if endpoints is None else endpoints.ca_file
        verify_wis2.run(self.add, self.settings, self.session, options, node, ca_file)


def verify(
    settings: NodeSettings, endpoints: Endpoints | None, session=None, wis2: Wis2Options | None = None
) -> list[Check]:
    verifier = Verifier(settings, session)
    verifier.run_aws()
    if endpoints is not None:
        verifier.run_network(endpoints)
        if wis2 is not None and not any(c.name == "aws-credentials" for c in verifier.checks):
            verifier.run_wis2(wis2, endpoints)
    return verifier.checks


def report(checks: list[Check], as_json: bool) -> str:
    if as_json:
        return json.dumps({"ok": all(c.ok for c in checks), "checks": [asdict(c) for c in checks]}, indent=2)
    width = max(len(c.name) for c in checks)
    lines = [f"{'skip' if c.skipped else 'ok  ' if c.ok else 'FAIL'}  {c.name:{width}}  {c.detail}" for c in checks]
    failed = sum(not c.ok for c in checks)
    skipped = sum(c.skipped for c in checks)
    summary = f"{len(checks)} checks, {failed} failed"
    if skipped:
        summary += f", {skipped} not reachable from here or nothing to judge"
    return "\n".join([*lines, summary])
