"""The node's configuration as its tools read it: node.json, completed by the runtime file.

node.json comes with the machine (user data): what needs a new machine to change. The runtime
file (/etc/wis2/runtime.json) holds what can change in place; the node's `apply-config` tool
writes it from the stack's SSM parameter (wis2node/node/runtime.py). The rendered node.json never
carries a runtime key; a key written in node.json by hand wins over the runtime file.
Node-side: standard library only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass
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


# The contract between the renderer (wis2node/payload/templates/etc/wis2/node.json) and every tool
# of the node: one dataclass per section, a field per key. Optional fields are the runtime keys
# (filled from the runtime file) and the overrides a local or test node may set; every other key
# must be there, and no other key may.


@dataclass(frozen=True)
class Monitoring:
    namespace: str
    https_port: int
    mqtts_port: int
    certificate_alarm_days: float | None = None  # runtime


@dataclass(frozen=True)
class Publishing:
    bucket: str
    queue: str
    dead_letter_queue: str
    public_dir: str
    state_db: str
    package_key: str
    package_sha256: str
    retention_days: int | None = None  # runtime
    max_file_bytes: int | None = None  # runtime


@dataclass(frozen=True)
class Tls:
    mode: str
    acme_server: str | None
    letsencrypt_dir: str
    letsencrypt_work_dir: str
    letsencrypt_logs_dir: str
    key_parameter: str | None
    certificate_parameter: str | None
    installed_dir: str
    deploy_hook: str
    letsencrypt_email: str | None = None  # runtime


@dataclass(frozen=True)
class Runtime:
    parameter: str
    file: str
    state: str


@dataclass(frozen=True)
class Upgrades:
    apt_file: str
    reboot_time: str | None = None  # runtime


@dataclass(frozen=True)
class Logs:
    groups: dict[str, str]
    units: dict[str, str]
    cursor: str
    stream: str | None = None  # default: the instance id


@dataclass(frozen=True)
class Broker:
    publisher_user: str
    password_parameter: str
    password_file: str
    pid_file: str
    local_port: int


@dataclass(frozen=True)
class Wis2:
    state_dir: str
    alerts_topic_parameter: str
    # A local or test node's overrides; the VM takes the catalogue's and the defaults.
    brokers: list[dict[str, Any]] | None = None
    catalogues: list[dict[str, Any]] | None = None
    alerts_topic_arn: str | None = None
    interval: float | None = None
    relay_grace: float | None = None
    cache_grace: float | None = None


@dataclass(frozen=True)
class NodeConfig:
    stack: str
    centre_id: str
    fqdn: str
    region: str
    units: list[str]
    monitoring: Monitoring
    publishing: Publishing
    tls: Tls
    runtime: Runtime
    upgrades: Upgrades
    logs: Logs
    broker: Broker
    wis2: Wis2


def _check(value: Any, kind: Any, where: str) -> Any:
    """value as the type kind says, or ConfigError naming the key, the value and what is expected."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if dataclasses.is_dataclass(kind):
        return _section(value, kind, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _check(value, next(a for a in args if a is not type(None)), where)
    expected = origin or kind
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
        raise ConfigError(f"{where}: {value!r} is not a {getattr(expected, '__name__', expected)}")
    return value


def _section(document: Any, kind: Any, where: str) -> Any:
    if not isinstance(document, dict):
        raise ConfigError(f"{where or 'node.json'}: expected a JSON object, found {document!r}")
    fields = {f.name: f for f in dataclasses.fields(kind)}
    hints = typing.get_type_hints(kind)  # the annotations are strings (from __future__)
    prefix = f"{where}." if where else ""
    unknown = sorted(set(document) - set(fields))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (expected one of {', '.join(fields)})")
    values = {}
    for name, spec in fields.items():
        required = spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
        if name not in document:
            if required:
                raise ConfigError(f"{prefix}{name}: missing")
            continue
        values[name] = _check(document[name], hints[name], prefix + name)
    return kind(**values)


def parse(document: Any, source: str = "node.json") -> NodeConfig:
    """The typed node configuration, or ConfigError naming the file and the key that is wrong."""
    try:
        return _section(document, NodeConfig, "")
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def load(path: str = CONFIG_PATH, needs: tuple[tuple[str, str], ...] = tuple(RUNTIME_KEYS)) -> dict[str, Any]:
    """node.json with the runtime keys the tool needs filled in; ConfigError when one is missing."""
    with open(path) as handle:
        config = json.load(handle)
    parse(config, path)  # the contract holds, or the key that breaks it is named
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
    parse(config, f"{path} with {file}")
    return config


def load_config(path: str = CONFIG_PATH, needs: tuple[tuple[str, str], ...] = tuple(RUNTIME_KEYS)) -> NodeConfig:
    """node.json as its typed definition, the runtime keys the tool needs filled in."""
    return parse(load(path, needs), path)
