"""The node's user data, booted as a machine boots it (README: "The boot test").

One Debian 13 machine (tests/e2e/machine.py) runs the rendered user data of the example test stack
in self-signed mode through cloud-init; from this host, as a Global Broker and a Global Cache
would, the tests subscribe and download; then the same disk boots again (a reboot), and a fresh
root filesystem with a new instance-id boots with the same data volume (a replaced instance).
The tests run in order and share the machine.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.machine import CACHE, Machine, Network, Volume, root_filesystem
from tests.wis2node.mqtt_clients import Client
from tests.wmo import ets_validate
from wis2node.localcloud import LocalIngest, client, moto_server
from wis2node.metadata import metadata_dir
from wis2node.payload import (
    _PACKAGES,
    DATA_ROOT,
    RUNTIME_PARAMETER,
    UNITS,
    DeployFacts,
    node_package,
    pack_user_data,
    render_user_data,
    runtime_config,
)
from wis2node.stackfile import find_stack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the boot test needs root (debootstrap, nspawn, netns, loop)"),
]

STACK = find_stack("aq-examplemet-test")
SETTINGS = STACK.settings().model_copy(update={"tls_mode": "self-signed"})
CENTRE = SETTINGS.centre_id
BRANCH = f"origin/a/wis2/{CENTRE}"
SYNOP = "data/core/weather/surface-based-observations/synop"
RECORD = metadata_dir(SETTINGS.stack) / "surface-based-observations-synop.json"
RECORD_ID = json.loads(RECORD.read_text())["id"]
VOLUME_ID = "vol-0b007e57da7a00001"
# The node's steps that must be up; the CloudWatch agent's package is not reachable at first.
# (wis2-config.service runs once and ends: its timer is what stays active.)
ESSENTIAL = [unit for unit in UNITS if unit not in ("wis2-cloudwatch-agent.service", "wis2-config.service")]


class Endpoint:
    """What mqtt_clients.Client needs to know of a node: its ports and the CA it trusts."""

    def __init__(self, ca_file: Path):
        self.ca_file = ca_file
        self.ports = type("Ports", (), {"mqtts": 8883, "https": 443, "mqtt_local": 1883})


class BootedNode:
    def __init__(self, machine: Machine, ingest: LocalIngest, environment: dict, work: Path, network: Network):
        self.machine, self.ingest, self.environment, self.work, self.network = (
            machine,
            ingest,
            environment,
            work,
            network,
        )
        self.address = network.machine

    def ca_file(self) -> Path:
        path = self.work / "served-chain.pem"
        path.write_text(self.machine.sh(f"cat {DATA_ROOT}/tls/fullchain.pem", check=True).stdout)
        return path

    def client(self, **kwargs) -> Client:
        reader = Client(
            Endpoint(self.ca_file()), "everyone", "everyone", host=self.address, check_hostname=False, **kwargs
        )
        assert reader.ok, f"everyone could not connect ({reader.reason})"
        return reader

    def served_certificate(self, port: int) -> bytes:
        context = ssl.create_default_context(cafile=str(self.ca_file()))
        with (
            socket.create_connection((self.address, port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=SETTINGS.fqdn) as tls,
        ):  # name checked here
            return tls.getpeercert(binary_form=True)

    def download(self, href: str) -> bytes:
        path = href.split(SETTINGS.fqdn, 1)[1]
        context = ssl.create_default_context(cafile=str(self.ca_file()))
        context.check_hostname = False
        request = urllib.request.Request(f"https://{self.address}{path}", headers={"Host": SETTINGS.fqdn})
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return response.read()

    def wait_until_up(self, timeout: float = 900) -> None:
        try:
            self._wait_until_up(timeout)
        except TimeoutError:
            print(self.machine.sh(f"systemctl --no-pager status {' '.join(ESSENTIAL)}; ss -ltnp").stdout)
            raise

    def _wait_until_up(self, timeout: float) -> None:
        # is-active answers 0 when any one is active: every line must say so.
        self.machine.wait_until(
            f"! systemctl is-active {' '.join(ESSENTIAL)} | grep -vqx active", timeout=timeout, interval=5
        )
        self.machine.wait_until(
            "ss -Hltn 'sport = :8883' | grep -q . && ss -Hltn 'sport = :443' | grep -q .", timeout=120
        )


@pytest.fixture(scope="module")
def node():
    base = root_filesystem(tuple(_PACKAGES))
    work = CACHE / "run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    network = Network().up()
    volume = Volume(work / "data-volume.img")
    machine = None
    try:
        with moto_server(SETTINGS.region, host=network.host) as environment:
            ingest = LocalIngest(environment, SETTINGS)
            package = node_package()
            ingest.s3.put_object(Bucket=ingest.bucket, Key=package.key, Body=package.archive)
            ingest.put_record(RECORD)  # what Pulumi uploads with the stack, and its parameters:
            ssm = client("ssm", environment)
            ssm.put_parameter(
                Name=SETTINGS.parameter_name(RUNTIME_PARAMETER),
                Type="String",
                Value=json.dumps(runtime_config(SETTINGS), sort_keys=True),
            )
            topic = client("sns", environment).create_topic(Name=f"{SETTINGS.stack}-alerts")["TopicArn"]
            ssm.put_parameter(Name=SETTINGS.parameter_name("alerts-topic"), Type="String", Value=topic)
            user_data = render_user_data(
                SETTINGS, DeployFacts(data_volume_id=VOLUME_ID, bucket=ingest.bucket, package_sha256=package.sha256)
            )
            # What EC2 hands the instance: the gzipped document (cloud-init unpacks it).
            packed = base64.b64decode(pack_user_data(user_data))
            machine = Machine.new_instance(
                base,
                work / "root-1",
                packed,
                "i-0b007e57000000001",
                {"region": SETTINGS.region, "endpoint": environment["AWS_ENDPOINT_URL"]},
                network=network,
                volume=volume,
                volume_path="/dev/xvdf",
                log=work / "machine-1",
            )
            started = time.monotonic()
            machine.boot()
            booted = BootedNode(machine, ingest, environment, work, network)
            booted.status = machine.wait_for_cloud_init()
            booted.wait_until_up()
            booted.first_boot_seconds = time.monotonic() - started
            booted.packed = packed
            booted.base = base
            yield booted
            machine = booted.machine
    finally:
        if machine:
            machine.power_off()
        volume.detach()
        network.down()


def new_instance(node: BootedNode, number: int, volume: Volume) -> None:
    """Boot a fresh root filesystem with a new instance-id on this volume (the old machine is off)."""
    old = node.machine
    node.machine = Machine.new_instance(
        node.base,
        node.work / f"root-{number}",
        node.packed,
        f"i-0b007e5700000000{number}",
        {"region": SETTINGS.region, "endpoint": node.environment["AWS_ENDPOINT_URL"]},
        network=old.network,
        volume=volume,
        volume_path="/dev/xvdf",
        log=node.work / f"machine-{number}",
    )
    shutil.rmtree(old.root)
    node.machine.boot()
    node.machine.wait_for_cloud_init()
    node.wait_until_up()


def put(ingest: LocalIngest, name: str, body: bytes) -> str:
    key = f"{SYNOP}/{name}"
    ingest.put(key, body, **{"metadata-id": RECORD_ID})
    return key


def data_messages(reader: Client, count: int, timeout: float = 120) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [json.loads(m.payload) for m in reader.received if "/data/" in m.topic]
        if len(found) >= count:
            return found
        time.sleep(0.5)
    return [json.loads(m.payload) for m in reader.received if "/data/" in m.topic]


def canonical(message: dict) -> dict:
    return next(link for link in message["links"] if link["rel"] in ("canonical", "update"))


def sessions_and_agent_state_came_along(
    node: BootedNode, persistent_id: str, body: bytes, everything: Client, name: str
) -> None:
    """On a machine that is new (replaced, or restored): the broker's session, kept on the data
    volume, still holds what was published before; the agent's state came along, so the next file
    is announced, and once only."""
    reader = node.client(client_id=persistent_id, persistent=True)
    assert reader.session_present
    [message] = data_messages(reader, 1, timeout=30)
    assert node.download(canonical(message)["href"]) == body
    put(node.ingest, name, b"after " + name.encode())
    data_messages(everything, 1, timeout=120)
    time.sleep(5)
    announced = [m["properties"]["data_id"] for m in data_messages(everything, 1, timeout=1)]
    assert len(announced) == 1 and announced[0].endswith(name), announced
    reader.close()
    everything.close()


def test_cloud_init_finishes_and_every_step_of_the_node_is_up(node):
    status = node.status
    # In a container cloud-init reports no failed module that matters: NTP is skipped (no
    # CAP_SYS_TIME, chrony is not installed by the test root), growpart/resizefs find no partition.
    assert status["status"] == "done", status
    assert not status.get("errors"), status
    mounted = node.machine.sh(f"findmnt -n -o SOURCE,FSTYPE {DATA_ROOT}").stdout.split()
    assert mounted[1:] == ["ext4"] and mounted[0].startswith("/dev/"), mounted
    assert node.machine.sh(f"grep -c ' {DATA_ROOT} ext4' /etc/fstab").stdout.strip() == "1"
    states = node.machine.sh(f"systemctl is-active {' '.join(ESSENTIAL)}").stdout.split()
    assert states == ["active"] * len(ESSENTIAL), dict(zip(ESSENTIAL, states, strict=False))
    # Self-signed mode: certbot's timer is off (no renewal settings left from a letsencrypt node run).
    assert node.machine.sh("systemctl is-enabled certbot.timer").stdout.strip() == "disabled"
    # The validators' bundles came with the package: nothing was fetched from GitHub.
    assert "sync" not in node.machine.journal("wis2-node-software.service")
    print(f"\nfirst boot to every unit up: {node.first_boot_seconds:.0f} s")


def test_global_broker_and_cache_get_a_valid_notification_and_the_file(node, tmp_path):
    readers = {"mqtts": node.client(), "wss": node.client(transport="wss")}
    for reader in readers.values():
        reader.subscribe(f"{BRANCH}/#")
    body = b"BUFR boot test " + os.urandom(64)
    put(node.ingest, "WIGOS_0-20000-0-10001_20261204T000000.bufr4", body)
    for transport, reader in readers.items():
        [message] = data_messages(reader, 1)
        assert message["properties"]["integrity"]["value"] == base64.b64encode(hashlib.sha512(body).digest()).decode()
        report = ets_validate(message, tmp_path)
        assert report["summary"]["FAILED"] == 0, (transport, report)
        assert node.download(canonical(message)["href"]) == body
        reader.close()
    assert node.served_certificate(8883) == node.served_certificate(443)


def test_a_failed_optional_step_is_visible_and_stops_nothing(node):
    # Amazon's package bucket is unreachable here (as GitHub and PyPI are): the unit says why and
    # retries; the broker, nginx and the agent are up all the same (previous tests).
    unit = "wis2-cloudwatch-agent.service"
    assert node.machine.sh(f"systemctl show -p SubState --value {unit}").stdout.strip() in ("auto-restart", "failed")
    assert "not installed: cannot download it" in node.machine.journal(unit)
    node.machine.sh("systemctl start wis2-reporter.service", check=True)
    cloudwatch = client("cloudwatch", node.environment)
    datapoints = cloudwatch.get_metric_statistics(
        Namespace="WIS2Node",
        MetricName="UnitsFailing",
        Dimensions=[{"Name": "Stack", "Value": SETTINGS.stack}],
        StartTime=time.time() - 3600,
        EndTime=time.time() + 60,
        Period=60,
        Statistics=["Maximum"],
    )["Datapoints"]
    reporter = node.machine.journal("wis2-reporter.service")
    assert datapoints and max(point["Maximum"] for point in datapoints) >= 1, reporter[-3000:]
    assert f"unit failing: {unit}" in node.machine.journal("wis2-reporter.service")


def _signed_test_package(work: Path) -> tuple[str, Path, Path, Path]:
    """A stand-in for Amazon's package (its ctl records how it was called), signed with a test key."""
    home = work / "gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--batch", "--homedir", str(home), "--passphrase", "", "--pinentry-mode", "loopback"]
    subprocess.run(
        [*gpg, "--quick-gen-key", "wis2 boot test <test@example.org>", "ed25519", "sign", "1d"],
        check=True,
        capture_output=True,
    )
    fingerprint = next(
        line.split(":")[9]
        for line in subprocess.run(
            [*gpg, "--with-colons", "--fingerprint"], check=True, capture_output=True, text=True
        ).stdout.splitlines()
        if line.startswith("fpr:")
    )
    tree = work / "deb"
    ctl = tree / "opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl"
    ctl.parent.mkdir(parents=True)
    ctl.write_text('#!/bin/sh\necho "$@" >> /var/log/amazon-cloudwatch-agent-ctl.calls\n')
    ctl.chmod(0o755)
    (tree / "DEBIAN").mkdir()
    (tree / "DEBIAN/control").write_text(
        "Package: amazon-cloudwatch-agent\nVersion: 1.0-test\nArchitecture: all\n"
        "Maintainer: test <test@example.org>\nDescription: boot test stand-in\n"
    )
    package = work / "amazon-cloudwatch-agent.deb"
    subprocess.run(
        ["dpkg-deb", "--build", "--root-owner-group", str(tree), str(package)], check=True, capture_output=True
    )
    subprocess.run([*gpg, "--detach-sign", "--output", f"{package}.sig", str(package)], check=True, capture_output=True)
    key = work / "key.gpg"
    subprocess.run([*gpg, "--export", "--output", str(key)], check=True)
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
    return fingerprint, package, Path(f"{package}.sig"), key


def test_the_cloudwatch_agent_installs_only_with_a_good_signature(node):
    from wis2node.node.cloudwatch_agent import KEY_BUCKET, KEY_KEY, package_key
    from wis2node.payload import CLOUDWATCH_AGENT

    fingerprint, package, signature, key = _signed_test_package(node.work)
    s3 = node.ingest.s3
    bucket = f"amazoncloudwatch-agent-{SETTINGS.region}"
    arch = node.machine.sh("dpkg --print-architecture", check=True).stdout.strip()
    deb_key = package_key(CLOUDWATCH_AGENT["version"], arch)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": SETTINGS.region})
    client("s3", {**node.environment, "AWS_DEFAULT_REGION": "us-east-1"}).create_bucket(Bucket=KEY_BUCKET)
    # Amazon's objects are public: the node reads them anonymously.
    s3.put_object(Bucket=KEY_BUCKET, Key=KEY_KEY, Body=key.read_bytes(), ACL="public-read")
    s3.put_object(Bucket=bucket, Key=deb_key, Body=package.read_bytes(), ACL="public-read")
    s3.put_object(Bucket=bucket, Key=deb_key + ".sig", Body=signature.read_bytes(), ACL="public-read")
    unit = "wis2-cloudwatch-agent.service"
    # Signed, but not by the key the node pins (Amazon's): refused, nothing installed.
    node.machine.sh(f"systemctl restart {unit}")
    assert "not by Amazon's key" in node.machine.journal(unit), node.machine.journal(unit)[-3000:]
    assert node.machine.sh("dpkg -s amazon-cloudwatch-agent").returncode != 0
    # The machine's configuration pins the test key instead (a drop-in, as an operator would).
    drop_in = f"/etc/systemd/system/{unit}.d"
    node.machine.sh(
        f"mkdir -p {drop_in} && printf '[Service]\\nEnvironment=CLOUDWATCH_AGENT_SIGNER={fingerprint}\\n'"
        f" > {drop_in}/test-key.conf && systemctl daemon-reload",
        check=True,
    )
    # A tampered package: refused.
    s3.put_object(Bucket=bucket, Key=deb_key, Body=package.read_bytes() + b"tampered", ACL="public-read")
    node.machine.sh(f"systemctl restart {unit}")
    assert "signature does not verify" in node.machine.journal(unit), node.machine.journal(unit)[-3000:]
    assert node.machine.sh("dpkg -s amazon-cloudwatch-agent").returncode != 0
    # The package as signed: installed, then configured with the node's file.
    s3.put_object(Bucket=bucket, Key=deb_key, Body=package.read_bytes(), ACL="public-read")
    assert node.machine.sh(f"systemctl restart {unit}").returncode == 0, node.machine.journal(unit)[-2000:]
    assert node.machine.sh(f"systemctl is-active {unit}").stdout.strip() == "active"
    calls = node.machine.sh("cat /var/log/amazon-cloudwatch-agent-ctl.calls").stdout
    assert "-a fetch-config -m ec2 -s -c file:/etc/wis2/cloudwatch-agent.json" in calls


def test_a_runtime_change_reaches_the_node_without_a_new_machine(node):
    """retentionDays and rebootTime changed: Pulumi updates the SSM parameter, not the user data; the
    node applies it (the reboot time where apt reads it)."""
    reboot = "apt-config dump | grep '^Unattended-Upgrade::Automatic-Reboot'"
    assert f'Automatic-Reboot-Time "{SETTINGS.reboot_time}";' in node.machine.sh(reboot).stdout, (
        node.machine.sh(reboot).stdout + node.machine.journal("wis2-config.service")[-2000:]
    )
    ssm = client("ssm", node.environment)
    changed = runtime_config(SETTINGS)
    changed["publishing"]["retention_days"] = SETTINGS.retention_days + 7
    changed["upgrades"]["reboot_time"] = "05:45"
    boots = node.machine.sh("journalctl --list-boots --no-pager | wc -l").stdout
    ssm.put_parameter(
        Name=SETTINGS.parameter_name(RUNTIME_PARAMETER),
        Type="String",
        Overwrite=True,
        Value=json.dumps(changed, sort_keys=True),
    )
    applied = node.machine.wait_until(
        f"grep -q '\"retention_days\": {SETTINGS.retention_days + 7}' /etc/wis2/runtime.json && "
        "apt-config dump | grep -q 'Automatic-Reboot-Time \"05:45\"' && "
        "cat /etc/wis2/runtime.json",
        timeout=150,
        interval=5,
    )
    assert json.loads(applied)["publishing"]["retention_days"] == SETTINGS.retention_days + 7
    applied_reboot = node.machine.sh(reboot).stdout
    assert 'Automatic-Reboot "true";' in applied_reboot and 'Automatic-Reboot-Time "05:45";' in applied_reboot, (
        applied_reboot + node.machine.journal("wis2-config.service")[-2000:]
    )
    assert node.machine.sh("journalctl --list-boots --no-pager | wc -l").stdout == boots  # no reboot
    assert node.machine.sh("systemctl is-active wis2-agent.service").stdout.strip() == "active"


def test_reboot_brings_everything_back_and_an_offline_subscriber_gets_what_it_missed(node):
    persistent_id = "gb-boot-test-reboot"
    reader = node.client(client_id=persistent_id, persistent=True)
    reader.subscribe(f"{BRANCH}/#")
    reader.close()  # the Global Broker goes away; its session stays
    body = b"published while the subscriber was away"
    put(node.ingest, "WIGOS_0-20000-0-10002_20261204T010000.bufr4", body)
    # The agent has published it once the file is served.
    node.machine.wait_until(f"find {DATA_ROOT}/public/data -name 'WIGOS_0-20000-0-10002*' | grep -q .", timeout=120)
    assert node.machine.power_off(), "the machine did not stop cleanly"
    node.machine.boot()
    node.wait_until_up()
    reader = node.client(client_id=persistent_id, persistent=True)
    assert reader.session_present
    [message] = data_messages(reader, 1, timeout=30)
    assert node.download(canonical(message)["href"]) == body
    reader.close()


def test_a_replaced_instance_keeps_certificate_sessions_files_state_and_password(node):
    ssm = client("ssm", node.environment)
    password = ssm.get_parameter(Name=SETTINGS.parameter_name("publisher-password"), WithDecryption=True)["Parameter"][
        "Value"
    ]
    certificate = node.served_certificate(443)
    persistent_id = "gb-boot-test-replacement"
    reader = node.client(client_id=persistent_id, persistent=True)
    reader.subscribe(f"{BRANCH}/#")
    reader.close()
    body = b"published before the replacement"
    put(node.ingest, "WIGOS_0-20000-0-10003_20261204T020000.bufr4", body)
    node.machine.wait_until(f"find {DATA_ROOT}/public/data -name 'WIGOS_0-20000-0-10003*' | grep -q .", timeout=120)
    published = node.machine.sh(f"find {DATA_ROOT}/public -type f | sort").stdout
    assert node.machine.power_off(), "the machine did not stop cleanly"
    # A new instance: a fresh root filesystem and instance-id, the same user data and data volume.
    new_instance(node, 2, node.machine.volume)
    everything = node.client()
    everything.subscribe(f"{BRANCH}/#")

    assert node.served_certificate(443) == certificate
    assert node.machine.sh(f"find {DATA_ROOT}/public -type f | sort").stdout == published
    assert (
        ssm.get_parameter(Name=SETTINGS.parameter_name("publisher-password"), WithDecryption=True)["Parameter"]["Value"]
        == password
    )
    sessions_and_agent_state_came_along(
        node, persistent_id, body, everything, "WIGOS_0-20000-0-10004_20261204T030000.bufr4"
    )


def test_memory_of_the_node_after_a_burst(node):
    """Resident memory of every process of the node after 200 files (README: performance)."""
    reader = node.client()
    reader.subscribe(f"{BRANCH}/#")
    for index in range(200):
        put(node.ingest, f"WIGOS_0-20000-0-2{index:04d}_20261204T040000.bufr4", os.urandom(2048))
    assert len(data_messages(reader, 200, timeout=600)) == 200
    reader.close()
    table = node.machine.sh("ps -ww -eo rss=,comm=,args= --sort=-rss").stdout
    groups: dict[str, int] = {}
    for line in table.splitlines():
        rss, comm, args = line.split(None, 2) if len(line.split(None, 2)) == 3 else (*line.split(None, 1), "")
        tool = args.split("-m wis2node.node ", 1)[1].split()[0] if "-m wis2node.node " in args else None
        name = tool or comm  # the node's tools by name: agent, watcher, ...
        groups[name] = groups.get(name, 0) + int(rss)
    total = sum(groups.values())
    memory = node.machine.sh("free -m").stdout
    lines = [f"{name:24s} {kb / 1024:7.1f} MB" for name, kb in sorted(groups.items(), key=lambda i: -i[1])[:12]]
    report = "\n".join(
        ["resident memory after 200 files:", *lines, f"{'all processes':24s} {total / 1024:7.1f} MB", memory]
    )
    (CACHE / "memory.txt").write_text(report + "\n")
    print("\n" + report)
    assert groups.get("agent", 0) > 0 and groups.get("mosquitto", 0) > 0 and groups.get("nginx", 0) > 0


def test_a_restore_from_a_snapshot_brings_the_node_back(node):
    """A new machine on a copy of the data volume (the snapshot): certificate, sessions, files and
    the agent's state."""
    certificate = node.served_certificate(443)
    persistent_id = "gb-boot-test-restore"
    reader = node.client(client_id=persistent_id, persistent=True)
    reader.subscribe(f"{BRANCH}/#")
    reader.close()
    body = b"published before the snapshot"
    put(node.ingest, "WIGOS_0-20000-0-10005_20261204T050000.bufr4", body)
    node.machine.wait_until(f"find {DATA_ROOT}/public/data -name 'WIGOS_0-20000-0-10005*' | grep -q .", timeout=120)
    published = node.machine.sh(f"find {DATA_ROOT}/public -type f | sort").stdout
    assert node.machine.power_off(), "the machine did not stop cleanly"
    snapshot = node.work / "snapshot.img"
    shutil.copyfile(node.machine.volume.file, snapshot)
    new_instance(node, 3, Volume(snapshot))
    everything = node.client()
    everything.subscribe(f"{BRANCH}/#")
    assert node.machine.sh(f"findmnt -n -o SOURCE {DATA_ROOT}").stdout.strip() == "/dev/xvdf"  # the copy
    assert node.served_certificate(443) == certificate
    assert node.machine.sh(f"find {DATA_ROOT}/public -type f | sort").stdout == published
    sessions_and_agent_state_came_along(
        node, persistent_id, body, everything, "WIGOS_0-20000-0-10006_20261204T060000.bufr4"
    )
