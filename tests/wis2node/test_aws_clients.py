"""The node's AWS sessions (wis2node.node.aws) keep only the endpoint data of their services and
resolve those services exactly as botocore's own session does."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import boto3
import botocore.session
import pytest
from botocore.regions import EndpointResolver

from wis2node.node import aws
from wis2node.stackfile import ROOT

# What the node's long-running tools call (the agent: s3, sqs, ssm; the watcher: sns, cloudwatch, ssm)
NODE_SERVICES = ("s3", "sqs", "ssm", "sns", "cloudwatch")


def stock_endpoints() -> tuple[dict, str]:
    return botocore.session.get_session().get_component("data_loader").load_data_with_path("endpoints")


def test_the_session_keeps_only_its_services_endpoint_data_and_botocore_sees_it_as_built_in():
    full, full_path = stock_endpoints()
    session = aws.Session("eu-west-1", ("s3", "sqs"))
    loader = session.botocore.get_component("data_loader")
    kept, path = loader.load_data_with_path("endpoints")
    assert path == full_path and loader.is_builtin_path(path)
    assert len(full["partitions"]) == len(kept["partitions"]) > 1
    for stock, trimmed in zip(full["partitions"], kept["partitions"], strict=True):
        assert set(trimmed["services"]) == {"s3", "sqs"} & set(stock["services"])
        assert {k: v for k, v in trimmed.items() if k != "services"} == {
            k: v for k, v in stock.items() if k != "services"
        }
    assert sum(len(p["services"]) for p in full["partitions"]) > 100 * len(full["partitions"]) // 2


def test_every_region_of_every_partition_resolves_as_with_botocores_own_data():
    full, _ = stock_endpoints()
    stock = EndpointResolver(full, uses_builtin_data=True)
    session = aws.Session("us-east-1", NODE_SERVICES)
    loader = session.botocore.get_component("data_loader")
    trimmed = EndpointResolver(loader.load_data("endpoints"), uses_builtin_data=True)
    compared = 0
    for partition in full["partitions"]:
        name = partition["partition"]
        for service in NODE_SERVICES:
            assert trimmed.get_available_endpoints(service, name) == stock.get_available_endpoints(service, name)
            for region in partition["regions"]:
                for fips in (False, True):
                    assert trimmed.construct_endpoint(service, region, use_fips_endpoint=fips) == (
                        stock.construct_endpoint(service, region, use_fips_endpoint=fips)
                    ), (service, region, fips)
                    compared += 1
    assert compared > 2 * len(NODE_SERVICES) * 30


class Sent(Exception):
    """Raised from before-send: the request as it would leave, never sent."""


def request_of(client, operation: str, **params) -> tuple[str, str, str]:
    def capture(request, **_):
        raise Sent(request)

    client.meta.events.register("before-send", capture)
    with pytest.raises(Sent) as sent:
        getattr(client, operation)(**params)
    request = sent.value.args[0]
    authorization = request.headers["Authorization"].decode()
    scope = re.search(r"Credential=[^/]+/\d{8}/([^,]+)/aws4_request", authorization)
    assert scope, authorization
    return request.method, request.url, scope.group(1)


CALLS = [
    ("s3", "get_object", {"Bucket": "wis2-ingest-example", "Key": "data/core/weather/x.bufr4"}),
    ("s3", "head_object", {"Bucket": "wis2-ingest-example", "Key": "metadata/x.json"}),
    ("s3", "list_objects_v2", {"Bucket": "wis2-ingest-example", "Prefix": "metadata/"}),
    ("sqs", "get_queue_url", {"QueueName": "wis2-ingest-events"}),
    ("ssm", "get_parameter", {"Name": "/wis2/aq-examplemet-prod/publisher", "WithDecryption": True}),
    ("sns", "publish", {"TopicArn": "arn:aws:sns:eu-west-1:111122223333:alerts", "Message": "m"}),
    ("cloudwatch", "put_metric_data", {"Namespace": "WIS2Node", "MetricData": [{"MetricName": "x", "Value": 1}]}),
]


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "af-south-1", "ap-southeast-2", "cn-north-1"])
def test_each_call_leaves_exactly_as_a_stock_boto3_clients(region, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    session = aws.Session(region, {service for service, _, _ in CALLS})
    for service, operation, params in CALLS:
        stock = boto3.session.Session(region_name=region).client(service)
        ours = session.client(service)
        assert request_of(ours, operation, **params) == request_of(stock, operation, **params), (service, operation)


@pytest.mark.parametrize(
    "document",
    [{"version": 4}, {"partitions": {"aws": {}}}, {"partitions": [{"partition": "aws", "services": ["s3"]}]}],
)
def test_an_endpoint_document_of_another_shape_is_left_as_botocore_wrote_it(document, tmp_path, monkeypatch):
    (tmp_path / "endpoints.json").write_text(json.dumps(document))
    monkeypatch.setattr(aws._NamedServicesOnly, "ENDPOINTS", str(tmp_path / "endpoints"))
    assert aws._NamedServicesOnly(frozenset({"s3"})).load_file(str(tmp_path / "endpoints")) == document


def test_a_service_the_session_was_not_made_for_is_refused():
    with pytest.raises(ValueError, match=r"^ec2: not among this session's services \['s3', 'sqs'\]"):
        aws.Session("eu-west-1", ("s3", "sqs")).client("ec2")


# In a fresh interpreter: make two clients, drop the session, and count the services of every
# endpoint document still alive (botocore keeps them in its resolver while a client lives).
KEPT = """
import gc, sys
from wis2node.node import aws
from wis2node.stackfile import ROOT
import botocore.session
if sys.argv[1] == "stock":
    session = botocore.session.get_session()
    clients = [session.create_client(s, region_name="eu-west-1") for s in ("s3", "sqs")]
else:
    session = aws.Session("eu-west-1", ("s3", "sqs"))
    clients = [session.client(s) for s in ("s3", "sqs")]
del session
gc.collect()
documents = [o for o in gc.get_objects() if isinstance(o, dict) and isinstance(o.get("partitions"), list)]
print(max(len(p.get("services", ())) for d in documents for p in d["partitions"]))
"""


def test_the_clients_keep_no_more_than_their_services_endpoint_data():
    kept = {
        kind: int(
            subprocess.run(
                [sys.executable, "-c", KEPT, kind], cwd=ROOT, check=True, capture_output=True, text=True
            ).stdout
        )
        for kind in ("stock", "ours")
    }
    assert kept["stock"] > 100, kept  # what a stock session's clients keep alive: every service
    assert kept["ours"] == 2, kept
