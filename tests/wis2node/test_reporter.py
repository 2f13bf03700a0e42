"""The certificate and heartbeat reporter, against the local node's real certificate and moto."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import time

import pytest
from cryptography import x509

from wis2node.local import LocalNode, free_port, write_certificate
from wis2node.localcloud import client, moto_server, run_environment
from wis2node.reporter import measurements
from wis2node.stackfile import ROOT, find_stack

SETTINGS = find_stack("aq-examplemet-test").settings()


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with LocalNode(SETTINGS, tmp_path_factory.mktemp("node")) as running:
        yield running


def expected_days(node: LocalNode) -> float:
    leaf = x509.load_pem_x509_certificates((node.tls_dir / "fullchain.pem").read_bytes())[0]
    return (leaf.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)).total_seconds() / 86400


def test_days_left_are_those_of_the_served_certificate(node):
    config = json.loads(node.path("/etc/wis2/node.json").read_text())
    found = measurements(config)
    assert set(found) == {"https", "mqtts"}
    for days in found.values():
        assert abs(days - expected_days(node)) < 0.01
    write_certificate(node.tls_dir, SETTINGS.fqdn, days=10)  # a certificate about to expire, served...
    subprocess.run([str(node.path("/usr/local/sbin/wis2-install-certificate"))], check=True,
                   env={"RENEWED_LINEAGE": str(node.tls_dir), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                   capture_output=True)
    time.sleep(1)
    for days in measurements(config).values():
        assert 9.9 < days <= 10


def test_the_reporter_puts_days_left_and_a_heartbeat(node):
    with moto_server(SETTINGS.region) as aws:
        run = subprocess.run([sys.executable, "-m", "wis2node", "reporter", str(node.path("/etc/wis2/node.json"))],
                             cwd=ROOT, capture_output=True, text=True, env=run_environment(aws), timeout=60)
        assert run.returncode == 0, run.stderr
        metrics = client("cloudwatch", aws).list_metrics(Namespace="WIS2Node")["Metrics"]
    found = {(m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"]))) for m in metrics}
    stack = ("Stack", SETTINGS.stack)
    assert found == {("Heartbeat", (stack,)),
                     ("CertificateDaysLeft", (("Endpoint", "https"), stack)),
                     ("CertificateDaysLeft", (("Endpoint", "mqtts"), stack))}


def test_a_port_without_a_server_is_reported_by_omission(node):
    config = json.loads(node.path("/etc/wis2/node.json").read_text())
    config["monitoring"]["mqtts_port"] = free_port()  # nothing listens: no figure (the alarm treats it as breaching)
    assert set(measurements(config)) == {"https"}
