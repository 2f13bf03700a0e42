"""Fan-out through the node's broker with native clients, against stock mosquitto in the same run.

The clients are Debian's mosquitto-clients (C, libmosquitto): N `mosquitto_sub -q 1 -C M`
subscribers and one `mosquitto_pub -l -q 1` streaming M WNM-sized messages (a real notification,
with the publish time in nanoseconds as its first member), so what is measured is the broker,
not a Python client. Three brokers, one after the other, the same clients and messages:

- stock: `mosquitto -p PORT`, its defaults (plain MQTT, anonymous, no persistence);
- stock+TLS: the defaults plus a TLS listener with the node's certificate;
- node: the broker as the local node runs it (MQTTS with the hardened TLS settings, password
  file + ACL, persistence, the queue and connection bounds).

For each: deliveries per second (first publish to last delivery), p50/p99 publish-to-delivery
latency, messages lost (M is within both brokers' per-client queue limit, so none should be),
the broker's CPU time and its peak resident memory. The publisher sends as fast as it can unless
--rate is given, so the latency under the default is latency at saturation (queueing included).

    venv/bin/python bench/broker_fanout_native.py [--subscribers 10 100] [--messages 1000] [--rounds 1]
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wis2node.endpoints import PUBLISHER_USER, READ_ONLY_PASSWORD, READ_ONLY_USER
from wis2node.local import LocalNode, _stop, _wait_for_port, free_port
from wis2node.node.notification import build_notification
from wis2node.payload import BROKER_LIMITS
from wis2node.stackfile import find_stack

STOCK_QUEUE_LIMIT = 1000  # mosquitto's default max_queued_messages
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Broker:
    """Where the clients connect and what they pass to mosquitto_sub/pub to get in."""

    name: str
    pid: int
    port: int
    reader: list[str]
    writer: list[str]


@dataclass
class Result:
    deliveries_per_s: float
    p50_ms: float
    p99_ms: float
    lost: int
    duplicates: int
    cpu_s: float
    peak_rss_mib: float


def wnm(fqdn: str) -> str:
    """A real notification for a 1 KB file, as one line of JSON."""
    message = build_notification(
        data_id="aq-examplemet-test/data/core/weather/surface-based-observations/synop/sample.bufr4",
        href=f"https://{fqdn}/data/core/weather/surface-based-observations/synop/sample.bufr4",
        content=bytes(1024),
        media_type="application/bufr",
    )
    return json.dumps(message, separators=(",", ":"))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(
    broker: Broker, topic: str, message: str, subscribers: int, messages: int, rate: float, workdir: Path
) -> Result:
    """One fan-out: subscribe N clients, stream M messages, wait for every delivery (or 10 s of silence)."""
    outputs = [workdir / f"{broker.name}-{subscribers}-{index}.out" for index in range(subscribers)]
    subs = []
    for output in outputs:
        with output.open("wb") as sink:
            subs.append(
                subprocess.Popen(
                    [
                        "stdbuf",
                        "-oL",
                        "mosquitto_sub",
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(broker.port),
                        *broker.reader,
                        "-t",
                        topic.rsplit("/", 1)[0] + "/#",
                        "-q",
                        "1",
                        "-C",
                        str(messages),
                        "-d",
                        "-F",
                        "%U %p",
                    ],
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
            )
    deadline = time.monotonic() + 60
    while not all(b"received SUBACK" in output.read_bytes() for output in outputs):
        if time.monotonic() > deadline or any(sub.poll() is not None for sub in subs):
            failed = next(
                output
                for output, sub in zip(outputs, subs, strict=True)
                if sub.poll() is not None or b"received SUBACK" not in output.read_bytes()
            )
            raise RuntimeError(f"{broker.name}: a subscriber did not subscribe: {failed.read_text()[-500:]}")
        time.sleep(0.1)

    cpu_before = cpu_seconds(broker.pid)
    publisher = subprocess.Popen(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), *broker.writer, "-t", topic, "-q", "1", "-l"],
        stdin=subprocess.PIPE,
    )
    body = message[1:]
    start = time.time()
    for sequence in range(messages):
        if rate:
            pause = start + sequence / rate - time.time()
            if pause > 0:
                time.sleep(pause)
        publisher.stdin.write(f'{{"t":{time.time_ns()},"n":{sequence},{body}\n'.encode())
    publisher.stdin.close()
    publisher.wait(timeout=120)

    sizes, quiet_since = None, time.monotonic()
    while any(sub.poll() is None for sub in subs):
        now_sizes = [output.stat().st_size for output in outputs]
        if now_sizes != sizes:
            sizes, quiet_since = now_sizes, time.monotonic()
        elif time.monotonic() - quiet_since > 10:
            break
        time.sleep(0.2)
    for sub in subs:
        _stop(sub)
    cpu = cpu_seconds(broker.pid) - cpu_before

    latencies, last, lost, duplicates = [], 0.0, 0, 0
    for output in outputs:
        seen = set()
        for line in output.read_bytes().splitlines():
            if not line[:1].isdigit():
                continue  # debug lines
            received, payload = line.split(b" ", 1)
            data = json.loads(payload)
            duplicates += data["n"] in seen
            seen.add(data["n"])
            latencies.append(float(received) - data["t"] / 1e9)
            last = max(last, float(received))
        lost += messages - len(seen)
        output.unlink()
    latencies.sort()
    return Result(
        deliveries_per_s=len(latencies) / (last - start) if latencies else 0.0,
        p50_ms=1000 * statistics.median(latencies) if latencies else float("nan"),
        p99_ms=1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan"),
        lost=lost,
        duplicates=duplicates,
        cpu_s=cpu,
        peak_rss_mib=peak_rss_mib(broker.pid),
    )


def stock_brokers(node: LocalNode, workdir: Path) -> tuple[list[subprocess.Popen], list[Broker]]:
    """Stock mosquitto twice: its defaults, and its defaults plus a TLS listener with the node's certificate."""
    plain_port, tls_port = free_port(), free_port()
    config = workdir / "stock-tls.conf"
    config.write_text(
        f"user {getpass.getuser()}\nlistener {tls_port} 127.0.0.1\nallow_anonymous true\n"
        f"certfile {node.tls_dir / 'fullchain.pem'}\nkeyfile {node.tls_dir / 'privkey.pem'}\n"
    )
    plain = subprocess.Popen(["mosquitto", "-p", str(plain_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tls = subprocess.Popen(["mosquitto", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_port(plain_port, plain, "stock mosquitto")
    _wait_for_port(tls_port, tls, "stock mosquitto with TLS")
    ca = ["--cafile", str(node.ca_file)]
    return [plain, tls], [
        Broker("stock", plain.pid, plain_port, [], []),
        Broker("stock+TLS", tls.pid, tls_port, ca, ca),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=0, help="messages per second (default: as fast as possible)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat, alternating the brokers, to see the noise")
    args = parser.parse_args()
    limit = min(STOCK_QUEUE_LIMIT, BROKER_LIMITS["max_queued_messages"])
    if not 0 < args.messages <= limit:
        parser.error(f"--messages must be within the brokers' per-client queue limit ({limit})")

    settings = find_stack("aq-examplemet-test").settings()
    topic = f"origin/a/wis2/{settings.centre_id}/data/core/weather/surface-based-observations/synop/bench"
    message = wnm(settings.fqdn)
    print(
        f"{os.cpu_count()} CPUs; {args.messages} messages of about {len(message) + 40} bytes at QoS 1, "
        f"{'as fast as possible' if not args.rate else f'{args.rate:g}/s'}; clients: mosquitto_sub/mosquitto_pub"
    )
    results: dict[tuple[str, int], list[Result]] = {}
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
        workdir = Path(tmp)
        with LocalNode(settings, workdir / "node") as node:
            ca = ["--cafile", str(node.ca_file)]
            node_broker = Broker(
                "node",
                node.broker.pid,
                node.ports.mqtts,
                [*ca, "-u", READ_ONLY_USER, "-P", READ_ONLY_PASSWORD],
                [*ca, "-u", PUBLISHER_USER, "-P", node.publisher_password],
            )
            processes, stock = stock_brokers(node, workdir)
            try:
                brokers = [*stock, node_broker]
                for round_ in range(args.rounds):
                    for subscribers in args.subscribers:
                        for broker in brokers if round_ % 2 == 0 else brokers[::-1]:
                            result = run(broker, topic, message, subscribers, args.messages, args.rate, workdir)
                            results.setdefault((broker.name, subscribers), []).append(result)
                            print(
                                f"  round {round_ + 1} {broker.name:9} {subscribers:4} subscribers: "
                                f"{result.deliveries_per_s:8.0f} deliveries/s, p50 {result.p50_ms:7.1f} ms, "
                                f"p99 {result.p99_ms:7.1f} ms, lost {result.lost}, duplicates {result.duplicates}, "
                                f"broker CPU {result.cpu_s:5.2f} s, peak RSS {result.peak_rss_mib:5.1f} MiB",
                                flush=True,
                            )
            finally:
                for process in processes:
                    _stop(process)

    print("\nmedian over rounds                deliveries/s   p99 ms  lost  CPU ms/1000 deliveries  peak RSS MiB")
    for subscribers in args.subscribers:
        for name in ("stock", "stock+TLS", "node"):
            runs = results[(name, subscribers)]
            rate = statistics.median(r.deliveries_per_s for r in runs)
            cpu = statistics.median(1e6 * r.cpu_s / (subscribers * args.messages) for r in runs)
            print(
                f"  {name:9} {subscribers:4} subscribers   {rate:12.0f} "
                f"{statistics.median(r.p99_ms for r in runs):8.1f}"
                f" {sum(r.lost for r in runs):5d} {cpu:23.2f} {max(r.peak_rss_mib for r in runs):13.1f}"
            )
        node_rate = statistics.median(r.deliveries_per_s for r in results[("node", subscribers)])
        for name in ("stock", "stock+TLS"):
            baseline = statistics.median(r.deliveries_per_s for r in results[(name, subscribers)])
            print(f"  ratio node / {name:9} ({subscribers} subscribers): {node_rate / baseline:5.2f}  (target >= 0.8)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
