"""The alarms every node has: the monitoring component declares them, `verify` expects them."""

# In the stack's region.
NODE_ALARMS = ("cpu-high", "memory-high", "disk-root-high", "disk-data-high", "system-check-failed",
               "instance-check-failed", "heartbeat-missing", "broker-down", "web-down", "agent-down",
               "certificate-https-expiring", "certificate-mqtts-expiring",
               # what WIS2 says about the node (wis2node/watcher.py)
               "wis2-events", "wis2-relay-low")
# In us-east-1, where Route53 publishes health-check metrics.
HEALTH_CHECK_ALARMS = ("https-unreachable", "mqtts-unreachable")
HEALTH_CHECK_REGION = "us-east-1"


def alarm_name(stack: str, label: str) -> str:
    return f"{stack}-{label}"
