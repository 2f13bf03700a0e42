"""Are the node's discovery records in the Global Discovery Catalogues, and current? (the daily timer)

    python -m wis2node.node gdc-check [/etc/wis2/node.json]

Asks each GDC of wis2node/node/data/global-endpoints.csv the way the wis2box operations guide tells an
operator to (OGC API - Records: /collections/wis2-discovery-metadata/items?q=<centre-id>), and
compares with the records the node serves under /metadata/:
- missing: served by the node, not in the catalogue (announced before it subscribed, or refused:
  look for a "WCMP2 ETS report" alert);
- stale: in the catalogue with an older `updated` than the node's;
- unknown: in the catalogue under the centre's identifiers, no longer served by the node (withdrawn
  without a deletion notification).
Puts GDCRecordsMissing / Stale / Unknown (and GDCUnreachable) per catalogue, and sends one alert when
anything is wrong.
"""

from __future__ import annotations

import datetime
import json
import logging
import ssl
import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wis2node.node.jsonobject import json_object
from wis2node.node.nodeconfig import CONFIG_PATH, NodeConfig, load_config
from wis2node.node.republish import records

LOG = logging.getLogger("wis2node.node.gdc")
COLLECTION = "collections/wis2-discovery-metadata/items"
PAGE = 100
MAX_PAGES = 20
MAX_BYTES = 20 * 1024 * 1024
TIMEOUT = 30
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class Finding:
    catalogue: str
    missing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not (self.missing or self.stale or self.unknown)

    def describe(self) -> str:
        if self.error:
            return f"{self.catalogue}: unreachable ({self.error})"
        parts = [
            f"{label}: {', '.join(ids)}"
            for label, ids in (("missing", self.missing), ("stale", self.stale), ("unknown", self.unknown))
            if ids
        ]
        return f"{self.catalogue}: " + ("; ".join(parts) if parts else "all records present and current")


def catalogues(listed: list[dict[str, Any]] | None = None) -> list[tuple[str, str]]:
    """(name, base URL) of each GDC: node.json's list (wis2.catalogues, tests), else the catalogue's."""
    from wis2node.node.watcher import catalogue

    if listed:
        found = [(str(item["name"]), str(item["url"])) for item in listed]
    else:
        found = [(catalogue_name(row), catalogue_url(row)) for row in catalogue("global-discovery-catalogue")]
    for name, url in found:
        check_url(name, url)
    return found


def catalogue_name(row: dict) -> str:
    return f"{row['operator']}-global-discovery-catalogue"


def catalogue_url(row: dict) -> str:
    """The base URL of a GDC row of the endpoint catalogue (transport https, or http on loopback)."""
    scheme, port = row.get("transport") or "https", str(row.get("port") or "")
    default = {"https": "443", "http": "80"}.get(scheme)
    netloc = row["host"] if port in ("", default) else f"{row['host']}:{port}"
    return f"{scheme}://{netloc}{row.get('path') or '/'}"


def check_url(name: str, url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in LOOPBACK):
        raise ValueError(f"catalogue {name}: {url!r} is not an https URL")


def _get(url: str, context: ssl.SSLContext, timeout: float = TIMEOUT) -> dict:
    request = urllib.request.Request(
        url, headers={"Accept": "application/geo+json, application/json", "User-Agent": "wis2-node gdc-check"}
    )
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        body = response.read(MAX_BYTES + 1)
    if len(body) > MAX_BYTES:
        raise ValueError("response over 20 MB")
    document = json.loads(body)
    if not isinstance(document, dict) or not isinstance(document.get("features"), list):
        raise ValueError("not an OGC API - Records items response (no features)")
    return document


def catalogue_records(
    base: str, centre_id: str, context: ssl.SSLContext | None = None, timeout: float = TIMEOUT
) -> dict[str, str]:
    """The centre's records in one GDC: id -> updated (or created), following the `next` links."""
    context = context or ssl.create_default_context()
    prefix = f"urn:wmo:md:{centre_id}:"
    url: str | None = (
        base.rstrip("/") + "/" + COLLECTION + "?" + urllib.parse.urlencode({"q": centre_id, "limit": PAGE, "f": "json"})
    )
    found: dict[str, str] = {}
    for _ in range(MAX_PAGES):
        if url is None:
            break
        document = _get(url, context, timeout)
        for feature in document["features"]:
            if isinstance(feature, dict) and isinstance(feature.get("id"), str) and feature["id"].startswith(prefix):
                properties = json_object(feature.get("properties"))
                found[feature["id"]] = str(properties.get("updated") or properties.get("created") or "")
        url = next(
            (
                link.get("href")
                for link in document.get("links", [])
                if isinstance(link, dict) and link.get("rel") == "next" and isinstance(link.get("href"), str)
            ),
            None,
        )
        if url and urllib.parse.urlsplit(url).netloc != urllib.parse.urlsplit(base).netloc:
            raise ValueError(f"next link leaves the catalogue: {url[:200]}")
    return found


def _moment(text: str) -> datetime.datetime | None:
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def compare(name: str, served: dict[str, str], listed: dict[str, str]) -> Finding:
    finding = Finding(name)
    for record_id, updated in sorted(served.items()):
        if record_id not in listed:
            finding.missing.append(record_id)
            continue
        ours, theirs = _moment(updated), _moment(listed[record_id])
        if ours and theirs and theirs < ours:
            finding.stale.append(record_id)
    finding.unknown = sorted(set(listed) - set(served))
    return finding


def served_records(config: NodeConfig) -> dict[str, str]:
    return updated_by_id(Path(config.publishing.public_dir) / "metadata")


def updated_by_id(metadata_dir: Path) -> dict[str, str]:
    """The records of a folder: id -> updated (or created)."""
    return {
        record["id"]: str(
            (record.get("properties") or {}).get("updated") or (record.get("properties") or {}).get("created") or ""
        )
        for _, record in records(metadata_dir)
    }


def check(config: NodeConfig, context: ssl.SSLContext | None = None) -> list[Finding]:
    served = served_records(config)
    findings = []
    for name, url in catalogues(config.wis2.catalogues):
        try:
            findings.append(compare(name, served, catalogue_records(url, config.centre_id, context)))
        except (OSError, ValueError) as err:
            findings.append(Finding(name, error=str(err)[:300]))
        LOG.info("%s", findings[-1].describe())
    return findings


def metrics(stack: str, findings: list[Finding]) -> list[dict]:
    data = []
    for finding in findings:
        dimensions = [{"Name": "Stack", "Value": stack}, {"Name": "Catalogue", "Value": finding.catalogue}]
        figures = {"GDCUnreachable": 1.0 if finding.error else 0.0}
        if not finding.error:
            figures.update(
                {
                    "GDCRecordsMissing": len(finding.missing),
                    "GDCRecordsStale": len(finding.stale),
                    "GDCRecordsUnknown": len(finding.unknown),
                }
            )
        data += [
            {"MetricName": metric, "Value": float(value), "Unit": "Count", "Dimensions": dimensions}
            for metric, value in figures.items()
        ]
    return data


def main(config_path: str = CONFIG_PATH) -> int:
    import boto3

    from wis2node.node.watcher import alerts_topic

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config = load_config(config_path, needs=())
    session = boto3.session.Session(region_name=config.region)
    findings = check(config)
    session.client("cloudwatch").put_metric_data(
        Namespace=config.monitoring.namespace, MetricData=metrics(config.stack, findings)
    )
    wrong = [f for f in findings if not f.ok]
    if wrong:
        message = "\n".join(
            [
                f"The Global Discovery Catalogues and the records of {config.centre_id} (stack {config.stack}) differ:",
                "",
            ]
            + [f.describe() for f in findings]
            + ["", 'What to do: see the README, section "WIS2 alerts", "GDC check".']
        )
        session.client("sns").publish(
            TopicArn=alerts_topic(config.wis2.alerts_topic_arn, config.wis2.alerts_topic_parameter, session),
            Subject=f"WIS2 WARNING: GDC check, {len(wrong)} catalogue(s) differ",
            Message=message,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
