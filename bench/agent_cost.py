"""The agent's own cost, apart from moto's: CPU per file and resident memory, against a plain boto3 loop.

Two consumers take the same burst of small files from the same moto server, one after the other:
- the stock baseline, a plain boto3 loop in a process of its own (receive ten events, read each
  object, delete the ten in one batch; nothing else), the least any agent must do per file;
- the real agent (`python -m wis2node.node agent`, as the VM's unit runs it) against a local broker:
  it also writes each file, checks it with the node's rules and WMO's validators, publishes its
  notification at QoS 1 over TLS and records it.
Each process's CPU is read from /proc (its client side only; moto's own CPU is printed apart), from
the first upload until its last event is deleted. Resident memory is read idle (started, connected,
the dataset announced) and after the burst. Before that, in fresh interpreters: what importing
pywis-pubsub's WNM test suite costs the ordinary way (the package's __init__ and every command)
and as the agent does it (wis2node.node.wmo_checks.wnm_test_suite: the suite's module only).

    venv/bin/python bench/agent_cost.py [--files 1000]

Targets (issue 16): agent CPU per file at most 2x the plain loop's; agent resident memory < 60 MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote_plus


def plain_loop(files: int) -> int:
    """The baseline's process: receive, read, delete until `files` file events are consumed."""
    import boto3

    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    queue = sqs.get_queue_url(QueueName=os.environ["BENCH_QUEUE"])["QueueUrl"]
    bucket = os.environ["BENCH_BUCKET"]
    print("ready", flush=True)
    consumed = 0
    while consumed < files:
        batch = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        for message in batch:
            for record in json.loads(message["Body"]).get("Records", []):
                s3.get_object(Bucket=bucket, Key=unquote_plus(record["s3"]["object"]["key"]))["Body"].read()
                consumed += 1
        if batch:
            sqs.delete_message_batch(
                QueueUrl=queue,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(batch)],
            )
    print("done", flush=True)
    sys.stdin.read()  # stay up (idle) until the bench has read this process's CPU and memory
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["--plain-loop"]:  # the baseline's own process: boto3 only
    sys.exit(plain_loop(int(sys.argv[2])))

import paho.mqtt.client as mqtt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.agent_burst import cpu_seconds, resident_mib, server_pid, upload  # noqa: E402
from wis2node.local import LocalNode  # noqa: E402
from wis2node.localcloud import AgentProcess, LocalIngest, moto_server, run_environment, validator_home  # noqa: E402
from wis2node.metadata import metadata_dir  # noqa: E402
from wis2node.stackfile import find_stack  # noqa: E402

TOPIC = "data/core/weather/surface-based-observations/synop"
# As the VM's unit runs the agent (AgentProcess): the same for the plain loop, so memory compares.
ARENAS = {"MALLOC_ARENA_MAX": "2"}

# In a fresh interpreter: import the WNM suite one way or the other; time, memory added, numpy or not.
IMPORT_PROBE = """
import json, sys, time
def rss():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) / 1024
before, start = rss(), time.perf_counter()
if sys.argv[1] == "ordinary":
    try:
        from pywis_pubsub.wnm.ets import WNMTestSuite
    except ModuleNotFoundError:
        from pywis_pubsub.ets import WNMTestSuite
else:
    from wis2node.node.wmo_checks import wnm_test_suite
    WNMTestSuite = wnm_test_suite()
print(json.dumps({"ms": (time.perf_counter() - start) * 1000, "mib": rss() - before,
                  "modules": len(sys.modules), "numpy": "numpy" in sys.modules}))
"""


def import_cost(how: str, home: Path, runs: int = 5) -> dict:
    """The median of `runs` fresh imports of the WNM suite, `how` = ordinary or suite-only."""
    results = []
    for _ in range(runs):
        run = subprocess.run(
            [sys.executable, "-c", IMPORT_PROBE, how],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "HOME": str(home)},
            check=True,
        )
        results.append(json.loads(run.stdout))
    results.sort(key=lambda r: r["ms"])
    return results[len(results) // 2]


def system_seconds(pid: int) -> float:
    """The kernel's share of cpu_seconds: system calls, and threads waking each other."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[12]) / os.sysconf("SC_CLK_TCK")


def queue_empty(ingest: LocalIngest, timeout: float = 60) -> None:
    """Until no event is waiting or held: the consumer has deleted all it took."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attributes = ingest.sqs.get_queue_attributes(
            QueueUrl=ingest.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        if not any(int(value) for value in attributes.values()):
            return
        time.sleep(0.1)
    raise RuntimeError("the queue did not empty")


def run_baseline(aws: dict, ingest: LocalIngest, moto: int, files: int, record_id: str, prefix: str) -> dict:
    env = {
        **run_environment(aws),
        **ARENAS,
        "BENCH_QUEUE": ingest.queue_url.rsplit("/", 1)[1],
        "BENCH_BUCKET": ingest.bucket,
    }
    loop = subprocess.Popen(
        [sys.executable, __file__, "--plain-loop", str(files)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert loop.stdout.readline().strip() == "ready"
        time.sleep(2)  # a long poll or two: idle, as the agent is measured
        idle = resident_mib(loop.pid)
        cpu, moto_cpu, start = cpu_seconds(loop.pid), cpu_seconds(moto), time.perf_counter()
        system = system_seconds(loop.pid)
        upload(ingest, [f"{TOPIC}/{prefix}-{i:05d}.bufr4" for i in range(files)], record_id)
        assert loop.stdout.readline().strip() == "done"
        queue_empty(ingest)
        result = {
            "cpu": cpu_seconds(loop.pid) - cpu,
            "moto": cpu_seconds(moto) - moto_cpu,
            "system": system_seconds(loop.pid) - system,
            "seconds": time.perf_counter() - start,
            "idle_mib": idle,
            "after_mib": resident_mib(loop.pid),
        }
    finally:
        loop.stdin.close()
        loop.wait(timeout=10)
    return result


def run_agent(
    aws: dict,
    ingest: LocalIngest,
    moto: int,
    files: int,
    record: Path,
    record_id: str,
    settings,
    workdir: Path,
    home: Path,
    profile: Path | None,
    prefix: str,
) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    with LocalNode(settings, workdir / "node", bucket=ingest.bucket) as node:
        ingest.ssm.put_parameter(
            Name=settings.parameter_name("publisher-password"),
            Type="SecureString",
            Value=node.publisher_password,
            Overwrite=True,
        )
        received: set[str] = set()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.username_pw_set("everyone", "everyone")
        context = ssl.create_default_context(cafile=str(node.ca_file))
        context.check_hostname = False
        client.tls_set_context(context)
        client.on_message = lambda c, u, message: received.add(
            next(link["href"] for link in json.loads(message.payload)["links"]).split("/", 3)[3]
        )
        client.connect("127.0.0.1", node.ports.mqtts)
        client.loop_start()
        client.subscribe(f"origin/a/wis2/{settings.centre_id}/#", qos=1)
        ingest.put_record(record)
        agent = AgentProcess(node.path("/etc/wis2/node.json"), aws, workdir / "agent.log", home=home)
        try:
            wait_until(lambda: f"metadata/{record.name}" in received, 60)  # up, and the dataset announced
            queue_empty(ingest)
            cpu = cpu_seconds(agent.process.pid)
            time.sleep(5)
            idle_cpu = (cpu_seconds(agent.process.pid) - cpu) / 5
            idle = resident_mib(agent.process.pid)
            keys = [f"{TOPIC}/{prefix}-{i:05d}.bufr4" for i in range(files)]
            spy = (
                subprocess.Popen(
                    [
                        "py-spy",
                        "record",
                        "--pid",
                        str(agent.process.pid),
                        "--format",
                        "raw",
                        "--output",
                        str(profile),
                        "--rate",
                        "250",
                        "--nonblocking",
                        "--gil",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                if profile
                else None
            )
            cpu, moto_cpu, start = cpu_seconds(agent.process.pid), cpu_seconds(moto), time.perf_counter()
            system = system_seconds(agent.process.pid)
            upload(ingest, keys, record_id)
            wait_until(lambda: all(key in received for key in keys), 300)
            queue_empty(ingest)
            if spy:
                spy.send_signal(signal.SIGINT)  # py-spy writes its profile on an interrupt
                spy.wait(timeout=30)
            result = {
                "cpu": cpu_seconds(agent.process.pid) - cpu,
                "moto": cpu_seconds(moto) - moto_cpu,
                "system": system_seconds(agent.process.pid) - system,
                "seconds": time.perf_counter() - start,
                "idle_mib": idle,
                "after_mib": resident_mib(agent.process.pid),
                "idle_cpu": idle_cpu,
                "announced": sum(key in received for key in keys),
            }
        finally:
            agent.stop()
            client.loop_stop()
    problems = [
        line for line in (workdir / "agent.log").read_text().splitlines() if line.startswith(("WARNING", "ERROR"))
    ]
    return {**result, "problems": problems}


def wait_until(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of both consumers (default 3); the figures are the median round's, by ratio",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="FILE",
        help="also record the agent's burst with py-spy (pip install py-spy; not in the requirements) "
        "as collapsed stacks in FILE (threads holding the GIL only: CPU in Python, not waits); "
        "its sampling adds to the agent's CPU",
    )
    args = parser.parse_args()
    settings = find_stack("aq-examplemet-test").settings()
    record = metadata_dir(settings.stack) / "surface-based-observations-synop.json"  # the dataset of TOPIC
    record_id = json.loads(record.read_text())["id"]
    rounds: list[tuple[dict, dict]] = []
    with tempfile.TemporaryDirectory() as workdir, moto_server(settings.region) as aws:
        workdir = Path(workdir)
        home = validator_home(workdir / "validators")
        ordinary, suite_only = import_cost("ordinary", home), import_cost("suite-only", home)
        ingest = LocalIngest(aws, settings, visibility_timeout=30)
        moto = server_pid(aws)
        for turn in range(args.rounds):
            # consumers alternate which goes first, so a drift of the machine's speed during the run
            # (another tenant, a warmer moto) weighs on both alike
            plain: dict = {}
            agent: dict = {}
            for consumer in ("plain", "agent") if turn % 2 == 0 else ("agent", "plain"):
                if consumer == "plain":
                    plain = run_baseline(aws, ingest, moto, args.files, record_id, f"plain-{turn}")
                else:
                    agent = run_agent(
                        aws,
                        ingest,
                        moto,
                        args.files,
                        record,
                        record_id,
                        settings,
                        workdir / f"round-{turn}",
                        home,
                        args.py_spy.resolve() if args.py_spy and turn == 0 else None,
                        f"agent-{turn}",
                    )
            rounds.append((plain, agent))

    def per_file(result: dict, key: str = "cpu") -> float:
        return result[key] / args.files * 1000

    ratios = [per_file(agent) / per_file(plain) for plain, agent in rounds]
    middle = sorted(range(len(rounds)), key=lambda n: ratios[n])[len(rounds) // 2]  # the median round
    plain, agent = rounds[middle]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {cpu_model()}; Python {platform.python_version()}")
    print(
        f"{args.files} files of {len(f'{TOPIC}/agent-00000.bufr4') * 8} bytes, uploaded by 8 threads "
        f"to the same moto server, taken by each consumer in turn; {args.rounds} rounds"
    )
    print("importing pywis-pubsub's WNM suite in a fresh interpreter (median of 5):")
    for label, cost in (
        ("the ordinary way (package __init__)", ordinary),
        ("as the agent does (suite only)", suite_only),
    ):
        print(
            f"  {label:38s} {cost['ms']:6.0f} ms  {cost['mib']:5.1f} MiB  {cost['modules']:4d} modules  "
            f"numpy {'loaded' if cost['numpy'] else 'not loaded'}"
        )
    print(
        f"  suite only / ordinary: time {suite_only['ms'] / ordinary['ms']:.2f}, "
        f"memory {suite_only['mib'] / ordinary['mib']:.2f}"
    )
    print("client CPU per file (from the first upload until the last event is deleted; moto apart), each round:")
    for turn, ((plain_n, agent_n), ratio) in enumerate(zip(rounds, ratios, strict=True)):
        print(
            f"  round {turn + 1}: plain loop {per_file(plain_n):5.2f} ms (system {per_file(plain_n, 'system'):.2f}), "
            f"agent {per_file(agent_n):5.2f} ms (system {per_file(agent_n, 'system'):.2f}; "
            f"{agent_n['announced']} of {args.files} announced), ratio {ratio:.2f}"
        )
    print(f"the median round ({middle + 1}):")
    print(
        f"  plain boto3 loop (receive, read, delete): {per_file(plain):5.2f} ms  "
        f"(system {per_file(plain, 'system'):.2f}; {plain['seconds']:.1f} s, "
        f"moto {per_file(plain, 'moto'):.1f} ms a file)"
    )
    print(
        f"  agent (also write, check, publish):       {per_file(agent):5.2f} ms  "
        f"(system {per_file(agent, 'system'):.2f}; {agent['seconds']:.1f} s, "
        f"moto {per_file(agent, 'moto'):.1f} ms a file)"
    )
    print(f"  ratio agent / plain loop: {ratios[middle]:.2f}  (target <= 2)")
    print(f"  agent idle (long-polling, no events): {agent['idle_cpu'] * 100:.1f}% of one core")
    print("resident memory (MALLOC_ARENA_MAX=2 for both, as the VM's unit sets it), the median round:")
    print(f"  plain boto3 loop: idle {plain['idle_mib']:5.1f} MiB, after the burst {plain['after_mib']:5.1f} MiB")
    print(
        f"  agent:            idle {agent['idle_mib']:5.1f} MiB, after the burst {agent['after_mib']:5.1f} MiB  "
        f"(target < 60 MiB; the largest of all rounds {max(a['after_mib'] for _, a in rounds):.1f})"
    )
    print(f"  ratio agent / plain loop after the burst: {agent['after_mib'] / plain['after_mib']:.2f}")
    problems = [line for _, a in rounds for line in a["problems"]]
    print(f"agent warnings and errors: {len(problems)}", *problems[:5], sep="\n  ")
    return 0


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
