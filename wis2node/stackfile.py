"""Stack files (stacks/Pulumi.<stack>.yaml) read offline, with the same model as the program."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wis2node.settings import PROJECT, NodeSettings, SettingsError

ROOT = Path(__file__).resolve().parent.parent
STACKS = ROOT / "stacks"
# Keys outside the project's namespace that the settings read; other providers' keys pass by.
OTHER_KEYS = {k for k in NodeSettings.config_keys() if not k.startswith(f"{PROJECT}:")}
# Namespaces a stack file may use: the project's own, and the providers' the program runs with.
NAMESPACES = (PROJECT, "aws", "tls", "pulumi")
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
        misplaced = [namespace_problem(k) for k in self.config if namespace_problem(k)]
        if misplaced:
            raise SettingsError(f"stack {self.stack}: invalid configuration\n  " + "\n  ".join(misplaced))
        own = {k: v for k, v in self.config.items() if k.startswith(f"{PROJECT}:") or k in OTHER_KEYS}
        return NodeSettings.from_config(self.stack, own)

    @property
    def is_example(self) -> bool:
        """An example stack (its hosted zone is a reserved example domain): tested, never deployed."""
        return is_reserved_domain(str(self.config.get(f"{PROJECT}:hostedZone", "")))


def namespace_problem(config_key: str) -> str:
    """Why a key would be ignored (no namespace, or one nothing reads), or "" when it is read."""
    settings_keys = [k.split(":", 1)[1] for k in NodeSettings.config_keys() if k.startswith(f"{PROJECT}:")]
    if ":" not in str(config_key):
        return f"{config_key} has no namespace, so nothing reads it; expected {PROJECT}:{config_key}" + (
            "" if config_key in settings_keys else " (and a setting of this project)"
        )
    namespace, name = str(config_key).split(":", 1)
    if namespace in NAMESPACES:
        return ""
    guess = difflib.get_close_matches(namespace, NAMESPACES, n=1, cutoff=0.6)
    hint = f"; did you mean {guess[0]}:{name}?" if guess else ""
    return (
        f"{config_key}: namespace '{namespace}' is read by nothing here (expected one of "
        f"{', '.join(n + ':' for n in NAMESPACES)}){hint}"
    )


def stack_files(directory: Path = STACKS) -> list[StackFile]:
    """Every stack file in the stacks directory, sorted by stack name."""
    return [read_stack_file(path) for path in sorted(directory.glob("Pulumi.*.yaml"))]


def read_stack_file(path: Path) -> StackFile:
    stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        what = " ".join(str(part) for part in (getattr(err, "context", None), getattr(err, "problem", None)) if part)
        raise SettingsError(f"{where}: not valid YAML: {what or err}") from None
    if not isinstance(document, dict):
        raise SettingsError(f"{path}: expected a YAML map with a config: section")
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
