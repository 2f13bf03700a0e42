"""Metadata as WIS2 sees it: the daily republish on the local node, the GDC check against a stand-in
of the GDC API (OGC API - Records as pygeoapi serves it: a FeatureCollection of WCMP2 records with
numberMatched / numberReturned and a `next` link per page), moto for SSM, SNS and CloudWatch."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import shutil
import subprocess
import sys
import threading
import urllib.parse

import pytest

from tests.wis2node.mqtt_clients import Client
from wis2node.endpoints import READ_ONLY_PASSWORD, READ_ONLY_USER
from wis2node.local import LocalNode, free_port
from wis2node.localcloud import client, moto_server, run_environment
from wis2node.metadata import metadata_dir
from wis2node.node import gdc
from wis2node.node.nodeconfig import parse
from wis2node.stackfile import ROOT, find_stack

# Starts the node's daemons: not in the quick loop, `pytest -m "not slow"` (docs/DEVELOPING.md).
pytestmark = pytest.mark.slow

SETTINGS = find_stack("aq-examplemet-test").settings()
CENTRE = SETTINGS.centre_id
RECORDS = sorted(metadata_dir(SETTINGS.stack).glob("*.json"))
IDS = {json.loads(path.read_text())["id"]: path for path in RECORDS}


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with LocalNode(SETTINGS, tmp_path_factory.mktemp("node")) as running:
        for path in RECORDS:  # what the agent has published
            shutil.copy(path, running.public_dir / "metadata" / path.name)
        yield running


def node_config(node: LocalNode, **wis2) -> dict:
    config = json.loads(node.path("/etc/wis2/node.json").read_text())
    config["wis2"].update(wis2)
    return config


def test_every_served_record_is_announced_again(node, tmp_path):
    subscriber = Client(node, READ_ONLY_USER, READ_ONLY_PASSWORD, transport="mqtt")
    subscriber.subscribe(f"origin/a/wis2/{CENTRE}/#")
    (node.public_dir / "metadata" / "broken.json").write_text("{not json")  # logged and skipped
    config_path = tmp_path / "node.json"
    config_path.write_text(json.dumps(node_config(node)))
    try:
        with moto_server(SETTINGS.region) as aws:
            client("ssm", aws).put_parameter(
                Name=SETTINGS.parameter_name("publisher-password"), Value=node.publisher_password, Type="SecureString"
            )
            run = subprocess.run(
                [sys.executable, "-m", "wis2node", "republish", str(config_path)],
                cwd=ROOT,
                env=run_environment(aws),
                capture_output=True,
                text=True,
                timeout=120,
            )
        assert run.returncode == 0, run.stderr
        assert "broken.json: skipped" in run.stderr
        received = [json.loads(m.payload) for m in subscriber.wait_for(len(RECORDS))]
    finally:
        (node.public_dir / "metadata" / "broken.json").unlink()
        subscriber.close()
    assert {m["properties"]["data_id"] for m in received} == {f"{CENTRE}/metadata/{i}" for i in IDS}
    for message in received:
        link = message["links"][0]
        path = IDS[message["properties"]["data_id"].rsplit("/", 1)[1]]
        assert link["rel"] == "update" and link["href"] == f"https://{SETTINGS.fqdn}/metadata/{path.name}"
        assert (
            message["properties"]["integrity"]["value"]
            == base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()
        )


class StandInCatalogue(http.server.ThreadingHTTPServer):
    """GET /collections/wis2-discovery-metadata/items?q=...&limit=...: pages of records, `next` links."""

    def __init__(self, features: list[dict]):
        self.features = features
        self.queries: list[dict] = []
        super().__init__(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        self.server.queries.append(query)
        if url.path != "/collections/wis2-discovery-metadata/items":
            self.send_error(404)
            return
        matching = [f for f in self.server.features if query.get("q", "") in json.dumps(f)]
        limit, offset = min(int(query.get("limit", 10)), 1), int(query.get("offset", 0))  # one a page: paging
        page = matching[offset : offset + limit]
        links = [{"rel": "self", "type": "application/geo+json", "href": f"{self.server.url}{self.path[1:]}"}]
        if offset + limit < len(matching):
            following = urllib.parse.urlencode({**query, "offset": offset + limit})
            links.append(
                {
                    "rel": "next",
                    "type": "application/geo+json",
                    "href": f"{self.server.url}collections/wis2-discovery-metadata/items?{following}",
                }
            )
        body = json.dumps(
            {
                "type": "FeatureCollection",
                "features": page,
                "numberMatched": len(matching),
                "numberReturned": len(page),
                "links": links,
                "timeStamp": "2026-11-26T06:00:00Z",
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/geo+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def record(record_id: str, updated: str) -> dict:
    return {
        "id": record_id,
        "type": "Feature",
        "geometry": None,
        "properties": {"title": record_id, "created": "2026-01-01T00:00:00Z", "updated": updated},
        "links": [],
    }


def test_the_gdc_check_finds_missing_stale_and_unknown_records(node, tmp_path):
    synop, model = sorted(IDS, key=lambda i: "synop" not in i)
    features = [
        record(synop, "2026-11-01T00:00:00Z"),  # older than the node's: stale
        record(f"urn:wmo:md:{CENTRE}:withdrawn-dataset", "2026-01-01T00:00:00Z"),  # no longer served
        record("urn:wmo:md:xx-other:dataset", "2026-01-01T00:00:00Z"),
    ]  # someone else's
    current = StandInCatalogue([record(synop, "2026-11-24T00:00:00Z"), record(model, "2026-11-25T00:00:00Z")])
    behind = StandInCatalogue(features)
    config = node_config(
        node,
        catalogues=[
            {"name": "current-gdc", "url": current.url},
            {"name": "behind-gdc", "url": behind.url},
            {"name": "down-gdc", "url": f"http://127.0.0.1:{free_port()}/"},
        ],
    )
    try:
        findings = {f.catalogue: f for f in gdc.check(parse(config))}
        assert findings["current-gdc"].ok
        assert findings["behind-gdc"].missing == [model]
        assert findings["behind-gdc"].stale == [synop]
        assert findings["behind-gdc"].unknown == [f"urn:wmo:md:{CENTRE}:withdrawn-dataset"]
        assert findings["down-gdc"].error and not findings["down-gdc"].ok
        assert behind.queries[0]["q"] == CENTRE and len(behind.queries) == 2, "the next link was followed"

        config_path = tmp_path / "node.json"
        with moto_server(SETTINGS.region) as aws:
            sns, sqs = client("sns", aws), client("sqs", aws)
            topic = sns.create_topic(Name="alerts")["TopicArn"]
            queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
            client("ssm", aws).put_parameter(Name=config["wis2"]["alerts_topic_parameter"], Value=topic, Type="String")
            config_path.write_text(json.dumps(config))
            run = subprocess.run(
                [sys.executable, "-m", "wis2node", "gdc-check", str(config_path)],
                cwd=ROOT,
                env=run_environment(aws),
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert run.returncode == 0, run.stderr
            messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=5)["Messages"]
            metrics = client("cloudwatch", aws).list_metrics(Namespace="WIS2Node")["Metrics"]
        alert = json.loads(messages[0]["Body"])
        assert alert["Subject"] == "WIS2 WARNING: GDC check, 2 catalogue(s) differ"
        assert (
            f"behind-gdc: missing: {model}; stale: {synop}; unknown: urn:wmo:md:{CENTRE}:withdrawn-dataset"
            in alert["Message"]
        )
        names = {
            (m["MetricName"], next(d["Value"] for d in m["Dimensions"] if d["Name"] == "Catalogue")) for m in metrics
        }
        assert ("GDCRecordsMissing", "behind-gdc") in names and ("GDCUnreachable", "down-gdc") in names
    finally:
        for server in (current, behind):
            server.shutdown()


def test_the_catalogue_names_the_three_gdcs_over_https():
    found = gdc.catalogues()
    assert len(found) == 3 and all(url.startswith("https://") for _, url in found)
    with pytest.raises(ValueError, match="not an https URL"):
        gdc.catalogues([{"name": "x", "url": "http://gdc.example.org/"}])
