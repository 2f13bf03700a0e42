"""The served chain is complete on both ports (issue 13, item 6).

A certificate as a public CA issues it (leaf <- intermediate <- root), installed by the node's own
deploy hook, must validate from the leaf to the root with only the certificates the server sends:
clients trust the root alone and never fetch a missing intermediate.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wis2node.local import LocalNode
from wis2node.stackfile import find_stack

# Starts the node's daemons: not in the quick loop, `pytest -m "not slow"` (docs/DEVELOPING.md).
pytestmark = pytest.mark.slow

SETTINGS = find_stack("aq-examplemet-test").settings()
PEM = serialization.Encoding.PEM


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "wis2-node test PKI"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _issue(subject: str, key, issuer: x509.Certificate | None, issuer_key, *, ca: bool) -> x509.Certificate:
    """A certificate as a public CA makes it: key identifiers, key usage, and SANs on the leaf."""
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=45))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None if issuer is None else 0), critical=True
        ).add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        names = [
            x509.DNSName(SETTINGS.fqdn),
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
        builder = (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
        )
    return builder.sign(issuer_key, hashes.SHA256())


def issue_chain(directory: Path, with_intermediate: bool = True) -> tuple[Path, x509.Certificate]:
    """What certbot leaves in live/<name>/ (fullchain.pem, privkey.pem) for a leaf under an intermediate.

    Returns the root (the only certificate clients are given) and the leaf."""
    root_key, intermediate_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _issue("Test Root X1", root_key, None, root_key, ca=True)
    intermediate = _issue("Test Intermediate E1", intermediate_key, root, root_key, ca=True)
    leaf = _issue(SETTINGS.fqdn, leaf_key, intermediate, intermediate_key, ca=False)
    directory.mkdir(parents=True, exist_ok=True)
    chain = leaf.public_bytes(PEM) + (intermediate.public_bytes(PEM) if with_intermediate else b"")
    (directory / "fullchain.pem").write_bytes(chain)
    (directory / "privkey.pem").write_bytes(
        leaf_key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (directory / "root.pem").write_bytes(root.public_bytes(PEM))
    return directory / "root.pem", leaf


def install(node: LocalNode, lineage: Path) -> None:
    """The node's deploy hook, as certbot runs it."""
    run = subprocess.run(
        [str(node.path("/usr/local/sbin/wis2-install-certificate"))],
        capture_output=True,
        text=True,
        env={"RENEWED_LINEAGE": str(lineage), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    assert run.returncode == 0, run.stderr


def served_leaf(port: int) -> x509.Certificate:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with context.wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname=SETTINGS.fqdn
    ) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def validates(port: int, root: Path) -> str:
    """'' if the served chain validates up to the root alone (no partial chains), else OpenSSL's reason."""
    context = ssl.create_default_context(cafile=str(root))
    context.verify_flags &= ~ssl.VERIFY_X509_PARTIAL_CHAIN  # the intermediate is no trust anchor
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    try:
        with context.wrap_socket(
            socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname=SETTINGS.fqdn
        ):
            return ""
    except ssl.SSLCertVerificationError as error:
        return error.verify_message


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with LocalNode(SETTINGS, tmp_path_factory.mktemp("chain")) as running:
        yield running


def install_and_wait(node: LocalNode, lineage: Path, leaf: x509.Certificate) -> None:
    install(node, lineage)
    deadline = time.monotonic() + 20  # the hook signals both daemons; they reload in their own time
    while any(served_leaf(port) != leaf for port in (node.ports.mqtts, node.ports.https)):
        assert time.monotonic() < deadline, "the daemons did not serve the new certificate"
        time.sleep(0.2)


def test_the_served_chain_validates_from_the_leaf_to_the_root_on_both_ports(node, tmp_path):
    root, leaf = issue_chain(tmp_path / "live")
    install_and_wait(node, tmp_path / "live", leaf)
    for port in (node.ports.mqtts, node.ports.https):
        assert validates(port, root) == "", port


def test_the_check_tells_a_missing_intermediate(node, tmp_path):
    """The same check fails when the intermediate is not sent: it can tell an incomplete chain."""
    root, leaf = issue_chain(tmp_path / "live", with_intermediate=False)
    install_and_wait(node, tmp_path / "live", leaf)
    for port in (node.ports.mqtts, node.ports.https):
        assert validates(port, root) == "unable to get local issuer certificate", port
