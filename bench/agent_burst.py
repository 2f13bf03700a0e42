"""A burst of small files through the agent: files per second, upload-to-notification latency.

1,000 small files are uploaded to the ingest bucket (moto in server mode) as fast as one
uploader can, while the real agent turns them into notifications on the local node. A subscriber
(everyone, over MQTTS) timestamps each one. Two stock baselines are measured in the same run on
the same moto, each the same uploads consumed by six plain loops: one that only receives and
deletes the events (the event round trip alone), and one that also reads each object from the
bucket, the S3 and SQS work any agent must do before it can announce a file. Since moto is one
Python process, the uploads and the consumer share one core of it: CPU figures show who used it.
Before all that, moto's own cost of a file is measured at its cheapest (one plain loop, batches
of ten, an empty queue), and its cost per event received with a short and a long queue: the
ceiling any agent meets on this stand-in, and why a backlog makes every consumer slower.

    venv/bin/python bench/agent_burst.py [--files 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote_plus

import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wis2node.local import LocalNode
from wis2node.localcloud import AgentProcess, LocalIngest, moto_server, validator_home
from wis2node.metadata import metadata_dir
from wis2node.stackfile import find_stack

TOPIC = "data/core/weather/surface-based-observations/synop"


def upload(ingest: LocalIngest, keys: list[str], record_id: str, threads: int = 8) -> dict[str, float]:
    """Put every file as fast as the uploader can (a few connections at once); when each was stored."""
    sent = {}

    def put(key: str) -> None:
        ingest.put(key, key.encode() * 8, **{"metadata-id": record_id})
        sent[key] = time.perf_counter()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(put, keys))
    return sent


def consume_once(ingest: LocalIngest, read: bool) -> int:
    """One plain receive of up to ten events (reading their objects if `read`), then one deletion.

    Returns how many file events it consumed (the bucket's test event is not one)."""
    batch = ingest.sqs.receive_message(QueueUrl=ingest.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
        "Messages", []
    )
    for message in batch if read else []:
        for record in json.loads(message["Body"]).get("Records", []):
            ingest.s3.get_object(Bucket=ingest.bucket, Key=unquote_plus(record["s3"]["object"]["key"]))["Body"].read()
    if batch:
        ingest.sqs.delete_message_batch(
            QueueUrl=ingest.queue_url,
            Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(batch)],
        )
    return sum("Records" in json.loads(m["Body"]) for m in batch)


def baseline(ingest: LocalIngest, files: int, record_id: str, read: bool) -> float:
    """Files per second when plain loops receive the events (and `read` the objects), then delete them."""
    keys = [f"{TOPIC}/baseline-{'read' if read else 'events'}-{i:05d}.bufr4" for i in range(files)]
    done = threading.Event()
    seen = [0]  # events consumed, by all six loops
    lock = threading.Lock()
    start = time.perf_counter()

    def consume():
        while seen[0] < files and time.perf_counter() - start < 300:
            consumed = consume_once(ingest, read)
            with lock:
                seen[0] += consumed
        done.set()

    start = time.perf_counter()
    consumers = [threading.Thread(target=consume, daemon=True) for _ in range(6)]
    for consumer in consumers:
        consumer.start()
    upload(ingest, keys, record_id)
    done.wait(300)
    rate = seen[0] / (time.perf_counter() - start)
    for consumer in consumers:  # none left to take the next phase's events
        consumer.join()
    return rate


def moto_floor(ingest: LocalIngest, moto: int, record_id: str, files: int = 500) -> float:
    """moto CPU seconds per file for the S3 and SQS work no agent can avoid, at its cheapest.

    One plain loop puts ten files, receives their events, reads each object and deletes the ten
    in one batch: the fewest requests, nothing waiting in the queue, no other client.
    """
    cpu = cpu_seconds(moto)
    for start in range(0, files, 10):
        for i in range(start, start + 10):
            ingest.put(f"{TOPIC}/floor-{i:05d}.bufr4", b"x" * 544, **{"metadata-id": record_id})
        pending = 10
        while pending:
            pending -= consume_once(ingest, read=True)
    return (cpu_seconds(moto) - cpu) / files


def receive_cost(ingest: LocalIngest, moto: int, depth: int, receives: int = 20) -> float:
    """moto CPU seconds per message returned by ReceiveMessage with `depth` messages in the queue."""
    url = ingest.sqs.create_queue(QueueName=f"bench-depth-{depth}")["QueueUrl"]
    for start in range(0, depth, 10):
        ingest.sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "x" * 600} for i in range(min(10, depth - start))]
        )
    cpu, returned = cpu_seconds(moto), 0
    for _ in range(receives):  # visibility 0: what is returned stays in the queue, the depth stays put
        returned += len(
            ingest.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
        )
    cost = (cpu_seconds(moto) - cpu) / returned
    ingest.sqs.delete_queue(QueueUrl=url)
    return cost


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pid(environment: dict[str, str]) -> int:
    """moto's process, found by the port it serves on."""
    port = environment["AWS_ENDPOINT_URL"].rsplit(":", 1)[1]
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"moto.server" in args and port.encode() in args:
            return int(proc.name)
    raise RuntimeError("moto's process not found")


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    args = parser.parse_args()
    settings = find_stack("aq-examplemet-test").settings()
    record = metadata_dir(settings.stack) / "surface-based-observations-synop.json"  # the dataset of TOPIC
    with tempfile.TemporaryDirectory() as workdir, moto_server(settings.region) as aws:
        workdir = Path(workdir)
        home = validator_home(workdir / "validators")
        ingest = LocalIngest(aws, settings, visibility_timeout=30)
        record_id = json.loads(record.read_text())["id"]
        moto = server_pid(aws)
        floor = moto_floor(ingest, moto, record_id)
        shallow, deep = receive_cost(ingest, moto, 10), receive_cost(ingest, moto, 200)
        moto_cpu = cpu_seconds(moto)
        base_start = time.perf_counter()
        base_rate = baseline(ingest, args.files, record_id, read=False)
        base_moto = (cpu_seconds(moto) - moto_cpu) / (time.perf_counter() - base_start)
        moto_cpu, base_start = cpu_seconds(moto), time.perf_counter()
        read_rate = baseline(ingest, args.files, record_id, read=True)
        read_moto = (cpu_seconds(moto) - moto_cpu) / (time.perf_counter() - base_start)

        with LocalNode(settings, workdir / "node", bucket=ingest.bucket) as node:
            ingest.ssm.put_parameter(
                Name=settings.parameter_name("publisher-password"), Type="SecureString", Value=node.publisher_password
            )
            received: dict[str, float] = {}
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            client.username_pw_set("everyone", "everyone")
            context = ssl.create_default_context(cafile=str(node.ca_file))
            context.check_hostname = False
            client.tls_set_context(context)

            def on_message(c, u, message):
                href = next(link["href"] for link in json.loads(message.payload)["links"])
                received[href.split("/", 3)[3]] = time.perf_counter()

            client.on_message = on_message
            client.connect("127.0.0.1", node.ports.mqtts)
            client.loop_start()
            client.subscribe(f"origin/a/wis2/{settings.centre_id}/#", qos=1)
            ingest.put_record(record)
            agent = AgentProcess(node.path("/etc/wis2/node.json"), aws, workdir / "agent.log", home=home)
            deadline = time.monotonic() + 60
            while f"metadata/{record.name}" not in received and time.monotonic() < deadline:
                time.sleep(0.05)  # the agent is up and the dataset announced

            keys = [f"{TOPIC}/burst-{i:05d}.bufr4" for i in range(args.files)]
            start = time.perf_counter()
            agent_cpu = cpu_seconds(agent.process.pid)
            moto_cpu = cpu_seconds(moto)
            own_cpu = time.process_time()
            broker_cpu = cpu_seconds(node.broker.pid)
            sent = upload(ingest, keys, record_id)
            upload_rate = len(keys) / (max(sent.values()) - start)
            wait_for(received, keys)
            agent_cpu = cpu_seconds(agent.process.pid) - agent_cpu
            moto_cpu = cpu_seconds(moto) - moto_cpu
            own_cpu = time.process_time() - own_cpu
            broker_cpu = cpu_seconds(node.broker.pid) - broker_cpu
            elapsed = time.perf_counter() - start
            live_rate = sum(key in received for key in keys) / (max(received.get(k, start) for k in keys) - start)
            latencies = sorted(received[key] - sent[key] for key in keys if key in received)
            live_announced = sum(key in received for key in keys)
            memory = resident_mib(agent.process.pid)
            problems = [
                line
                for line in (workdir / "agent.log").read_text().splitlines()
                if line.startswith(("WARNING", "ERROR"))
            ]
            agent.stop()
            client.loop_stop()

    print(f"{args.files} files of {len(keys[0]) * 8} bytes, uploaded by 8 threads as fast as they can")
    print(f"baseline (events only: receive + delete):  {base_rate:8.1f} files/s")
    print(f"baseline (receive + read object + delete): {read_rate:8.1f} files/s")
    print(
        f"agent (fetch, write, validate, publish):   {live_rate:8.1f} files/s  (target >= 100), "
        f"{live_announced} of {len(keys)} announced"
    )
    print(f"uploads alone, while the agent ran:        {upload_rate:8.1f} files/s")
    print(f"ratio agent / baseline with object reads:  {live_rate / read_rate:8.2f}")
    print(
        f"live upload-to-notification latency: p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.0f} ms  (target p99 < 1000 ms)"
    )
    print(f"agent resident memory after the burst: {memory:.1f} MiB  (target < 100 MiB)")
    print(f"agent warnings and errors: {len(problems)}", *problems[:5], sep="\n  ")
    print(
        f"agent CPU during the burst: {agent_cpu:.1f} s over {elapsed:.1f} s "
        f"({agent_cpu / elapsed * 100:.0f}% of one core; the machine has {os.cpu_count()} cores, shared with "
        "moto, the uploader, mosquitto and the subscriber)"
    )
    print(
        f"agent CPU per file: {agent_cpu / live_announced * 1000:.1f} ms, so its own work would allow "
        f"{live_announced / agent_cpu:.0f} files/s with one core to itself"
    )
    print(
        f"moto CPU: baselines {base_moto * 100:.0f}% and {read_moto * 100:.0f}% of one core, "
        f"burst {moto_cpu / elapsed * 100:.0f}% "
        "(one Python process: it cannot use more than one core)"
    )
    print(
        f"moto's own cost of a file at its cheapest (put and its event, receive, read, delete; one loop, "
        f"batches of ten): {floor * 1000:.1f} ms of moto CPU, so at most {1 / floor:.0f} files/s with a core "
        f"wholly for moto; during the agent's burst: {moto_cpu / live_announced * 1000:.1f} ms a file"
    )
    print(
        f"moto's cost per event received, 10 vs 200 in the queue: {shallow * 1000:.1f} ms vs {deep * 1000:.1f} ms "
        "(it recounts the whole queue for each message it returns, so any backlog slows every consumer)"
    )
    print(
        f"uploader and subscriber CPU during the burst: {own_cpu / elapsed * 100:.0f}%, mosquitto "
        f"{broker_cpu / elapsed * 100:.0f}%; all together with the agent and moto: "
        f"{(agent_cpu + moto_cpu + own_cpu + broker_cpu) / elapsed * 100:.0f}% of {os.cpu_count()} cores "
        f"({os.cpu_count() * 100}%)"
    )
    return 0


def wait_for(received: dict[str, float], keys: list[str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while sum(key in received for key in keys) < len(keys) and time.monotonic() < deadline:
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
