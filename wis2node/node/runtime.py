"""Apply, on the node, what changed in place: `python -m wis2node.node apply-config [node.json]`.

Run by wis2-config.timer every minute (and once at boot, before the agent). Two sources, both
SSM parameters of the stack:

- the runtime configuration (`/wis2-node/<stack>/runtime-config`, JSON, written by `pulumi up`):
  validated, written to the runtime file (nodeconfig.RUNTIME_KEYS), and only what changed is
  reloaded (the agent restarted for a new file size limit; certbot's ACME account for a new
  address; nothing for the retention, whose timer reads it at each run); the reboot time of
  unattended-upgrades goes into its own apt configuration file (node.json's upgrades.apt_file),
  rewritten whenever it differs, first boot included;
- the publisher password (SecureString, changed by `python -m wis2node rotate-publisher-password`):
  when its version differs from the one applied, the broker's password file gets it and
  mosquitto re-reads its accounts (SIGHUP: connected clients stay connected).

Node-side: standard library and boto3 only. Runs as root (the broker's password file).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from wis2node.node.certificate import certbot_state
from wis2node.node.nodeconfig import CONFIG_PATH, RUNTIME_KEYS, NodeConfig, load_config

EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")
TIME_OF_DAY = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
MAX_FILE_BYTES = 5 * 1024**3  # an S3 single PUT's limit
# The apt configuration file the reboot time goes into (the template is the file it becomes).
APT_REBOOT_TEMPLATE = os.path.join(
    os.path.dirname(__file__), "templates", "etc", "apt", "apt.conf.d", "53wis2-reboot-time"
)


def validate(document: Any) -> dict[str, dict[str, Any]]:
    """The runtime document as the node accepts it, or ValueError naming the key and what is expected."""
    if not isinstance(document, dict):
        raise ValueError("expected a JSON object with sections " + ", ".join(sorted({s for s, _ in RUNTIME_KEYS})))
    known: dict[str, set[str]] = {}
    for section, name in RUNTIME_KEYS:
        known.setdefault(section, set()).add(name)
    for section, values in document.items():
        if section not in known or not isinstance(values, dict):
            raise ValueError(f"{section}: unknown section (expected {', '.join(sorted(known))})")
        for name in values:
            if name not in known[section]:
                raise ValueError(f"{section}.{name}: unknown key (expected {', '.join(sorted(known[section]))})")
    missing = [f"{s}.{n}" for s, n in RUNTIME_KEYS if n not in document.get(s, {})]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    days = document["publishing"]["retention_days"]
    if type(days) is not int or not 1 <= days <= 3650:
        raise ValueError(f"publishing.retention_days: {days!r}, expected a whole number of days 1..3650")
    size = document["publishing"]["max_file_bytes"]
    if type(size) is not int or not 1 <= size <= MAX_FILE_BYTES:
        raise ValueError(f"publishing.max_file_bytes: {size!r}, expected a whole number 1..{MAX_FILE_BYTES}")
    email = document["tls"]["letsencrypt_email"]
    if email is not None and (not isinstance(email, str) or not EMAIL.match(email)):
        raise ValueError(f"tls.letsencrypt_email: {email!r}, expected an e-mail address or null")
    alarm_days = document["monitoring"]["certificate_alarm_days"]
    if type(alarm_days) is not int or not 1 <= alarm_days <= 90:
        raise ValueError(f"monitoring.certificate_alarm_days: {alarm_days!r}, expected a whole number of days 1..90")
    reboot_time = document["upgrades"]["reboot_time"]
    if not isinstance(reboot_time, str) or not TIME_OF_DAY.match(reboot_time):
        raise ValueError(f"upgrades.reboot_time: {reboot_time!r}, expected a time of day HH:MM (UTC)")
    return document


def apt_reboot_config(reboot_time: str) -> str:
    """unattended-upgrades' reboot settings for a validated time of day, from their template."""
    with open(APT_REBOOT_TEMPLATE) as handle:
        template = handle.read()
    if "{{ reboot_time }}" not in template or not TIME_OF_DAY.match(reboot_time):
        raise ValueError(f"cannot write reboot time {reboot_time!r} into {APT_REBOOT_TEMPLATE}")
    return template.replace("{{ reboot_time }}", reboot_time)


def _write_text(path: str, text: str, mode: int) -> bool:
    """Write path atomically when its content differs; whether it was written."""
    try:
        with open(path) as handle:
            if handle.read() == text:
                return False
    except OSError:
        pass
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".wis2-")
    with os.fdopen(descriptor, "w") as out:
        out.write(text)
    os.chmod(temporary, mode)
    os.replace(temporary, path)  # readers see the old file or the new one, never half of one
    return True


def changed_keys(old: dict, new: dict) -> list[tuple[str, str]]:
    return [k for k in RUNTIME_KEYS if old.get(k[0], {}).get(k[1], object()) != new[k[0]][k[1]]]


def _write_json(path: str, value: dict, mode: int) -> None:
    _write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n", mode)


def _read_json(path: str) -> dict:
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def reload_broker(pid_file: str) -> None:
    """mosquitto re-reads its password file on SIGHUP (as `systemctl reload mosquitto` does)."""
    with open(pid_file) as handle:
        os.kill(int(handle.read().strip()), signal.SIGHUP)


def systemctl(*args: str) -> None:
    subprocess.run(["systemctl", *args], check=True)


def apply(node: NodeConfig, ssm, *, act: Callable[[str, NodeConfig], None] | None = None) -> list[str]:
    """Bring the node in line with the two parameters; return what was done, one line each."""
    from wis2node.node.credential import set_password

    runtime, broker = node.runtime, node.broker
    act = act or _act
    done: list[str] = []

    raw = ssm.get_parameter(Name=runtime.parameter)["Parameter"]["Value"]
    try:
        document = validate(json.loads(raw))
    except ValueError as err:  # keep what runs; say why
        raise SystemExit(f"wis2-config: {runtime.parameter} refused, keeping {runtime.file}: {err}") from err
    current = _read_json(runtime.file)
    changes = changed_keys(current, document)
    if changes:
        _write_json(runtime.file, document, 0o644)
        done.append(
            f"{runtime.file}: "
            + ", ".join(f"{s}.{n} {current.get(s, {}).get(n, '(unset)')!r} -> {document[s][n]!r}" for s, n in changes)
        )
        if current:  # at first boot nothing runs yet that would need a reload
            for action in dict.fromkeys(action for k in changes if (action := RUNTIME_KEYS[k])):
                act(action, dataclasses.replace(node, tls=dataclasses.replace(node.tls, **document["tls"])))
                done.append(f"applied: {action}")
    # Kept in line at every run, not only on a change: the first boot of a machine writes it, and
    # a hand edit is undone. unattended-upgrades reads it when it next runs: nothing to reload.
    apt_file = node.upgrades.apt_file
    if _write_text(apt_file, apt_reboot_config(document["upgrades"]["reboot_time"]), 0o644):
        done.append(f"{apt_file}: automatic reboots at {document['upgrades']['reboot_time']} UTC")

    state = _read_json(runtime.state)
    try:
        parameter = ssm.get_parameter(Name=broker.password_parameter, WithDecryption=True)["Parameter"]
    except ssm.exceptions.ParameterNotFound:  # the first boot creates it (publisher-credential)
        parameter = None
    if parameter is not None and parameter["Version"] != state.get("password_version"):
        set_password(broker.password_file, broker.publisher_user, parameter["Value"])
        reload_broker(broker.pid_file)
        _write_json(runtime.state, {**state, "password_version": parameter["Version"]}, 0o600)
        done.append(f"publisher password version {parameter['Version']} set; the broker re-read its accounts")
    return done


def _act(action: str, node: NodeConfig) -> None:
    if action == "restart-agent":
        systemctl("try-restart", "wis2-agent.service")
    elif action == "certbot-account":
        tls = node.tls
        account = os.path.join(tls.letsencrypt_dir, "accounts")
        if tls.mode != "letsencrypt" or not os.path.isdir(account) or not tls.letsencrypt_email:
            return  # no account yet: the next issuance registers with the new address
        subprocess.run(
            [
                "certbot",
                "update_account",
                "--non-interactive",
                "--email",
                tls.letsencrypt_email,
                *certbot_state(tls),
            ],
            check=True,
        )
    else:
        raise ValueError(f"unknown action {action}")


def main(config_path: str = CONFIG_PATH) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    config = load_config(config_path, needs=())
    try:
        done = apply(config, boto3.client("ssm", region_name=config.region))
    except (BotoCoreError, ClientError) as err:
        print(f"wis2-config: cannot read the node's parameters ({err}); keeping what runs, will retry", file=sys.stderr)
        return 75  # EX_TEMPFAIL
    for line in done or ["nothing changed"]:
        print(f"wis2-config: {line}")
    return 0
