"""What the node tells CloudWatch every few minutes: days left on the certificates it serves, whether
their renewal is overdue, whether the last renewal attempt failed, how many of the node's units are
failing (failed, inactive, or waiting to restart after a failure), and a heartbeat. A missing
heartbeat means the node cannot reach AWS: its alarm treats it as breaching.

Certificates change pace (Let's Encrypt: 90 days, 64 from 2027, 45 from 2028; a bought one at most
200, then 100), so a fixed "fewer than N days left" would either fire on every healthy renewal of
a short certificate or wait too long on a long one. Renewal is overdue when less than a quarter of
the certificate's lifetime is left, or fewer than the stack's certificateAlarmDays, whichever is
lower: certbot renews with a third of the lifetime left, so a healthy cycle never gets there.

    python -m wis2node.node reporter [/etc/wis2/node.json]
"""

from __future__ import annotations

import datetime
import logging
import shutil
import socket
import ssl
import subprocess
import sys

from cryptography import x509

from wis2node.node.nodeconfig import CONFIG_PATH, NodeConfig
from wis2node.node.tls import days_left

DEFAULT_ALARM_DAYS = 21  # wis2-node:certificateAlarmDays' default (wis2node/settings.py)
# The units that renew the certificate: certbot's own (Let's Encrypt) and the node's (every mode).
RENEWAL_UNITS = {"letsencrypt": ("certbot.service", "wis2-certificate.service")}
DEFAULT_RENEWAL_UNITS = ("wis2-certificate.service",)

LOG = logging.getLogger("wis2node.node.reporter")


def served_certificate(port: int, fqdn: str, host: str = "127.0.0.1") -> bytes:
    """The DER certificate actually served on a port, as a client asking for the FQDN gets it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # measure what is served, trusted yet or not
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=fqdn) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if der is None:
        raise ssl.SSLError(f"no certificate served on port {port}")
    return der


def overdue_threshold(lifetime_days: float, alarm_days: float = DEFAULT_ALARM_DAYS) -> float:
    """Days left under which renewal is overdue: a quarter of the lifetime, or alarm_days if lower."""
    return min(lifetime_days / 4, alarm_days)


def renewal(
    der: bytes, alarm_days: float = DEFAULT_ALARM_DAYS, now: datetime.datetime | None = None
) -> tuple[float, float, bool]:
    """Days left, lifetime in days, and whether renewal is overdue, for a served certificate."""
    certificate = x509.load_der_x509_certificate(der)
    lifetime = (certificate.not_valid_after_utc - certificate.not_valid_before_utc).total_seconds() / 86400
    left = days_left(der, now)
    return left, lifetime, left < overdue_threshold(lifetime, alarm_days)


def renewal_failed(config: NodeConfig) -> bool | None:
    """Whether the last run of a renewal unit failed (systemd's Result); None where systemd cannot say."""
    systemctl = shutil.which("systemctl")
    if not systemctl:
        return None
    units = RENEWAL_UNITS.get(config.tls.mode, DEFAULT_RENEWAL_UNITS)
    try:
        run = subprocess.run(
            [systemctl, "show", "--property=Result", "--value", *units], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        LOG.error("cannot ask systemd about %s: %s", ", ".join(units), err)
        return None
    if run.returncode != 0:
        LOG.error("systemctl show %s: %s", " ".join(units), run.stderr.strip())
        return None
    results = [line.strip() for line in run.stdout.splitlines() if line.strip()]
    failed = [unit for unit, result in zip(units, results, strict=False) if result != "success"]
    if failed:
        LOG.error("renewal failed: %s (see journalctl -u %s)", ", ".join(failed), failed[0])
    return bool(failed)


def measurements(config: NodeConfig) -> dict[str, float]:
    """Days left per served port ('443' and '8883' on the VM); unreachable ports are skipped."""
    monitoring = config.monitoring
    found = {}
    for label, port in (("https", monitoring.https_port), ("mqtts", monitoring.mqtts_port)):
        try:
            found[label] = days_left(served_certificate(port, config.fqdn))
        except (OSError, ssl.SSLError) as err:
            LOG.error("no certificate on port %s: %s", port, err)
    return found


def failing_units(units: list[str]) -> list[str]:
    """The units, of those given, that failed, wait to restart after a failure, or stopped without success
    (a one-shot unit that ran and succeeded is inactive with Result=success: not failing)."""
    if not units:
        return []
    shown = subprocess.run(
        ["systemctl", "show", "--property=Id,ActiveState,SubState,Result", "--", *units],
        capture_output=True,
        text=True,
        timeout=60,
    )
    failing = []
    for block in shown.stdout.strip().split("\n\n"):
        state = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if (
            state.get("ActiveState") == "failed"
            or state.get("SubState") == "auto-restart"
            or (state.get("ActiveState") == "inactive" and state.get("Result", "success") != "success")
        ):
            failing.append(f"{state.get('Id')} ({state.get('ActiveState')}/{state.get('SubState')})")
    if shown.returncode != 0 or not shown.stdout.strip():
        raise OSError(f"systemctl show failed: {shown.stderr.strip()[:300]}")
    return failing


def served(config: NodeConfig) -> dict[str, bytes]:
    """The certificate served per port ('https', 'mqtts'); unreachable ports are skipped."""
    monitoring = config.monitoring
    found = {}
    for label, port in (("https", monitoring.https_port), ("mqtts", monitoring.mqtts_port)):
        try:
            found[label] = served_certificate(port, config.fqdn)
        except (OSError, ssl.SSLError) as err:
            LOG.error("no certificate on port %s: %s", port, err)
    return found


def report(config: NodeConfig, cloudwatch) -> list[dict]:
    """Put the certificates' days left and overdue renewals, a failed renewal, a heartbeat; return them."""
    dimensions = [{"Name": "Stack", "Value": config.stack}]
    data = [{"MetricName": "Heartbeat", "Dimensions": dimensions, "Value": 1.0, "Unit": "Count"}]
    if config.units:  # the VM's node.json lists them; a local node has none
        try:
            failing = failing_units(config.units)
        except OSError as err:  # no figure rather than a false zero
            LOG.error("units not counted: %s", err)
            failing = None
        for unit in failing or []:
            LOG.error("unit failing: %s; see journalctl -u %s", unit, unit.split()[0])
        if failing is not None:
            data.append(
                {"MetricName": "UnitsFailing", "Dimensions": dimensions, "Value": float(len(failing)), "Unit": "Count"}
            )
    alarm_days = config.monitoring.certificate_alarm_days
    if alarm_days is None:
        alarm_days = DEFAULT_ALARM_DAYS
    for label, der in served(config).items():
        left, lifetime, overdue = renewal(der, alarm_days)
        endpoint = dimensions + [{"Name": "Endpoint", "Value": label}]
        data.append(
            {"MetricName": "CertificateDaysLeft", "Value": round(left, 2), "Unit": "None", "Dimensions": endpoint}
        )
        data.append(
            {
                "MetricName": "CertificateRenewalOverdue",
                "Value": 1.0 if overdue else 0.0,
                "Unit": "Count",
                "Dimensions": endpoint,
            }
        )
        if overdue:
            LOG.error(
                "%s: certificate renewal overdue: %.1f of %.0f days left (renewed by %.1f)",
                label,
                left,
                lifetime,
                overdue_threshold(lifetime, alarm_days),
            )
    failed = renewal_failed(config)
    if failed is not None:
        data.append(
            {
                "MetricName": "CertificateRenewalFailed",
                "Value": 1.0 if failed else 0.0,
                "Unit": "Count",
                "Dimensions": dimensions,
            }
        )
    cloudwatch.put_metric_data(Namespace=config.monitoring.namespace, MetricData=data)
    return data


def main(config_path: str = CONFIG_PATH) -> int:
    import boto3

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from wis2node.node.nodeconfig import load_config

    config = load_config(config_path, needs=(("monitoring", "certificate_alarm_days"),))
    sent = report(config, boto3.client("cloudwatch", region_name=config.region))
    for datapoint in sent:
        LOG.info("%s %s", datapoint["MetricName"], datapoint["Value"])
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
