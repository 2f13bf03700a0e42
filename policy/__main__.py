"""CrossGuard policy pack: the WIS2 Node security recommendations, enforced at preview and up.

pulumi preview --policy-pack policy
"""

from collections.abc import Callable

import rules
from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)


def _resource_policy(rule: rules.Rule) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in rule.check(rules.Resource(args.resource_type, args.name, args.props)):
            report_violation(message, None)  # no URN: Pulumi names the resource (or stack) under validation

    return ResourceValidationPolicy(name=rule.name, description=rule.description, validate=validate)


def _stack_policy(
    name: str, description: str, check: Callable[[list[rules.Resource]], list[str]]
) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [rules.Resource(r.resource_type, r.name, r.props) for r in args.resources]
        for message in check(resources):
            report_violation(message, None)  # no URN: Pulumi names the resource (or stack) under validation

    return StackValidationPolicy(name=name, description=description, validate=validate)


PolicyPack(
    name="wis2-node-security",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[_resource_policy(rule) for rule in rules.RESOURCE_RULES]
    + [_stack_policy(*rule) for rule in rules.STACK_RULES],
)
