"""The node's own scripts, run for real against the local node (and moto for SSM)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.wis2node.mqtt_clients import Client
from wis2node.endpoints import PUBLISHER_USER
from wis2node.local import LocalNode, free_port, write_certificate
from wis2node.localcloud import client, moto_server, run_environment
from wis2node.node import reporter
from wis2node.stackfile import ROOT, find_stack

# Starts the node's daemons: not in the quick loop, `pytest -m "not slow"` (docs/DEVELOPING.md).
pytestmark = pytest.mark.slow

SETTINGS = find_stack("aq-examplemet-test").settings()
WIS2NODE = [sys.executable, "-m", "wis2node"]
TOPIC = f"origin/a/wis2/{SETTINGS.centre_id}/data/core/weather/surface-based-observations/synop"


@pytest.fixture
def node(tmp_path):
    with LocalNode(SETTINGS, tmp_path / "node") as running:
        yield running


def script(node: LocalNode, name: str) -> str:
    return str(node.path(f"/usr/local/sbin/{name}"))


def node_config(node: LocalNode) -> str:
    return str(node.path("/etc/wis2/node.json"))


def served_certificate(port: int) -> x509.Certificate:
    return x509.load_der_x509_certificate(reporter.served_certificate(port, SETTINGS.fqdn))


def test_deploy_hook_renews_without_dropping_subscribers(node, tmp_path):
    old = {port: served_certificate(port) for port in (node.ports.mqtts, node.ports.https)}
    subscriber = Client(node, "everyone", "everyone")
    subscriber.subscribe(f"origin/a/wis2/{SETTINGS.centre_id}/#")
    try:
        lineage = tmp_path / "live"
        new_ca = write_certificate(lineage, SETTINGS.fqdn)  # what certbot leaves in live/<name>/
        run = subprocess.run(
            [script(node, "wis2-install-certificate")],
            capture_output=True,
            text=True,
            env={"RENEWED_LINEAGE": str(lineage), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        assert run.returncode == 0, run.stderr
        time.sleep(1)
        new = x509.load_pem_x509_certificates((lineage / "fullchain.pem").read_bytes())[0]
        for port in (node.ports.mqtts, node.ports.https):
            assert served_certificate(port) == new != old[port], port
        assert subscriber.client.is_connected()
        writer = Client(node, PUBLISHER_USER, node.publisher_password, cafile=str(new_ca))
        assert writer.ok and writer.publish(TOPIC, b"after renewal") in (0, 16)
        writer.close()
        assert [m.payload for m in subscriber.wait_for(1)] == [b"after renewal"]
    finally:
        subscriber.close()


def test_failed_issuance_keeps_serving_and_says_why(node):
    config_path = node.path("/etc/wis2/node.json")
    config = json.loads(config_path.read_text())
    assert config["tls"]["mode"] == "letsencrypt"
    # The ACME directory on a loopback port where nothing listens: issuance fails for real.
    config["tls"]["acme_server"] = f"https://127.0.0.1:{free_port()}/directory"
    config_path.write_text(json.dumps(config))
    before = served_certificate(node.ports.https)
    run = subprocess.run(
        [*WIS2NODE, "certificate", str(config_path)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert run.returncode == 75, run.stdout + run.stderr  # EX_TEMPFAIL: the timer retries, no crash loop
    assert "issuance for" in run.stderr and "failed" in run.stderr and "still serving" in run.stderr
    assert served_certificate(node.ports.https) == before
    assert node.broker.poll() is None and node.web.poll() is None


def test_stack_certificate_and_ssm_key_are_installed(node, tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    from tests.pulumi_harness import mock_certificate

    certificate_pem = mock_certificate(SETTINGS.fqdn, key=key)
    config_path = node.path("/etc/wis2/node.json")
    config = json.loads(config_path.read_text())
    config["tls"].update(
        mode="self-signed",
        key_parameter=SETTINGS.parameter_name("tls-private-key"),
        certificate_parameter=SETTINGS.parameter_name("tls-certificate"),
    )
    config_path.write_text(json.dumps(config))
    with moto_server(SETTINGS.region) as aws:
        ssm = client("ssm", aws)
        ssm.put_parameter(Name=config["tls"]["key_parameter"], Type="SecureString", Value=key_pem)
        ssm.put_parameter(Name=config["tls"]["certificate_parameter"], Type="String", Value=certificate_pem)
        run = subprocess.run(
            [*WIS2NODE, "certificate", str(config_path)],
            capture_output=True,
            text=True,
            env=run_environment(aws),
            timeout=60,
            cwd=ROOT,
        )
    assert run.returncode == 0, run.stdout + run.stderr
    time.sleep(1)
    expected = x509.load_pem_x509_certificate(certificate_pem.encode())
    assert served_certificate(node.ports.https) == expected
    assert served_certificate(node.ports.mqtts) == expected
    assert "PRIVATE KEY" in (node.tls_dir / "privkey.pem").read_text()


def test_missing_key_parameter_keeps_the_current_certificate(node):
    config_path = node.path("/etc/wis2/node.json")
    config = json.loads(config_path.read_text())
    config["tls"].update(
        mode="provided",
        key_parameter="/wis2-node/none/tls-private-key",
        certificate_parameter="/wis2-node/none/tls-certificate",
    )
    config_path.write_text(json.dumps(config))
    before = served_certificate(node.ports.mqtts)
    with moto_server(SETTINGS.region) as aws:
        client("ssm", aws).put_parameter(
            Name="/wis2-node/none/tls-certificate", Type="String", Value="-----BEGIN CERTIFICATE-----\n"
        )
        run = subprocess.run(
            [*WIS2NODE, "certificate", str(config_path)],
            capture_output=True,
            text=True,
            env=run_environment(aws),
            timeout=60,
            cwd=ROOT,
        )
    assert run.returncode == 75 and "cannot read the key" in run.stderr
    assert served_certificate(node.ports.mqtts) == before


def test_publisher_password_is_generated_once_into_ssm_and_works(node):
    name = SETTINGS.parameter_name("publisher-password")
    with moto_server(SETTINGS.region) as aws:
        ssm = client("ssm", aws)
        for _ in range(2):  # a second boot (or a replacement instance) keeps the same password
            run = subprocess.run(
                [*WIS2NODE, "publisher-credential", node_config(node)],
                capture_output=True,
                text=True,
                env=run_environment(aws),
                timeout=60,
                cwd=ROOT,
            )
            assert run.returncode == 0, run.stderr
            parameter = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]
            assert parameter["Type"] == "SecureString" and parameter["Version"] == 1
        password = parameter["Value"]
    assert len(password) >= 32 and password != node.publisher_password
    node.broker.send_signal(1)  # SIGHUP: mosquitto re-reads its accounts, as `systemctl reload` does
    time.sleep(0.5)
    writer = Client(node, PUBLISHER_USER, password)
    assert writer.ok
    writer.close()
    stale = Client(node, PUBLISHER_USER, node.publisher_password)
    assert not stale.ok
    stale.close()


def test_publisher_password_never_appears_on_a_command_line(node, tmp_path):
    """Any local user can read a process's arguments in /proc: record what mosquitto_passwd was given."""
    real = subprocess.run(["sh", "-c", "command -v mosquitto_passwd"], capture_output=True, text=True).stdout.strip()
    shims = tmp_path / "bin"
    shims.mkdir()
    recorded = tmp_path / "argv"
    (shims / "mosquitto_passwd").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> {recorded}\nexec {real} "$@"\n')
    (shims / "mosquitto_passwd").chmod(0o755)
    with moto_server(SETTINGS.region) as aws:
        environment = run_environment(aws)
        environment["PATH"] = f"{shims}:{environment['PATH']}"
        run = subprocess.run(
            [*WIS2NODE, "publisher-credential", node_config(node)],
            capture_output=True,
            text=True,
            env=environment,
            timeout=60,
            cwd=ROOT,
        )
        assert run.returncode == 0, run.stderr
        password = client("ssm", aws).get_parameter(
            Name=SETTINGS.parameter_name("publisher-password"), WithDecryption=True
        )["Parameter"]["Value"]
    arguments = recorded.read_text()
    assert PUBLISHER_USER in arguments and password not in arguments
    node.broker.send_signal(1)
    time.sleep(0.5)
    writer = Client(node, PUBLISHER_USER, password)
    assert writer.ok
    writer.close()
