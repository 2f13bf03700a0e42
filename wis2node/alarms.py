"""The alarms every node has: the monitoring component declares them, `verify` expects them."""

# In the stack's region.
NODE_ALARMS = (
    "cpu-high",
    "memory-high",
    "disk-root-high",
    "disk-data-high",
    "system-check-failed",
    "instance-check-failed",
    "heartbeat-missing",
    "units-failing",
    "broker-down",
    "web-down",
    "agent-down",
    "certificate-https-expiring",
    "certificate-mqtts-expiring",
    "certificate-renewal-failed",
    # what WIS2 says about the node (wis2node/node/watcher.py)
    "wis2-events",
    "wis2-relay-low",
    "wis2-watcher-disconnected",
)
# In us-east-1, where Route53 publishes health-check metrics.
HEALTH_CHECK_ALARMS = ("https-unreachable", "mqtts-unreachable")
HEALTH_CHECK_REGION = "us-east-1"


def alarm_name(stack: str, label: str) -> str:
    return f"{stack}-{label}"


# Each alarm's description ends with its section of the README's runbook.
RUNBOOK = "README.md"


def runbook_anchor(label: str) -> str:
    """The README heading "#### Alarm <label>", as GitHub anchors it."""
    return f"alarm-{label}"


def with_runbook(description: str, label: str) -> str:
    return f"{description.rstrip('.')}. Runbook: {RUNBOOK}#{runbook_anchor(label)}"
