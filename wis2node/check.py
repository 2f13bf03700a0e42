"""Offline checks of stack files: the program's own settings model, plus what spans stacks."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from wis2node.metadata import load_records
from wis2node.payload import DeployFacts, render_user_data
from wis2node.settings import NodeSettings, SettingsError
from wis2node.stackfile import StackFile


@dataclass
class CheckResult:
    """Per stack: its settings when valid; overall: every problem, each naming its key."""

    settings: dict[str, NodeSettings] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_stacks(stack_files: list[StackFile]) -> CheckResult:
    result = CheckResult()
    for stack_file in stack_files:
        try:
            settings = stack_file.settings()
            render_user_data(settings, DeployFacts(data_volume_id="vol-0123456789abcdef0"))
            load_records(settings)  # the stack's discovery metadata, as the preview checks it
        except SettingsError as err:
            result.problems.append(str(err))
            continue
        except ValueError as err:  # the payload refused (e.g. over EC2's user-data limit)
            result.problems.append(f"stack {stack_file.stack}: {err}")
            continue
        result.settings[stack_file.stack] = settings
    by_fqdn: dict[str, list[str]] = defaultdict(list)
    for stack, settings in result.settings.items():
        by_fqdn[settings.fqdn].append(stack)
    for fqdn, stacks in sorted(by_fqdn.items()):
        if len(stacks) > 1:
            result.problems.append(f"wis2-node:fqdn = {fqdn!r} is used by stacks {', '.join(stacks)}: expected "
                                   "one name per node (a test and a production node never share one)")
    return result


def summary(settings: NodeSettings) -> list[str]:
    """A few lines a reviewer reads to know what the stack deploys."""
    rules = settings.ingress_rules()
    sources = {port: sorted({r.cidr for r in rules if r.port == port}) for port in (8883, 443)}
    lines = [
        f"{settings.stack}: {settings.centre_id} ({settings.environment}) at {settings.fqdn}",
        f"  instance {settings.instance_type} in {settings.availability_zone}, TLS {settings.tls_mode}",
    ]
    for port, label in ((8883, "MQTTS"), (443, "HTTPS")):
        public = " INCLUDING THE WHOLE INTERNET" if "0.0.0.0/0" in sources[port] else ""
        lines.append(f"  {label} {port}: {len(sources[port])} sources{public}")
    return lines
