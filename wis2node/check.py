"""Offline checks of stack files: the program's own settings model, plus what spans stacks."""

from __future__ import annotations

import difflib
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache

from wis2node.cost import one_line
from wis2node.metadata import load_records, metadata_dir
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
            records = load_records(settings)  # the stack's discovery metadata, as the preview checks it
        except SettingsError as err:
            if str(err) not in result.problems:  # e.g. missing bundles: said once, not per stack
                result.problems.append(str(err))
            continue
        except ValueError as err:  # the payload refused (e.g. over EC2's user-data limit)
            result.problems.append(f"stack {stack_file.stack}: {err}")
            continue
        result.settings[stack_file.stack] = settings
        result.problems.extend(f"stack {stack_file.stack}: {p}" for p in settings.open_data_problems(records))
        if not records:
            result.problems.append(
                f"stack {stack_file.stack}: no discovery metadata record in {metadata_dir(stack_file.stack)}/: "
                "expected one WCMP2 record (.json) per dataset the node publishes, e.g. a copy of "
                "stacks/aq-examplemet-test/metadata/surface-based-observations-synop.json edited for your data"
            )
        unknown = _unknown_instance_type(settings.instance_type)
        if unknown:
            result.problems.append(f"stack {stack_file.stack}: {unknown}")
    by_fqdn: dict[str, list[str]] = defaultdict(list)
    for stack, settings in result.settings.items():
        by_fqdn[settings.fqdn].append(stack)
    for fqdn, stacks in sorted(by_fqdn.items()):
        if len(stacks) > 1:
            result.problems.append(
                f"wis2-node:fqdn = {fqdn!r} is used by stacks {', '.join(stacks)}: expected "
                "one name per node (a test and a production node never share one)"
            )
    return result


@lru_cache(maxsize=1)
def known_instance_types() -> frozenset[str]:
    """Every EC2 instance type pulumi-aws knows (its InstanceType enum, updated with each release)."""
    from pulumi_aws.ec2 import InstanceType

    return frozenset(member.value for member in InstanceType)


def _unknown_instance_type(instance_type: str) -> str:
    """Offline: a type pulumi-aws has never heard of is a typo (preview asks AWS for the region)."""
    if instance_type in known_instance_types():
        return ""
    guess = difflib.get_close_matches(instance_type, sorted(known_instance_types()), n=3)
    return f"wis2-node:instanceType = {instance_type!r}: expected an EC2 instance type" + (
        f", e.g. {' or '.join(guess)}" if guess else ", e.g. t4g.small (arm64) or t3.small (x86_64)"
    )


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
    lines.append(one_line(settings))
    return lines
