"""moto in server mode: the node's boto3 code talks to it exactly as to AWS, over HTTP."""

from __future__ import annotations

import os
import urllib.request
from contextlib import contextmanager
from typing import Iterator

import boto3
from moto.server import ThreadedMotoServer

from wis2node.local import free_port


@contextmanager
def moto_server(region: str = "eu-west-1") -> Iterator[dict[str, str]]:
    """Start moto on loopback; yield the environment that points AWS clients at it."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # moto keeps its accounts in the process, across servers: start every test from nothing
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", method="POST"))
    environment = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    try:
        yield environment
    finally:
        server.stop()


def client(service: str, environment: dict[str, str]):
    return boto3.client(service, region_name=environment["AWS_DEFAULT_REGION"],
                        endpoint_url=environment["AWS_ENDPOINT_URL"],
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def run_environment(environment: dict[str, str]) -> dict[str, str]:
    """This process's environment with the AWS settings pointed at moto (and no real credentials)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**clean, **environment}
