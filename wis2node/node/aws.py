"""AWS clients for the node's long-running tools: botocore's own, holding only the endpoint data they use.

Every botocore session reads botocore's endpoints.json (every region of every partition for more
than 300 services, 1.2 MB of JSON) and keeps it for as long as any of its clients lives: about
4 MiB of a tool's resident memory, for a tool that calls two or three services (botocore issue
3078 asks for the same saving). A `Session` made here reads that file through botocore's own
loader, whose file loader keeps, of each partition, its own data (regions, DNS suffix, defaults,
variants) and the entries of the services named; the other services are dropped as the file is
read, so the whole document is never cached. Nothing else changes: the data still comes from
botocore's file at botocore's path, so botocore treats it as its built-in data, resolves the
named services' endpoints exactly as a stock session does (tests compare every region of every
partition, and the requests themselves), and honours AWS_DATA_PATH and AWS_ENDPOINT_URL as usual.
boto3 is not imported: its `client()` is botocore's `create_client`, and its import alone is
2 MiB more.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import botocore.session
from botocore.config import Config
from botocore.loaders import JSONFileLoader, Loader, create_loader


class _NamedServicesOnly(JSONFileLoader):
    """botocore's JSON file loader, dropping from its endpoints.json every service but those named."""

    ENDPOINTS = os.path.join(Loader.BUILTIN_DATA_PATH, "endpoints")

    def __init__(self, services: frozenset[str]):
        self.services = services

    def load_file(self, file_path):
        data = super().load_file(file_path)
        if file_path != self.ENDPOINTS or not _partitions_with_services(data):
            return data  # another file, or a shape this botocore does not have: left as botocore wrote it
        partitions = [
            {**partition, "services": {n: s for n, s in partition["services"].items() if n in self.services}}
            for partition in data["partitions"]
        ]
        return {**data, "partitions": partitions}


def _partitions_with_services(data) -> bool:
    partitions = data.get("partitions") if isinstance(data, dict) else None
    return isinstance(partitions, list) and all(
        isinstance(p, dict) and isinstance(p.get("services"), dict) for p in partitions
    )


class Session:
    """A botocore session for `services` in `region`; `client(name)` for any other service is refused."""

    def __init__(self, region: str, services: Iterable[str]):
        self.region = region
        self.services = frozenset(services)
        self.botocore = botocore.session.get_session()
        loader = create_loader(self.botocore.get_config_variable("data_path"))  # as botocore makes its own
        loader.file_loader = _NamedServicesOnly(self.services)
        self.botocore.register_component("data_loader", loader)

    def client(self, service: str, config: Config | None = None):
        if service not in self.services:
            raise ValueError(f"{service}: not among this session's services {sorted(self.services)}")
        return self.botocore.create_client(service, region_name=self.region, config=config)
