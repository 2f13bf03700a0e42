"""What a stack costs a month: what it deploys, counted, times the dated price table in the repository.

    python -m wis2node cost --stack S [--files-per-day N] [--mb-per-file MB] [--subscribers N]

The counts follow the program (components/), derived here from the settings so the estimate runs
offline in a second; tests/wis2node/test_cost.py runs the real program under Pulumi's mocks for every
example stack and fails if a count here differs from what it declares. Prices come from
wis2node/data/aws-prices.csv, each row with its source and the date it was read: provisional. A price
the table lacks is said on its own line and left out of the total, never guessed.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from wis2node.alarms import HEALTH_CHECK_REGION, NODE_ALARMS
from wis2node.errors import SettingsError
from wis2node.node.catalogue import global_services
from wis2node.settings import NodeSettings

PRICES_CSV = Path(__file__).parent / "data" / "aws-prices.csv"
HOURS_PER_MONTH = 730  # AWS's own monthly figure for an always-on resource
DAYS_PER_MONTH = HOURS_PER_MONTH / 24
ANY_REGION = "*"
# The agent long-polls the queue for one second at a time (wis2node/node/agent.py), so an idle node
# still asks SQS about once a second.
IDLE_RECEIVES_PER_MONTH = HOURS_PER_MONTH * 3600
SNS_FREE_EMAILS = 1000  # a month, per account (the source of the SNS price row)
SQS_FREE_REQUESTS = 1_000_000  # a month, per account (the source of the SQS price row)
# What one published file costs in requests: S3 -> SQS event, receive, delete (SQS); the centre's
# PUT and the node's GET (S3).
SQS_REQUESTS_PER_FILE = 3
# Route 53 health checks: the check against the node's name is billed as a non-AWS endpoint (the
# higher price: AWS counts an endpoint as its own only in cases it defines), HTTPS as an optional feature.
HEALTH_CHECK_OPTIONAL_FEATURES = {"HTTPS": 1, "TCP": 0}
HEALTH_CHECKS = ("HTTPS", "TCP")  # /healthz on 443, and 8883
# CPU, memory, two status checks, heartbeat, two disks, three processes, two certificates, a failed
# renewal, two WIS2; the two "unreachable" alarms live in us-east-1 with Route 53's health-check metrics.
ALARMS_IN_NODE_REGION = len(NODE_ALARMS)
# The endpoints the reporter measures (wis2node/node/reporter.py): CertificateDaysLeft and
# CertificateRenewalOverdue each, beside the Heartbeat, CertificateRenewalFailed and UnitsFailing.
REPORTED_ENDPOINTS = ("https", "mqtts")


@dataclass(frozen=True)
class Price:
    item: str
    region: str
    unit: str
    usd: float
    source: str
    read: str


@lru_cache(maxsize=1)
def price_table() -> dict[tuple[str, str], Price]:
    """The repository's price table, by (item, region)."""
    with PRICES_CSV.open(encoding="utf-8") as handle:
        rows = csv.DictReader(line for line in handle if not line.startswith("#"))
        return {
            (row["item"], row["region"]): Price(
                row["item"], row["region"], row["unit"], float(row["usd"]), row["source"], row["read"]
            )
            for row in rows
        }


def priced_regions() -> list[str]:
    """Regions the table can price a node in (those with EC2 prices)."""
    return sorted({p.region for p in price_table().values() if p.item.startswith("ec2:")})


def price(item: str, region: str) -> Price | None:
    """The region's price, else the one the source gives for every region, else None."""
    table = price_table()
    return table.get((item, region)) or table.get((item, ANY_REGION))


@dataclass(frozen=True)
class Assumptions:
    """The expected traffic, which only the centre knows: said in the output, changed by options."""

    files_per_day: int = 1000
    mb_per_file: float = 0.1
    subscribers: int = 0  # downloaders besides the Global Caches (partners, users)

    def __post_init__(self):
        if self.files_per_day < 0 or self.mb_per_file < 0 or self.subscribers < 0:
            raise SettingsError(f"cost assumptions {self}: expected numbers of zero or more")


@dataclass(frozen=True)
class Counts:
    """What the program declares for a stack, as far as it costs money."""

    instance_type: str
    root_volume_gb: int
    data_volume_gb: int
    volume_type: str
    public_ipv4: int
    health_checks: tuple[str, ...]  # their types
    alarms: dict[str, dict[str, int]]  # region -> {"standard": n, "high-resolution": n}
    custom_metrics: int
    dashboards: int
    topics: tuple[str, ...]  # their regions
    email_subscriptions: int
    snapshot_policies: int
    kms_keys: int
    buckets: int
    queues: int


def agent_metrics(settings: NodeSettings) -> int:
    """Metrics the CloudWatch agent puts, counted in the configuration the node is given."""
    from wis2node.payload import DeployFacts, render_files

    rendered = {f.path: f.content for f in render_files(settings, DeployFacts(data_volume_id="vol-0"))}
    collected = json.loads(rendered["/etc/wis2/cloudwatch-agent.json"])["metrics"]["metrics_collected"]
    count = 0
    for section in collected.values():
        for entry in section if isinstance(section, list) else [section]:
            # A metric per measurement and resource (drop_device: one per path, not per device).
            count += len(entry["measurement"]) * len(entry.get("resources", [None]))
    return count


def wis2_metrics() -> int:
    """Metrics the WIS2 watcher and the GDC check put all month: WIS2EventsAlarming and
    GlobalBrokersConnected every minute, BrokersRelaying, RelayLatency and CacheCopiedShare while the
    node publishes, four a Global Discovery Catalogue every day. WIS2Events (one a severity) only in
    the hours an event comes, billed pro rata: not counted."""
    from wis2node.node.watcher import catalogue

    return 2 + 3 + 4 * len(catalogue("global-discovery-catalogue"))


def declared(settings: NodeSettings) -> Counts:
    """The counts of what components/ declares for these settings (kept equal to it by the tests)."""
    region = settings.region
    alarm_regions: dict[str, dict[str, int]] = {}
    for alarm_region, number in ((region, ALARMS_IN_NODE_REGION), (HEALTH_CHECK_REGION, len(HEALTH_CHECKS))):
        kinds = alarm_regions.setdefault(alarm_region, {"standard": 0, "high-resolution": 0})
        kinds["standard"] += number  # every alarm's period is a minute or more
    topics = tuple(dict.fromkeys([region, HEALTH_CHECK_REGION]))
    return Counts(
        instance_type=settings.instance_type,
        root_volume_gb=settings.root_volume_gb,
        data_volume_gb=settings.data_volume_gb,
        volume_type="gp3",
        public_ipv4=1,
        health_checks=HEALTH_CHECKS,
        alarms=alarm_regions,
        custom_metrics=agent_metrics(settings) + 3 + 2 * len(REPORTED_ENDPOINTS) + wis2_metrics(),
        dashboards=1,
        topics=topics,
        email_subscriptions=len(topics) * len(settings.alert_emails),
        snapshot_policies=1,
        kms_keys=len(topics),  # each alert topic is encrypted with a key of its own region
        buckets=1,
        queues=2,
    )


def global_caches(settings: NodeSettings) -> int:
    """Global Caches that download every file (each operator's cache once), from the catalogue."""
    if not settings.global_services:
        return 0
    return len(
        {
            s.operator
            for s in global_services()
            if s.service == "global-cache" and s.operator not in settings.exclude_operators
        }
    )


@dataclass
class Line:
    """One item: what and how many, its monthly USD (None: no price), and the price's source."""

    label: str
    monthly: float | None
    basis: str


@dataclass
class Estimate:
    stack: str
    region: str
    lines: list[Line] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return round(sum(line.monthly for line in self.lines if line.monthly is not None), 2)

    @property
    def unpriced(self) -> list[Line]:
        return [line for line in self.lines if line.monthly is None]


def _line(estimate: Estimate, label: str, item: str, region: str, quantity: float, how: str) -> None:
    found = price(item, region)
    if found is None:
        estimate.lines.append(Line(label, None, f"no price for {item} in {region} in the table: NOT IN THE TOTAL"))
    else:
        estimate.lines.append(
            Line(
                label,
                round(quantity * found.usd, 2),
                f"{how} x {found.usd:g} USD/{found.unit} ({found.source}, read {found.read})",
            )
        )


def estimate(
    settings: NodeSettings, assumptions: Assumptions = Assumptions(), counts: Counts | None = None
) -> Estimate:
    """The itemised monthly estimate; a region the table cannot price is refused, naming aws:region."""
    region = settings.region
    if region not in priced_regions():
        raise SettingsError(
            f"aws:region = {region!r}: the price table ({PRICES_CSV.name}) has no prices for it; "
            f"regions it prices: {', '.join(priced_regions())}"
        )
    counts = counts or declared(settings)
    out = Estimate(settings.stack, region)

    _line(
        out,
        f"instance {counts.instance_type} (on-demand, Linux)",
        f"ec2:{counts.instance_type}",
        region,
        HOURS_PER_MONTH,
        f"{HOURS_PER_MONTH} h",
    )
    for name, size in (("root", counts.root_volume_gb), ("data", counts.data_volume_gb)):
        _line(
            out,
            f"{name} volume {counts.volume_type} {size} GB",
            f"ebs:{counts.volume_type}",
            region,
            size,
            f"{size} GB",
        )
    _line(
        out,
        f"public IPv4 address x{counts.public_ipv4}",
        "public-ipv4",
        region,
        counts.public_ipv4 * HOURS_PER_MONTH,
        f"{counts.public_ipv4} x {HOURS_PER_MONTH} h",
    )

    checks = len(counts.health_checks)
    _line(
        out,
        f"Route 53 health checks x{checks} ({', '.join(counts.health_checks)})",
        "route53:health-check-non-aws",
        region,
        checks,
        f"{checks} checks",
    )
    features = sum(HEALTH_CHECK_OPTIONAL_FEATURES[t] for t in counts.health_checks)
    if features:
        _line(
            out,
            f"Route 53 optional health-check features x{features} (HTTPS)",
            "route53:optional-feature-non-aws",
            region,
            features,
            f"{features} features",
        )

    for alarm_region, kinds in counts.alarms.items():
        for kind, number in kinds.items():
            if number:
                _line(
                    out,
                    f"CloudWatch alarms, {kind}, x{number} in {alarm_region}",
                    f"cloudwatch:alarm-{kind}",
                    alarm_region,
                    number,
                    f"{number} alarms",
                )
    _line(
        out,
        f"CloudWatch custom metrics x{counts.custom_metrics} (agent, reporter, WIS2 watcher and GDC check)",
        "cloudwatch:metric",
        region,
        counts.custom_metrics,
        f"{counts.custom_metrics} metrics",
    )
    _line(
        out,
        f"CloudWatch dashboard x{counts.dashboards}",
        "cloudwatch:dashboard",
        region,
        counts.dashboards,
        f"{counts.dashboards} dashboards",
    )
    out.lines.append(
        Line(
            "EC2 detailed monitoring (1-minute instance metrics)",
            None,
            "billed as custom metrics, how many depends on the instance type: NOT IN THE TOTAL",
        )
    )
    sns = price("sns:email-hundred-thousand", region)
    label = f"SNS topics x{len(counts.topics)}, e-mail subscriptions x{counts.email_subscriptions}"
    out.lines.append(
        Line(label, None, "no price for SNS e-mail in the table: NOT IN THE TOTAL")
        if sns is None
        else Line(
            label,
            0.0,
            f"alerts are a few e-mails a month, inside the free {SNS_FREE_EMAILS} ({sns.source}, read {sns.read})",
        )
    )
    if counts.kms_keys:
        _line(
            out,
            f"KMS customer managed keys x{counts.kms_keys} (alert topics)",
            "kms:key",
            region,
            counts.kms_keys,
            f"{counts.kms_keys} keys",
        )
    if counts.snapshot_policies:
        out.lines.append(
            Line(
                f"data-volume snapshots (policies x{counts.snapshot_policies})",
                None,
                "snapshot storage depends on what changes: no estimate: NOT IN THE TOTAL",
            )
        )

    files = assumptions.files_per_day * DAYS_PER_MONTH
    gb_month = files * assumptions.mb_per_file / 1024
    # Steady state: the bucket holds the files of the last retention_days (its lifecycle expires the rest).
    stored_gb = assumptions.files_per_day * settings.retention_days * assumptions.mb_per_file / 1024
    _line(
        out,
        f"S3 PUT requests ({files:,.0f} files)",
        "s3:put-thousand",
        region,
        files / 1000,
        f"{files / 1000:,.1f} thousand",
    )
    _line(
        out,
        "S3 GET requests (the node reads each file once)",
        "s3:get-thousand",
        region,
        files / 1000,
        f"{files / 1000:,.1f} thousand",
    )
    _line(
        out,
        f"S3 storage (files expire after {settings.retention_days} days)",
        "s3:storage",
        region,
        stored_gb,
        f"{stored_gb:,.2f} GB",
    )
    sqs_requests = files * SQS_REQUESTS_PER_FILE + IDLE_RECEIVES_PER_MONTH
    billable = max(0.0, sqs_requests - SQS_FREE_REQUESTS) / 1e6
    _line(
        out,
        f"SQS requests ({sqs_requests / 1e6:,.2f} million, first 1 million free)",
        "sqs:million-requests",
        region,
        billable,
        f"{billable:,.2f} million",
    )
    caches = global_caches(settings)
    downloaders = caches + assumptions.subscribers
    transfer = gb_month * downloaders
    _line(
        out,
        f"data transfer out ({downloaders} downloaders: {caches} Global Caches + "
        f"{assumptions.subscribers} subscribers)",
        "transfer:internet-out",
        region,
        transfer,
        f"{transfer:,.1f} GB (the account's first 100 GB a month are free: not deducted)",
    )

    out.assumptions = [
        f"{assumptions.files_per_day} files a day of {assumptions.mb_per_file:g} MB "
        f"({gb_month:,.2f} GB a month), each downloaded once by each Global Cache ({caches}) and "
        f"subscriber ({assumptions.subscribers}); change with --files-per-day, --mb-per-file, --subscribers",
        f"always on: {HOURS_PER_MONTH} h a month; on-demand prices, no savings plan; of the account's free "
        f"allowances only SQS's first million requests and SNS's first {SNS_FREE_EMAILS} e-mails are deducted",
    ]
    return out


def one_line(settings: NodeSettings) -> str:
    """The estimate in one line, for `check`."""
    try:
        result = estimate(settings)
    except SettingsError as err:
        return f"  monthly estimate: none ({err})"
    missing = f", {len(result.unpriced)} items without a price left out" if result.unpriced else ""
    return (
        f"  monthly estimate: {result.total:.2f} USD (provisional prices{missing}; "
        f"python -m wis2node cost --stack {settings.stack})"
    )


def report(result: Estimate) -> str:
    """The itemised estimate as text."""
    width = max(len(line.label) for line in result.lines)
    out = [
        f"{result.stack}: monthly estimate in {result.region}, USD, from PROVISIONAL prices "
        f"(wis2node/data/{PRICES_CSV.name})"
    ]
    for line in result.lines:
        amount = f"{line.monthly:9.2f}" if line.monthly is not None else "        -"
        out.append(f"  {line.label:<{width}} {amount}  {line.basis}")
    out.append(f"  {'total':<{width}} {result.total:9.2f}")
    if result.unpriced:
        count = len(result.unpriced)
        out.append(f"  {count} item{'s' if count > 1 else ''} without a price in the table, NOT in the total")
    out += [f"assumption: {text}" for text in result.assumptions]
    return "\n".join(out)
