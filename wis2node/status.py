"""The node in one screen: `python -m wis2node status --stack STACK`.

What `verify` checks (AWS, and the node's endpoints unless --no-network), condensed: the failures
in full, the passing checks by name; then what an operator looks at next: the queues (files
waiting, events refused), the latest snapshot, the publisher password's version, and WIS2 as the
node's watcher reported it (the Global Brokers it hears and that relay the node, the latest alert;
verify's WIS2 section also asks the Global Services themselves). Read-only.
Exit status 1 when a check fails.
"""

from __future__ import annotations

import datetime

from wis2node.settings import NodeSettings
from wis2node.verify import STACK_TAG, Check, Endpoints, Verifier
from wis2node.verify_wis2 import Wis2Options


def _age(when: datetime.datetime, now: datetime.datetime) -> str:
    seconds = max(0, int((now - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return "just now"


def facts(settings: NodeSettings, session, now: datetime.datetime | None = None) -> list[tuple[str, str]]:
    """(label, text) for the queues, the latest snapshot and the publisher password; best effort."""
    from botocore.exceptions import BotoCoreError, ClientError

    now = now or datetime.datetime.now(datetime.UTC)
    lines: list[tuple[str, str]] = []
    try:
        sqs = session.client("sqs")
        depth = {}
        for label, queue in (("ingest", settings.ingest_queue), ("dead letters", settings.dead_letter_queue)):
            url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
            attributes = sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
            )["Attributes"]
            depth[label] = int(attributes["ApproximateNumberOfMessages"]) + int(
                attributes["ApproximateNumberOfMessagesNotVisible"]
            )
        text = f"{depth['ingest']} events waiting or in progress, {depth['dead letters']} refused"
        if depth["dead letters"]:
            text += f" (python -m wis2node dead-letters list --stack {settings.stack})"
        lines.append(("queues", text))
    except (BotoCoreError, ClientError) as err:
        lines.append(("queues", f"cannot read: {err}"))
    try:
        snapshots = session.client("ec2").describe_snapshots(
            OwnerIds=["self"], Filters=[{"Name": f"tag:{STACK_TAG}", "Values": [settings.stack]}]
        )["Snapshots"]
        done = sorted((s for s in snapshots if s.get("State") == "completed"), key=lambda s: s["StartTime"])
        lines.append(
            (
                "snapshots",
                f"{len(done)} kept, latest {done[-1]['SnapshotId']} taken {_age(done[-1]['StartTime'], now)}"
                if done
                else "none yet (the first is taken at 02:00 UTC after deployment)",
            )
        )
    except (BotoCoreError, ClientError) as err:
        lines.append(("snapshots", f"cannot read: {err}"))
    try:
        name = settings.parameter_name("publisher-password")
        found = session.client("ssm").describe_parameters(
            ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [name]}]
        )["Parameters"]
        lines.append(
            (
                "publisher",
                f"password version {found[0]['Version']}, set {_age(found[0]['LastModifiedDate'], now)}"
                if found
                else f"no password yet in {name} (the node makes it at first boot)",
            )
        )
    except (BotoCoreError, ClientError) as err:
        lines.append(("publisher", f"cannot read: {err}"))
    return lines


def status(settings: NodeSettings, endpoints: Endpoints | None, session=None) -> tuple[bool, str]:
    verifier = Verifier(settings, session)
    verifier.run_aws()
    if endpoints is not None:
        verifier.run_network(endpoints)
    if not any(c.name == "aws-credentials" for c in verifier.checks):
        verifier.run_wis2(Wis2Options(live=False))  # what the node's watcher reported: AWS only, fast
    checks: list[Check] = verifier.checks
    failed = [c for c in checks if not c.ok]
    passed = list(dict.fromkeys(c.name for c in checks if c.ok and c.name not in {f.name for f in failed}))
    width = 12
    lines = [f"{settings.stack}: {settings.fqdn} ({settings.region}, {settings.environment})"]
    instance = next((c for c in checks if c.name == "instance"), None)
    if instance is not None:
        lines.append(f"  {'instance':{width}} {instance.detail}")
    for check in checks:
        if check.name.startswith("certificate-") and check.ok:
            lines.append(f"  {check.name:{width}} {check.detail}")
    if not any(c.name == "aws-credentials" for c in failed):
        lines += [f"  {label:{width}} {text}" for label, text in facts(settings, verifier.session)]
    for name, label in (
        ("wis2-watcher", "wis2 watcher"),
        ("wis2-relay", "wis2 relays"),
        ("wis2-alerts", "wis2 alerts"),
    ):
        shown = next((c for c in checks if c.name == name and c.ok), None)  # failures have their FAIL line
        if shown is not None:
            lines.append(f"  {label:{width}} {shown.detail}")
    lines.append(
        f"  {'checks':{width}} {len(checks) - len(failed)} of {len(checks)} pass"
        + (f": {', '.join(passed)}" if passed else "")
    )
    skipped = [c.name for c in failed if c.detail.startswith("not checked")]
    by_name: dict[str, list[Check]] = {}
    for check in failed:
        if check.name not in skipped:
            by_name.setdefault(check.name, []).append(check)
    for name, found in by_name.items():  # one line a check: the first detail, and how many more
        more = f" (and {len(found) - 1} more like it)" if len(found) > 1 else ""
        lines.append(f"  FAIL {name}: {found[0].detail}{more}")
    if skipped:
        lines.append(f"  not checked (no instance): {', '.join(skipped)}")
    if failed:
        lines.append(f'  details: python -m wis2node verify --stack {settings.stack}; runbook: README, "Runbook"')
    return not failed, "\n".join(lines)
