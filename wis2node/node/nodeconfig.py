"""The node's configuration as its tools read it: node.json, completed by the runtime file.

node.json comes with the machine (user data): what needs a new machine to change. The runtime
file (/etc/wis2/runtime.json) holds what can change in place; the node's `apply-config` tool
writes it from the stack's SSM parameter (wis2node/node/runtime.py). The rendered node.json never
carries a runtime key; a key written in node.json by hand wins over the runtime file.
Node-side: standard library only.
"""

from __future__ import annotations

import json
import os
from typing import Any

# The keys that can change without a new machine, by section of node.json, and what the node
# must do when one changes (wis2node/node/runtime.py): None is nothing, the next run reads it.
RUNTIME_KEYS: dict[tuple[str, str], str | None] = {
    ("publishing", "retention_days"): None,  # read by each run of wis2-retention
    ("publishing", "max_file_bytes"): "restart-agent",  # read when the agent starts
    ("tls", "letsencrypt_email"): "certbot-account",  # certbot's ACME account
    ("monitoring", "certificate_alarm_days"): None,  # read by each run of wis2-reporter
    # unattended-upgrades' reboot time: apply-config keeps upgrades.apt_file in line at every run,
    # and unattended-upgrades reads it when it runs.
    ("upgrades", "reboot_time"): None,
}


# Where the renderer puts node.json on the VM, and where every tool of the node reads it by default.
CONFIG_PATH = "/etc/wis2/node.json"


class ConfigError(Exception):
    """The node's configuration is incomplete or wrong; the message says what to do."""


def load(path: str = CONFIG_PATH, needs: tuple[tuple[str, str], ...] = tuple(RUNTIME_KEYS)) -> dict[str, Any]:
    """node.json with the runtime keys the tool needs filled in; ConfigError when one is missing."""
    with open(path) as handle:
        config = json.load(handle)
    runtime = config.get("runtime") or {}
    missing = [k for k in needs if k[1] not in config.get(k[0], {})]
    if not missing:
        return config
    file = runtime.get("file")
    if not file or not os.path.exists(file):
        raise ConfigError(
            f"{path}: {', '.join('.'.join(k) for k in missing)} not set and no runtime file "
            f"{file or '(none named)'}: the runtime configuration was never applied; "
            "run `systemctl start wis2-config.service` and see `journalctl -u wis2-config`"
        )
    with open(file) as handle:
        values = json.load(handle)
    for section, name in missing:
        if name not in values.get(section, {}):
            raise ConfigError(f"{file}: {section}.{name} missing; run `systemctl start wis2-config.service`")
        config.setdefault(section, {})[name] = values[section][name]
    return config
