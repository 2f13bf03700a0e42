"""The certificate and heartbeat reporter, against the local node's real certificate and moto."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time

import pytest
from cryptography import x509

from wis2node.local import LocalNode, free_port, write_certificate
from wis2node.localcloud import client, moto_server, run_environment
from wis2node.node.nodeconfig import load_config, parse
from wis2node.node.reporter import measurements
from wis2node.stackfile import ROOT, find_stack

# Starts the node's daemons: not in the quick loop, `pytest -m "not slow"` (docs/DEVELOPING.md).
pytestmark = pytest.mark.slow

SETTINGS = find_stack("aq-examplemet-test").settings()


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with LocalNode(SETTINGS, tmp_path_factory.mktemp("node")) as running:
        yield running


def expected_days(node: LocalNode) -> float:
    leaf = x509.load_pem_x509_certificates((node.tls_dir / "fullchain.pem").read_bytes())[0]
    return (leaf.not_valid_after_utc - datetime.datetime.now(datetime.UTC)).total_seconds() / 86400


def test_days_left_are_those_of_the_served_certificate(node):
    config = load_config(str(node.path("/etc/wis2/node.json")), needs=())
    found = measurements(config)
    assert set(found) == {"https", "mqtts"}
    for days in found.values():
        assert abs(days - expected_days(node)) < 0.01
    write_certificate(node.tls_dir, SETTINGS.fqdn, days=10)  # a certificate about to expire, served...
    subprocess.run(
        [str(node.path("/usr/local/sbin/wis2-install-certificate"))],
        check=True,
        env={"RENEWED_LINEAGE": str(node.tls_dir), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        capture_output=True,
    )
    time.sleep(1)
    for days in measurements(config).values():
        assert 9.9 < days <= 10


def test_the_reporter_puts_days_left_and_a_heartbeat(node):
    with moto_server(SETTINGS.region) as aws:
        run = subprocess.run(
            [sys.executable, "-m", "wis2node", "reporter", str(node.path("/etc/wis2/node.json"))],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=run_environment(aws),
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        metrics = client("cloudwatch", aws).list_metrics(Namespace="WIS2Node")["Metrics"]
    found = {(m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"]))) for m in metrics}
    stack = ("Stack", SETTINGS.stack)
    # (CertificateRenewalFailed too where systemd can say: on the VM, not here)
    assert found - {("CertificateRenewalFailed", (stack,))} == {
        ("Heartbeat", (stack,)),
        *(
            (name, (("Endpoint", endpoint), stack))
            for name in ("CertificateDaysLeft", "CertificateRenewalOverdue")
            for endpoint in ("https", "mqtts")
        ),
    }


def test_a_port_without_a_server_is_reported_by_omission(node):
    config = json.loads(node.path("/etc/wis2/node.json").read_text())
    config["monitoring"]["mqtts_port"] = free_port()  # nothing listens: no figure (the alarm treats it as breaching)
    assert set(measurements(parse(config))) == {"https"}


# -- renewal overdue, relative to the certificate's lifetime (issue 13.6) ---------------------------


def install(node: LocalNode, days: int, age_days: float) -> None:
    """Serve a certificate valid `days` in all, issued `age_days` ago, as the deploy hook installs one."""
    write_certificate(node.tls_dir, SETTINGS.fqdn, days=days, age_days=age_days)
    subprocess.run(
        [str(node.path("/usr/local/sbin/wis2-install-certificate"))],
        check=True,
        env={"RENEWED_LINEAGE": str(node.tls_dir), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        capture_output=True,
    )
    time.sleep(1)


def fake_systemctl(directory, monkeypatch, *results: str) -> None:
    """systemd's answer to `systemctl show --property=Result --value <units>` (no systemd here)."""
    directory.mkdir(exist_ok=True)
    script = directory / "systemctl"
    script.write_text("#!/bin/sh\nprintf '" + "\\n".join(results) + "\\n'\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{directory}:{os.environ['PATH']}")


def reported(cloudwatch, name: str, **dimensions: str) -> float:
    found = cloudwatch.get_metric_statistics(
        Namespace="WIS2Node",
        MetricName=name,
        Statistics=["Maximum"],
        Period=60,
        StartTime=datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=10),
        EndTime=datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=1),
        Dimensions=[
            {"Name": "Stack", "Value": SETTINGS.stack},
            *({"Name": k, "Value": v} for k, v in dimensions.items()),
        ],
    )["Datapoints"]
    assert len(found) == 1, found
    return found[0]["Maximum"]


# lifetime, days since issuance, overdue? certbot renews with a third of the lifetime left: a healthy
# cycle never reaches the threshold (a quarter, or certificateAlarmDays=21 if lower).
RENEWAL_CASES = [
    pytest.param(45, 31, False, id="45-day-renewal-due-not-overdue"),  # 14 left: a fixed 21 days fired here
    pytest.param(45, 35, True, id="45-day-10-left"),  # under 11.25
    pytest.param(64, 47, False, id="64-day-17-left"),
    pytest.param(64, 49, True, id="64-day-15-left"),  # under 16
    pytest.param(90, 60, False, id="90-day-30-left"),
    pytest.param(90, 70, True, id="90-day-20-left"),  # under 21 (a quarter is 22.5)
    pytest.param(200, 140, False, id="200-day-60-left"),
    pytest.param(200, 180, True, id="200-day-20-left"),  # under 21 (a quarter is 50)
]


@pytest.mark.parametrize("days,age,overdue", RENEWAL_CASES)
def test_renewal_overdue_is_relative_to_the_lifetime(node, tmp_path, monkeypatch, days, age, overdue):
    from wis2node.node.reporter import report

    install(node, days, age)
    fake_systemctl(tmp_path / "bin", monkeypatch, "success", "success")
    config = load_config(str(node.path("/etc/wis2/node.json")), needs=(("monitoring", "certificate_alarm_days"),))
    assert config.monitoring.certificate_alarm_days == SETTINGS.certificate_alarm_days == 21
    with moto_server(SETTINGS.region) as aws:
        cloudwatch = client("cloudwatch", aws)
        report(config, cloudwatch)
        for endpoint in ("https", "mqtts"):
            # the alarm (components/monitoring.py): Maximum >= 1 over an hour
            assert reported(cloudwatch, "CertificateRenewalOverdue", Endpoint=endpoint) == (1.0 if overdue else 0.0)
            assert abs(reported(cloudwatch, "CertificateDaysLeft", Endpoint=endpoint) - (days - age)) < 0.1
        assert reported(cloudwatch, "CertificateRenewalFailed") == 0.0


def test_a_failed_renewal_attempt_is_reported(node, tmp_path, monkeypatch):
    from wis2node.node.reporter import report

    install(node, 90, 1)  # a fresh certificate: only the failed attempt is wrong
    fake_systemctl(tmp_path / "bin", monkeypatch, "exit-code", "success")  # certbot.service failed
    config = json.loads(node.path("/etc/wis2/node.json").read_text())
    config["tls"] = {**config.get("tls", {}), "mode": "letsencrypt"}
    with moto_server(SETTINGS.region) as aws:
        cloudwatch = client("cloudwatch", aws)
        report(parse(config), cloudwatch)
        assert reported(cloudwatch, "CertificateRenewalFailed") == 1.0
        assert reported(cloudwatch, "CertificateRenewalOverdue", Endpoint="https") == 0.0
