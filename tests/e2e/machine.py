"""A machine that boots the node's user data as EC2 would, on this machine.

A Debian 13 root filesystem (debootstrap, cached under build/boot), booted with systemd-nspawn
(systemd as PID 1), cloud-init reading the user data from its NoCloud seed, a loop device as the
EBS data volume, and a network namespace of its own whose only other host is this one, where moto
stands in for S3, SQS, SSM and CloudWatch. Nothing the machine tries to reach outside (GitHub,
PyPI, Amazon) is reachable, as a test wants.

What differs from an instance is configuration, never the node's code: the AWS endpoint and
credentials in the machine's AWS configuration (an instance gets them from its profile), pip
pointed at a wheelhouse of the exact files requirements-node.lock hashes (an instance downloads
the same files from PyPI), and cloud-init told that it runs in a container with no network to
configure and no archive to reach (the packages are already installed).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "build" / "boot"
SUITE = "trixie"  # Debian 13: Ubuntu's archive is not reachable from here
MIRROR = "http://deb.debian.org/debian"
# What the node's user data installs, and what cloud-init and the harness need inside.
# chrony and openssh-client are in Ubuntu's image: cloud-init configures NTP and makes host keys.
MACHINE_PACKAGES = (
    "cloud-init",
    "python3-pip",
    "e2fsprogs",
    "iproute2",
    "procps",
    "curl",
    "less",
    "chrony",
    "openssh-client",
)
HOST_PACKAGES = ("debootstrap", "systemd-container", "iproute2", "util-linux", "e2fsprogs", "gnupg", "dpkg-dev")


def run(*command: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), check=check, text=True, capture_output=True, **kwargs)


def _cache_key(packages: tuple[str, ...]) -> str:
    lock = (REPO / "requirements-node.lock").read_bytes()
    material = json.dumps([SUITE, sorted(packages), sorted(MACHINE_PACKAGES)]).encode() + lock
    return hashlib.sha256(material + Path(__file__).read_bytes()).hexdigest()[:16]


def root_filesystem(packages: tuple[str, ...]) -> Path:
    """The cached Debian root with cloud-init, the node's packages and its wheelhouse; built once.

    The wheelhouse is what `pip download` fetches with the machine's own Python for
    requirements-node.lock: the files PyPI serves an instance, under the hashes the lock pins.
    """
    key = _cache_key(packages)
    base = CACHE / f"root-{key}"
    if (base / ".complete").exists():
        return base
    CACHE.mkdir(parents=True, exist_ok=True)
    for stale in CACHE.glob("root-*"):
        shutil.rmtree(stale, ignore_errors=True)
    building = CACHE / f"building-{key}"
    shutil.rmtree(building, ignore_errors=True)
    run(
        "debootstrap",
        "--variant=minbase",
        "--include=systemd,systemd-sysv,dbus,ca-certificates",
        SUITE,
        str(building),
        MIRROR,
    )
    # Inside, names resolve and TLS verifies as on this host (its proxy's CA), for the build only.
    shutil.copy("/etc/resolv.conf", building / "etc/resolv.conf")
    hosts = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"
    shutil.copy("/etc/hosts", building / "etc/hosts")
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", building / "tmp/host-ca.crt")
    chroot = ("chroot", str(building))
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "DEBIAN_FRONTEND": "noninteractive",
        "PIP_CONFIG_FILE": "/dev/null",
        **dict.fromkeys(("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "PIP_CERT"), "/tmp/host-ca.crt"),
    }
    run(*chroot, "apt-get", "update", "-qq", env=env)
    run(*chroot, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages, *MACHINE_PACKAGES, env=env)
    # The wheelhouse: the files PyPI gives the machine's own Python (3.13) for the lock.
    shutil.copy(REPO / "requirements-node.lock", building / "tmp/requirements-node.lock")
    run(
        *chroot,
        "python3",
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--require-hashes",
        "--dest",
        "/var/cache/wis2-wheelhouse",
        "-r",
        "/tmp/requirements-node.lock",
        env=env,
    )
    (building / "etc/hosts").write_text(hosts)
    _configure(building)
    (building / ".complete").touch()
    building.rename(base)
    return base


def _configure(root: Path) -> None:
    """cloud-init in a container: NoCloud only, no network, no archive; pip from the wheelhouse."""
    (root / "etc/cloud/cloud.cfg.d/10-boot-test.cfg").write_text(
        "datasource_list: [ NoCloud, None ]\nnetwork: {config: disabled}\napt: {preserve_sources_list: true}\n"
    )
    for sources in [root / "etc/apt/sources.list", *(root / "etc/apt/sources.list.d").glob("*")]:
        sources.write_text("")
    (root / "etc/pip.conf").write_text("[global]\nno-index = true\nfind-links = /var/cache/wis2-wheelhouse\n")
    (root / "etc/machine-id").write_text("")
    (root / "etc/resolv.conf").write_text("")
    for tmp in (root / "tmp").iterdir():
        tmp.unlink()
    # Services whose HOME is their own (the agent's) find the machine's AWS configuration here,
    # as every process of an instance finds its instance profile.
    conf = root / "etc/systemd/system.conf.d"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "10-aws.conf").write_text(
        "[Manager]\nDefaultEnvironment=AWS_CONFIG_FILE=/etc/aws/config "
        "AWS_SHARED_CREDENTIALS_FILE=/etc/aws/credentials\n"
    )


@dataclass
class Network:
    """A namespace with one veth pair: the host at .1, the machine at .2."""

    name: str = "wis2boot"
    host: str = "10.231.7.1"
    machine: str = "10.231.7.2"

    def up(self) -> Network:
        self.down()
        run("ip", "netns", "add", self.name)
        run("ip", "link", "add", f"{self.name}-h", "type", "veth", "peer", "name", f"{self.name}-m")
        run("ip", "link", "set", f"{self.name}-m", "netns", self.name)
        run("ip", "addr", "add", f"{self.host}/24", "dev", f"{self.name}-h")
        run("ip", "link", "set", f"{self.name}-h", "up")
        run("ip", "-n", self.name, "addr", "add", f"{self.machine}/24", "dev", f"{self.name}-m")
        run("ip", "-n", self.name, "link", "set", f"{self.name}-m", "up")
        run("ip", "-n", self.name, "link", "set", "lo", "up")
        return self

    def down(self) -> None:
        run("ip", "link", "del", f"{self.name}-h", check=False)
        run("ip", "netns", "del", self.name, check=False)

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"


@dataclass
class Volume:
    """The EBS data volume: a sparse file behind a loop device, outliving machines."""

    file: Path
    size_mb: int = 1024
    device: str | None = None

    def attach(self) -> str:
        if not self.file.exists():
            with open(self.file, "wb") as handle:
                handle.truncate(self.size_mb * 1024 * 1024)
        self.device = run("losetup", "-f", "--show", str(self.file)).stdout.strip()
        return self.device

    def detach(self) -> None:
        if self.device:
            run("losetup", "-d", self.device, check=False)
            self.device = None


@dataclass
class Machine:
    """One boot of a root filesystem (a copy of the cached one: a new instance, or the same disk again)."""

    root: Path
    network: Network
    volume: Volume
    volume_path: str  # where the node's wis2-data-volume looks for the volume
    log: Path
    process: subprocess.Popen | None = None
    boots: int = field(default=0)

    @classmethod
    def new_instance(cls, base: Path, root: Path, user_data: bytes, instance_id: str, aws: dict, **kwargs) -> Machine:
        """A fresh root from the cached one, seeded with this user data and instance-id."""
        if root.exists():
            shutil.rmtree(root)
        run("cp", "-a", "--reflink=auto", str(base), str(root))
        seed = root / "var/lib/cloud/seed/nocloud"
        seed.mkdir(parents=True, exist_ok=True)
        (seed / "user-data").write_bytes(user_data)
        (seed / "meta-data").write_text(f"instance-id: {instance_id}\nlocal-hostname: wis2-node\n")
        aws_dir = root / "etc/aws"
        aws_dir.mkdir(parents=True, exist_ok=True)
        (aws_dir / "config").write_text(f"[default]\nregion = {aws['region']}\nendpoint_url = {aws['endpoint']}\n")
        (aws_dir / "credentials").write_text(
            "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
        )
        (aws_dir / "credentials").chmod(0o644)  # the node's unprivileged services read it as a profile
        return cls(root=root, **kwargs)

    def boot(self) -> Machine:
        device = self.volume.attach()
        self.boots += 1
        console = open(self.log.with_suffix(f".boot{self.boots}.log"), "w")  # noqa: SIM115  (the console for the life of the machine)
        self.process = subprocess.Popen(
            [
                "systemd-nspawn",
                "--register=no",
                "--keep-unit",
                "--quiet",
                "-D",
                str(self.root),
                "-b",
                f"--network-namespace-path={self.network.path}",
                f"--bind={device}:{self.volume_path}",
                "--resolv-conf=off",
                "--timezone=off",
                "--link-journal=no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def pid1(self) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            if children.exists() and children.read_text().split():
                return int(children.read_text().split()[0])
            time.sleep(0.2)
        raise RuntimeError("the machine's systemd never started")

    def sh(self, command: str, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess:
        """A shell command inside the machine, as root, with the machine's view of everything."""
        return subprocess.run(
            ["nsenter", "-t", str(self.pid1), "-a", "/bin/sh", "-c", command],
            text=True,
            capture_output=True,
            check=check,
            timeout=timeout,
        )

    def wait_for_cloud_init(self, timeout: float = 900) -> dict:
        """cloud-init's own account of the boot, once it has finished (status --format json)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the machine stopped; see {self.log}")
            if list((self.root / "var/lib/cloud/instances").glob("*/boot-finished")):
                result = self.sh("cloud-init status --format json")
                status = json.loads(result.stdout or "{}")
                if status.get("status") in ("done", "error", "degraded done"):
                    return status
            time.sleep(2)
        raise TimeoutError("cloud-init did not finish")

    def wait_until(self, command: str, timeout: float = 300, interval: float = 2) -> str:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.sh(command)
            if last.returncode == 0:
                return last.stdout
            time.sleep(interval)
        raise TimeoutError(f"{command!r} never succeeded: {last.stdout if last else ''}{last.stderr if last else ''}")

    def journal(self, unit: str = "") -> str:
        return self.sh(f"journalctl --no-pager -o short-monotonic {'-u ' + unit if unit else ''}").stdout

    def power_off(self, timeout: float = 180) -> bool:
        """Stop the machine as EC2 does (the init system shuts down), SIGKILL after `timeout`.

        Return whether it stopped cleanly: a killed machine saved nothing at stop (mosquitto writes
        its sessions then), and a test of what survives a clean stop must not pass or fail on that.
        """
        clean = True
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                clean = False
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
        self.volume.detach()
        return clean
