"""Stack files (stacks/Pulumi.<stack>.yaml) read offline, with the same model as the program."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wis2node.settings import PROJECT, NodeSettings, SettingsError

ROOT = Path(__file__).resolve().parent.parent
STACKS = ROOT / "stacks"
# Keys outside the project's namespace that the settings read; other providers' keys pass by.
OTHER_KEYS = {k for k in NodeSettings.config_keys() if not k.startswith(f"{PROJECT}:")}
# Names reserved for documentation and testing (RFC 2606, RFC 6761): nobody can run a node there.
RESERVED_DOMAINS = ("example", "example.com", "example.net", "example.org", "test", "invalid", "localhost")


def is_reserved_domain(name: str) -> bool:
    """True for a DNS name inside a domain reserved for examples and tests."""
    name = name.lower().rstrip(".")
    return any(name == domain or name.endswith("." + domain) for domain in RESERVED_DOMAINS)


@dataclass(frozen=True)
class StackFile:
    """One stack's file: its name and its config section as written (full keys)."""

    stack: str
    path: Path
    config: dict[str, Any]

    def settings(self) -> NodeSettings:
        """Validate the stack as `pulumi preview` would (and also refuse misspelt project keys)."""
        own = {k: v for k, v in self.config.items() if k.startswith(f"{PROJECT}:") or k in OTHER_KEYS}
        return NodeSettings.from_config(self.stack, own)

    @property
    def is_example(self) -> bool:
        """An example stack (its hosted zone is a reserved example domain): tested, never deployed."""
        return is_reserved_domain(str(self.config.get(f"{PROJECT}:hostedZone", "")))


def stack_files(directory: Path = STACKS) -> list[StackFile]:
    """Every stack file in the stacks directory, sorted by stack name."""
    return [read_stack_file(path) for path in sorted(directory.glob("Pulumi.*.yaml"))]


def read_stack_file(path: Path) -> StackFile:
    stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise SettingsError(f"stack {stack}: {path.name} has no config map")
    return StackFile(stack=stack, path=path, config=config)


def find_stack(name_or_path: str) -> StackFile:
    """A stack by name (stacks/Pulumi.<name>.yaml) or by path to its file."""
    path = Path(name_or_path)
    if not path.is_file():
        path = STACKS / f"Pulumi.{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(s.stack for s in stack_files()) or "none"
        raise SettingsError(f"no stack file for '{name_or_path}'; stacks here: {known}")
    return read_stack_file(path)
