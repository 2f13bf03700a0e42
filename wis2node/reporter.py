"""What the node tells CloudWatch every few minutes: days left on the certificates it serves, how
many of the node's units are failing (failed, inactive, or waiting to restart after a failure), and
a heartbeat. A missing heartbeat means the node cannot reach AWS: its alarm treats it as breaching.

    python -m wis2node reporter [/etc/wis2/node.json]
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import subprocess
import sys

from wis2node.tls import days_left

LOG = logging.getLogger("wis2node.reporter")


def served_certificate(port: int, fqdn: str, host: str = "127.0.0.1") -> bytes:
    """The DER certificate actually served on a port, as a client asking for the FQDN gets it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # measure what is served, trusted yet or not
    with socket.create_connection((host, port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=fqdn) as tls:
        return tls.getpeercert(binary_form=True)


def measurements(config: dict) -> dict[str, float]:
    """Days left per served port ('443' and '8883' on the VM); unreachable ports are skipped."""
    monitoring = config["monitoring"]
    found = {}
    for label, port in (("https", monitoring["https_port"]), ("mqtts", monitoring["mqtts_port"])):
        try:
            found[label] = days_left(served_certificate(int(port), config["fqdn"]))
        except (OSError, ssl.SSLError) as err:
            LOG.error("no certificate on port %s: %s", port, err)
    return found


def failing_units(units: list[str]) -> list[str]:
    """The units, of those given, that are failed, inactive or in auto-restart, as systemd sees them."""
    if not units:
        return []
    shown = subprocess.run(["systemctl", "show", "--property=Id,ActiveState,SubState", "--", *units],
                           capture_output=True, text=True, timeout=60)
    failing = []
    for block in shown.stdout.strip().split("\n\n"):
        state = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if state.get("ActiveState") in ("failed", "inactive") or state.get("SubState") == "auto-restart":
            failing.append(f"{state.get('Id')} ({state.get('ActiveState')}/{state.get('SubState')})")
    if shown.returncode != 0 and not failing:
        LOG.error("systemctl show failed: %s", shown.stderr.strip())
    return failing


def report(config: dict, cloudwatch) -> list[dict]:
    """Put the certificate days left and a heartbeat; return the datapoints sent."""
    dimensions = [{"Name": "Stack", "Value": config["stack"]}]
    data = [{"MetricName": "Heartbeat", "Dimensions": dimensions, "Value": 1.0, "Unit": "Count"}]
    if "units" in config:
        failing = failing_units(config["units"])
        for unit in failing:
            LOG.error("unit failing: %s; see journalctl -u %s", unit, unit.split()[0])
        data.append({"MetricName": "UnitsFailing", "Dimensions": dimensions, "Value": float(len(failing)),
                     "Unit": "Count"})
    for label, days in measurements(config).items():
        data.append({"MetricName": "CertificateDaysLeft", "Value": round(days, 2), "Unit": "None",
                     "Dimensions": dimensions + [{"Name": "Endpoint", "Value": label}]})
    cloudwatch.put_metric_data(Namespace=config["monitoring"]["namespace"], MetricData=data)
    return data


def main(config_path: str = "/etc/wis2/node.json") -> int:
    import boto3

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    with open(config_path) as handle:
        config = json.load(handle)
    sent = report(config, boto3.client("cloudwatch", region_name=config["region"]))
    for datapoint in sent:
        LOG.info("%s %s", datapoint["MetricName"], datapoint["Value"])
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
