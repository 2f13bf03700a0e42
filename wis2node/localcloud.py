"""AWS on this machine, for the demo, the tests and the benchmarks: moto in server mode.

The node's boto3 code talks to it over HTTP exactly as it would to AWS. Also the WMO
validators' bundles, which the tools otherwise download on first use.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from wis2node.local import free_port
from wis2node.settings import EVENT_MAX_RECEIVES, NodeSettings

ACCOUNT = "123456789012"  # moto's default account
SHARED_BUNDLES = Path(__file__).resolve().parents[2] / "shared" / "reference" / "wis2-bundles" / "home"


@contextmanager
def moto_server(region: str, host: str = "127.0.0.1") -> Iterator[dict[str, str]]:
    """Start moto on loopback (or another address of this host); yield the environment that points
    AWS clients at it."""
    port = free_port()
    # A process of its own, as AWS is: the node's code and moto do not share one interpreter.
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://{host}:{port}/moto-api/", timeout=1)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("moto did not start") from None
            time.sleep(0.1)
    try:
        yield {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": region,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    finally:
        server.terminate()
        server.wait()


def client(service: str, environment: dict[str, str]):
    import boto3

    return boto3.client(
        service,
        region_name=environment["AWS_DEFAULT_REGION"],
        endpoint_url=environment["AWS_ENDPOINT_URL"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def run_environment(environment: dict[str, str]) -> dict[str, str]:
    """This process's environment with AWS pointed at moto (and no real credentials)."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **environment}


def validator_home(home: Path) -> Path:
    """A HOME with the validators' bundles: ../shared's offline copies, or freshly synced ones."""
    home.mkdir(parents=True, exist_ok=True)
    if SHARED_BUNDLES.is_dir():
        shutil.copytree(SHARED_BUNDLES, home, dirs_exist_ok=True)
        for path in [home, *home.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
        return home
    tools = Path(sys.executable).parent
    for command in (
        ["pywis-pubsub", "schema", "sync"],
        ["pywis-topics", "bundle", "sync"],
        ["pywcmp", "bundle", "sync"],
    ):
        if (tools / command[0]).exists():
            subprocess.run([str(tools / command[0]), *command[1:]], check=True, env={**os.environ, "HOME": str(home)})
    return home


class LocalIngest:
    """What the publishing component declares, made in moto: bucket, event queue, dead-letter queue."""

    def __init__(self, environment: dict[str, str], settings: NodeSettings, visibility_timeout: int = 5):
        self.environment = environment
        self.s3, self.sqs = client("s3", environment), client("sqs", environment)
        self.bucket = settings.ingest_bucket(ACCOUNT)
        self.s3.create_bucket(Bucket=self.bucket, CreateBucketConfiguration={"LocationConstraint": settings.region})
        self.dead_letter_url = self.sqs.create_queue(QueueName=settings.dead_letter_queue)["QueueUrl"]
        self.queue_url = self.sqs.create_queue(
            QueueName=settings.ingest_queue,
            Attributes={
                "VisibilityTimeout": str(visibility_timeout),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": self._arn(self.dead_letter_url), "maxReceiveCount": EVENT_MAX_RECEIVES}
                ),
            },
        )["QueueUrl"]
        self.s3.put_bucket_notification_configuration(
            Bucket=self.bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": self._arn(self.queue_url),
                        "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
                    }
                    for prefix in ("data/", "metadata/")
                ]
            },
        )
        self.ssm = client("ssm", environment)

    def _arn(self, queue_url: str) -> str:
        return self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def put(self, key: str, body: bytes, **metadata: str) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, Metadata=metadata)

    def put_record(self, path: Path) -> str:
        """What Pulumi does with a stack's metadata record; returns the record's id."""
        from wis2node.node.datasets import GTS_MAPPING, gts_key

        record_id = json.loads(path.read_text())["id"]
        mapping = path.with_suffix("") / GTS_MAPPING  # the dataset's GTS headers go first, as Pulumi orders them
        if mapping.is_file():
            self.put(gts_key(f"metadata/{path.name}"), mapping.read_bytes())
        self.put(f"metadata/{path.name}", path.read_bytes(), **{"metadata-id": record_id})
        return record_id

    def parked(self, expected: int, timeout: float = 20) -> list[dict]:
        """Messages in the dead-letter queue (with their reason attribute)."""
        found: list[dict] = []
        deadline = time.monotonic() + timeout
        while len(found) < expected and time.monotonic() < deadline:
            found += self.sqs.receive_message(
                QueueUrl=self.dead_letter_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
            ).get("Messages", [])
        return found


class AgentProcess:
    """`python -m wis2node.node agent`, as the VM's systemd unit runs it, but against moto."""

    def __init__(self, config: Path, environment: dict[str, str], log: Path, home: Path | None = None):
        self.log = log.open("ab")
        # As the VM's unit runs it: fewer malloc arenas keep a threaded Python's memory down.
        extra = {"MALLOC_ARENA_MAX": "2", **({"HOME": str(home)} if home else {})}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "wis2node.node", "agent", str(config)],
            cwd=Path(__file__).resolve().parents[1],
            env={**run_environment(environment), **extra},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.log.close()
