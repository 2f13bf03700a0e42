"""Run a stack's rendered broker and HTTPS server on this machine, on loopback ports.

The same templates as the VM, rebased under a work directory, with a self-signed certificate
and a freshly generated publisher password. Used by `python -m wis2node local`, the demo, the
tests and the benchmarks.
"""

from __future__ import annotations

import datetime
import getpass
import http.client
import ipaddress
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from wis2node.endpoints import PUBLISHER_USER, READ_ONLY_PASSWORD, READ_ONLY_USER
from wis2node.payload import DATA_ROOT, LOCAL_FILES, DeployFacts, Layout, Ports, render_files, runtime_config
from wis2node.settings import NodeSettings


def free_port() -> int:
    """A TCP port nobody listens on at the moment, on loopback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_certificate(directory: Path, fqdn: str, days: int = 90, age_days: float = 0) -> Path:
    """A local CA and a server certificate for the FQDN, localhost and 127.0.0.1; returns the CA file.

    The server certificate is valid `days` in all, issued `age_days` ago."""
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=age_days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"wis2-node local CA for {fqdn}")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [
        x509.DNSName(fqdn),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, fqdn)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "fullchain.pem").write_bytes(cert.public_bytes(pem) + ca.public_bytes(pem))
    key_file = directory / "privkey.pem"
    key_file.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key_file.chmod(0o600)
    return directory / "ca.pem"


@dataclass
class LocalNode:
    """A running local node: its layout, credentials and the two daemons."""

    settings: NodeSettings
    workdir: Path
    ports: Ports = field(
        default_factory=lambda: Ports(
            mqtts=free_port(), https=free_port(), mqtt_local=free_port(), websockets=free_port()
        )
    )
    bucket: str = ""  # the ingest bucket the local agent reads (tests: one in moto)

    def __post_init__(self) -> None:
        self.workdir = self.workdir.resolve()
        user = getpass.getuser()
        self.layout = Layout(
            prefix=str(self.workdir), ports=self.ports, public_host="127.0.0.1", broker_user=user, web_user=user
        )
        self.publisher_password = secrets.token_urlsafe(24)
        self.broker: subprocess.Popen | None = None
        self.web: subprocess.Popen | None = None

    # -- paths -------------------------------------------------------------------------------

    def path(self, vm_path: str) -> Path:
        return Path(self.layout.path(vm_path))

    @property
    def public_dir(self) -> Path:
        return self.path(DATA_ROOT + "/public")

    @property
    def tls_dir(self) -> Path:
        return self.path(DATA_ROOT + "/tls")

    @property
    def ca_file(self) -> Path:
        return self.tls_dir / "ca.pem"

    # -- life cycle --------------------------------------------------------------------------

    def prepare(self) -> None:
        """Write the rendered files, the certificate and the password file; start nothing."""
        for file in render_files(self.settings, DeployFacts(data_volume_id="local", bucket=self.bucket), self.layout):
            if file.path.removeprefix(str(self.workdir)) in LOCAL_FILES:
                target = Path(file.path)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(file.content)
                target.chmod(int(file.mode, 8))
        # What the node's wis2-config unit writes from the stack's SSM parameter on the VM.
        runtime = self.path("/etc/wis2/runtime.json")
        runtime.write_text(json.dumps(runtime_config(self.settings), indent=2) + "\n")
        for vm_dir in (
            "/run/wis2",
            "/run/mosquitto",
            "/var/lib/nginx",
            "/var/log/wis2",
            DATA_ROOT + "/mosquitto",
            DATA_ROOT + "/public/data",
            DATA_ROOT + "/public/metadata",
        ):
            self.path(vm_dir).mkdir(parents=True, exist_ok=True)
        write_certificate(self.tls_dir, self.settings.fqdn)
        passwd = self.path("/etc/mosquitto/passwd")
        passwd.unlink(missing_ok=True)
        for index, (user, password) in enumerate(
            ((READ_ONLY_USER, READ_ONLY_PASSWORD), (PUBLISHER_USER, self.publisher_password))
        ):
            flags = ["-c"] if index == 0 else []
            subprocess.run(
                ["mosquitto_passwd", *flags, "-b", str(passwd), user, password], check=True, capture_output=True
            )

    def start(self) -> LocalNode:
        self.prepare()
        self.start_broker()
        log = (self.path("/var/log/wis2") / "nginx.log").open("ab")
        self.web = subprocess.Popen(
            ["nginx", "-e", "stderr", "-c", str(self.path("/etc/nginx/nginx.conf")), "-g", "daemon off;"],
            stdout=log,
            stderr=log,
        )
        _wait_for_port(self.ports.https, self.web, "nginx")
        self.write_node_json()
        return self

    def start_broker(self) -> None:
        log = (self.path("/var/log/wis2") / "mosquitto.log").open("ab")
        # As the VM's service does (its drop-in): the TLS settings mosquitto.conf cannot express.
        environment = {**os.environ, "OPENSSL_CONF": str(self.path("/etc/mosquitto/openssl.cnf"))}
        self.broker = subprocess.Popen(
            ["mosquitto", "-c", str(self.path("/etc/mosquitto/mosquitto.conf"))],
            stdout=log,
            stderr=log,
            env=environment,
        )
        for port in (self.ports.mqtt_local, self.ports.mqtts, self.ports.websockets):
            _wait_for_port(port, self.broker, "mosquitto")

    def stop_broker(self) -> None:
        _stop(self.broker)
        self.broker = None

    def stop(self) -> None:
        _stop(self.web)
        self.stop_broker()
        self.web = None

    def __enter__(self) -> LocalNode:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what clients need -------------------------------------------------------------------

    def description(self) -> dict:
        fqdn = self.settings.fqdn
        return {
            "stack": self.settings.stack,
            "centre_id": self.settings.centre_id,
            "fqdn": fqdn,
            "host": "127.0.0.1",
            "ports": {"mqtts": self.ports.mqtts, "https": self.ports.https, "mqtt_local": self.ports.mqtt_local},
            "endpoints": {
                "mqtts": f"mqtts://{READ_ONLY_USER}:{READ_ONLY_PASSWORD}@127.0.0.1:{self.ports.mqtts}",
                "wss": f"wss://127.0.0.1:{self.ports.https}/mqtt",
                "https": f"https://127.0.0.1:{self.ports.https}/",
            },
            "ca_certificate": str(self.ca_file),
            "data_dir": str(self.public_dir),
            "publisher": {"username": PUBLISHER_USER, "password": self.publisher_password},
        }

    def get(self, href: str) -> tuple[int, bytes]:
        """GET a link of this node (https://<fqdn>/...), sending the FQDN (SNI and Host) to its loopback port."""
        url = urlsplit(href)
        if not url.hostname:
            raise ValueError(f"{href!r}: expected a link https://<fqdn>/...")
        host = url.hostname
        context = ssl.create_default_context(cafile=str(self.ca_file))
        connection = http.client.HTTPSConnection(host, self.ports.https, context=context, timeout=10)
        connection.sock = context.wrap_socket(
            socket.create_connection(("127.0.0.1", self.ports.https), timeout=10), server_hostname=host
        )
        try:
            connection.request("GET", url.path, headers={"Host": host})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def write_node_json(self) -> Path:
        target = self.workdir / "node.json"
        target.write_text(json.dumps(self.description(), indent=2) + "\n")
        target.chmod(0o600)
        return target


def _wait_for_port(port: int, process: subprocess.Popen, name: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with status {process.returncode}; see its log")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on port {port} within {timeout} s")


def _stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def require_daemons() -> None:
    """Fail early, with the fix, when mosquitto or nginx is not installed."""
    missing = [
        tool
        for tool in ("mosquitto", "mosquitto_passwd", "nginx")
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}")
    ]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: run `make demo` or `apt-get install mosquitto nginx` first")
