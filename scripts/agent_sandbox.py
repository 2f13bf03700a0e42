"""The node's own services under their real systemd units, sandbox included, in a booted container.

    python scripts/agent_sandbox.py ROOTFS

ROOTFS is a Debian root filesystem with systemd and /var/lib/wis2node/current/venv holding
requirements-node.txt (see ../shared/boot-test-notes.md: debootstrap, then pip in the chroot).
The script copies the node package, the rendered units and node.json into it, creates the
agent's account as cloud-init's `users:` does, boots it with systemd-nspawn on this machine's
network (loopback only: moto, mosquitto and nginx of a local node run here), starts the units
and checks what they did: the agent's files published with the right owner and mode, its
privileges, writes outside its folders refused by the sandbox itself; retention; the reporter
(a dynamic user) reporting to CloudWatch; the certificate service installing a stack's
certificate for mosquitto and sending it SIGHUP. Not covered: Let's Encrypt (ACME, Route 53).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.wis2node.mqtt_clients import Client
from wis2node.local import LocalNode, write_certificate
from wis2node.localcloud import SHARED_BUNDLES, LocalIngest, moto_server
from wis2node.metadata import metadata_dir
from wis2node.payload import DATA_ROOT, DeployFacts, Layout, render_files
from wis2node.stackfile import find_stack

SETTINGS = find_stack("aq-examplemet-test").settings()
SYNOP = "data/core/weather/surface-based-observations/synop"
REPO = Path(__file__).resolve().parents[1]
UNITS = ("agent", "retention", "reporter", "certificate")


def inside(pid1: int, *command: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", "-t", str(pid1), "-a", *command], capture_output=True, text=True, check=check)


def client_metrics(ingest: LocalIngest) -> list[str]:
    """The metric names CloudWatch (moto) has received."""
    from wis2node.localcloud import client

    return sorted({m["MetricName"] for m in client("cloudwatch", ingest.environment).list_metrics()["Metrics"]})


def install(root: Path, node: LocalNode, ingest: LocalIngest) -> None:
    layout = Layout(ports=node.ports)  # the VM's paths, this node's loopback ports
    for file in render_files(SETTINGS, DeployFacts(data_volume_id="local", bucket=ingest.bucket), layout):
        if file.path in (
            "/etc/wis2/node.json",
            "/usr/local/sbin/wis2-install-certificate",
            *(f"/etc/systemd/system/wis2-{unit}.service" for unit in UNITS),
        ):
            (root / file.path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (root / file.path.lstrip("/")).write_bytes(file.content)
            (root / file.path.lstrip("/")).chmod(int(file.mode, 8))
    # the certificate from the stack (tlsMode provided), through SSM
    config = json.loads((root / "etc/wis2/node.json").read_text())
    config["tls"].update(mode="provided", certificate_parameter="/sandbox/certificate", key_parameter="/sandbox/key")
    (root / "etc/wis2/node.json").write_text(json.dumps(config))
    write_certificate(root.parent / "provided", SETTINGS.fqdn)
    for name, file in (("certificate", "fullchain.pem"), ("key", "privkey.pem")):
        ingest.ssm.put_parameter(
            Name=f"/sandbox/{name}",
            Type="SecureString",
            Value=(root.parent / "provided" / file).read_text(),
            Overwrite=True,
        )
    # AWS is moto on this machine's loopback (on EC2 the instance role and the real endpoints)
    for unit in UNITS:
        drop_in = root / f"etc/systemd/system/wis2-{unit}.service.d/moto.conf"
        drop_in.parent.mkdir(parents=True, exist_ok=True)
        drop_in.write_text("[Service]\n" + "".join(f"Environment={k}={v}\n" for k, v in ingest.environment.items()))
    software = root / "opt/wis2node/src"
    shutil.rmtree(software, ignore_errors=True)
    shutil.copytree(REPO / "wis2node", software / "wis2node", ignore=shutil.ignore_patterns("__pycache__"))
    data = root / DATA_ROOT.lstrip("/")
    shutil.rmtree(data, ignore_errors=True)
    for folder in ("public/data", "public/metadata", "agent", "validators", "tls", "letsencrypt"):  # as the bootstrap
        (data / folder).mkdir(parents=True, mode=0o755)
    (data / "tls/privkey.pem").write_text("the node's key\n")
    (root / "etc/cron.d").mkdir(exist_ok=True)
    shutil.copytree(SHARED_BUNDLES, data / "validators", dirs_exist_ok=True)
    subprocess.run(
        [
            "chroot",
            str(root),
            "sh",
            "-c",
            "id wis2-agent || useradd --system --home-dir "
            f"{DATA_ROOT}/agent --shell /usr/sbin/nologin wis2-agent; id mosquitto || useradd --system "
            "mosquitto",
        ],
        check=True,
        capture_output=True,
    )
    (root / "etc/machine-id").write_text("")


def main(rootfs: str) -> int:
    root = Path(rootfs).resolve()
    record = metadata_dir(SETTINGS.stack) / "surface-based-observations-synop.json"  # the dataset of SYNOP
    record_id = json.loads(record.read_text())["id"]
    failures = []

    def check(ok: bool, what: str) -> None:
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            failures.append(what)

    with moto_server(SETTINGS.region) as environment, LocalNode(SETTINGS, root.parent / "node-host") as node:
        ingest = LocalIngest(environment, SETTINGS)
        ingest.ssm.put_parameter(
            Name=SETTINGS.parameter_name("publisher-password"), Type="SecureString", Value=node.publisher_password
        )
        install(root, node, ingest)
        machine = subprocess.Popen(
            ["systemd-nspawn", "--register=no", "--keep-unit", "-q", "-D", str(root), "-b"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            pid1 = 0
            while time.monotonic() < deadline:
                children = subprocess.run(["pgrep", "-P", str(machine.pid)], capture_output=True, text=True).stdout
                if children.split():
                    pid1 = int(children.split()[0])
                    if inside(pid1, "systemctl", "is-system-running", check=False).stdout.strip() in (
                        "running",
                        "degraded",
                    ):
                        break
                time.sleep(1)
            print(inside(pid1, "systemctl", "--version").stdout.splitlines()[0])
            inside(pid1, "systemctl", "start", "wis2-agent.service")
            reader = Client(node, "everyone", "everyone")
            reader.subscribe(f"origin/a/wis2/{SETTINGS.centre_id}/#")
            ingest.put_record(record)
            ingest.put(f"{SYNOP}/A_SMAQ01EXMP251200.bufr4", b"observed", **{"metadata-id": record_id})
            received = reader.wait_for(2, timeout=60)
            reader.close()
            check(len(received) == 2, f"the sandboxed agent published the record and the file ({len(received)} of 2)")
            published = root / DATA_ROOT.lstrip("/") / "public" / SYNOP / "A_SMAQ01EXMP251200.bufr4"
            owner = inside(
                pid1, "stat", "-c", "%U %a", f"{DATA_ROOT}/public/{SYNOP}/A_SMAQ01EXMP251200.bufr4", check=False
            ).stdout.strip()
            check(
                published.is_file() and owner == "wis2-agent 644", f"the published file is wis2-agent's, 0644 ({owner})"
            )
            pid = inside(pid1, "systemctl", "show", "-p", "MainPID", "--value", "wis2-agent.service").stdout.strip()
            lines = inside(pid1, "cat", f"/proc/{pid}/status").stdout.splitlines()
            status = dict(line.split(":\t", 1) for line in lines if ":\t" in line)
            check(status["CapEff"].strip("0") == "" and status["CapBnd"].strip("0") == "", "no capabilities at all")
            check(status["NoNewPrivs"] == "1" and status["Seccomp"] == "2", "no new privileges, a seccomp filter")
            uid = inside(pid1, "id", "-u", "wis2-agent").stdout.strip()
            gid = inside(pid1, "id", "-g", "wis2-agent").stdout.strip()
            for target in (
                "/etc/cron.d/x",
                f"{DATA_ROOT}/public/index.html",
                f"{DATA_ROOT}/tls/privkey.pem",
                "/root/x",
                "/var/lib/wis2node/current/src/wis2node/node/agent.py",
            ):
                attempt = inside(
                    pid1,
                    "nsenter",
                    "-t",
                    pid,
                    "-a",
                    "-S",
                    uid,
                    "-G",
                    gid,
                    "sh",
                    "-c",
                    f"echo x > {target}",
                    check=False,
                )
                check(
                    attempt.returncode != 0,
                    f"as the agent, in its namespace, writing {target} fails ({attempt.stderr.strip()[-60:]})",
                )
            retention = inside(pid1, "systemctl", "start", "wis2-retention.service", check=False)
            result = inside(pid1, "systemctl", "show", "-p", "Result", "--value", "wis2-retention.service").stdout
            check(retention.returncode == 0 and result.strip() == "success", "retention ran under its sandbox")
            reporter = inside(pid1, "systemctl", "start", "wis2-reporter.service", check=False)
            metrics = client_metrics(ingest)
            check(
                reporter.returncode == 0 and "CertificateDaysLeft" in metrics,
                f"the reporter ran as a dynamic user and reported to CloudWatch ({metrics})",
            )
            # a process of mosquitto's account stands for the broker: the deploy hook sends it SIGHUP
            inside(pid1, "systemd-run", "--unit=fake-broker", "--uid=mosquitto", "sleep", "600")
            broker_pid = inside(pid1, "systemctl", "show", "-p", "MainPID", "--value", "fake-broker").stdout.strip()
            inside(pid1, "sh", "-c", f"mkdir -p /run/mosquitto && echo {broker_pid} > /run/mosquitto/mosquitto.pid")
            check(
                inside(pid1, "systemctl", "is-active", "fake-broker", check=False).stdout.strip() == "active",
                "the broker's stand-in runs as mosquitto",
            )
            certificate = inside(pid1, "systemctl", "start", "wis2-certificate.service", check=False)
            installed = inside(pid1, "stat", "-c", "%U %a", f"{DATA_ROOT}/tls/privkey.pem", check=False).stdout.strip()
            time.sleep(1)  # sleep dies of SIGHUP; a transient unit that is gone tells nothing more
            broker = inside(pid1, "systemctl", "is-active", "fake-broker", check=False).stdout.strip()
            check(
                certificate.returncode == 0 and installed == "mosquitto 600" and broker == "inactive",
                f"the certificate service installed the stack's key for mosquitto ({installed}) and sent it "
                f"SIGHUP (the broker's stand-in: {broker})",
            )
            journal = inside(pid1, "journalctl", *(f"--unit=wis2-{unit}" for unit in UNITS), "--no-pager").stdout
            check("SIGSYS" not in journal and "Operation not permitted" not in journal, "no system call refused")
            print(journal[-3000:])
        finally:
            machine.terminate()
            machine.wait(timeout=30)
    print("all checks passed" if not failures else f"{len(failures)} checks failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
