"""install-certificate: a bought certificate is checked (key, chain, name) before the stack file
changes, and then only wis2-node:certificate changes; any refusal leaves the file as it was."""

from __future__ import annotations

import datetime
import shutil
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wis2node.stackfile import ROOT, STACKS, read_stack_file

PEM = serialization.Encoding.PEM
NOW = datetime.datetime.now(datetime.UTC)


def name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def issue(subject: str, key, issuer: str, issuer_key, ca: bool, dns: str | None = None) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                key_cert_sign=ca,
                crl_sign=ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def bought(tmp_path):
    """A stack with tlsMode provided, a root CA, an intermediate, and a leaf for the node's key."""
    source = (STACKS / "Pulumi.aq-examplemet-prod.yaml").read_text()
    text = source.replace(
        "wis2-node:tlsMode: letsencrypt",
        "wis2-node:tlsMode: provided\n  wis2-node:certificateAuthority: example-ca.org",
    )
    assert text != source
    stack = tmp_path / "Pulumi.aq-examplemet-prod.yaml"
    stack.write_text(text)
    fqdn = read_stack_file(stack).config["wis2-node:fqdn"]
    root_key, middle_key, node_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = issue("Example Root", root_key, "Example Root", root_key, ca=True)
    middle = issue("Example Issuing CA", middle_key, "Example Root", root_key, ca=True)
    leaf = issue(fqdn, node_key, "Example Issuing CA", middle_key, ca=False, dns=fqdn)
    files = {
        "stack": stack,
        "root": tmp_path / "root.pem",
        "middle": tmp_path / "middle.pem",
        "leaf": tmp_path / "leaf.pem",
        "key": tmp_path / "node.key",
        "csr": tmp_path / "node.csr",
        "other": tmp_path / "other.key",
        "leaf_for_other": tmp_path / "other-name.pem",
    }
    files["root"].write_bytes(root.public_bytes(PEM))
    files["middle"].write_bytes(middle.public_bytes(PEM))
    files["leaf"].write_bytes(leaf.public_bytes(PEM))
    files["key"].write_bytes(
        node_key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    files["csr"].write_bytes(
        x509.CertificateSigningRequestBuilder()
        .subject_name(name(fqdn))
        .sign(node_key, hashes.SHA256())
        .public_bytes(PEM)
    )
    files["other"].write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    files["leaf_for_other"].write_bytes(
        issue(
            "other.example.org", node_key, "Example Issuing CA", middle_key, ca=False, dns="other.example.org"
        ).public_bytes(PEM)
    )
    files["pems"] = {
        "leaf": leaf.public_bytes(PEM).decode(),
        "middle": middle.public_bytes(PEM).decode(),
        "root": root.public_bytes(PEM).decode(),
    }
    return files


def install(files, *arguments: str) -> subprocess.CompletedProcess:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "wis2node",
            "install-certificate",
            "--stack",
            str(files["stack"]),
            "--ca-file",
            str(files["root"]),
            *arguments,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in run.stderr, run.stderr
    return run


@pytest.mark.parametrize("key", ["key", "csr"])
def test_a_good_certificate_is_written_with_its_chain_and_nothing_else_changes(bought, key):
    before = bought["stack"].read_text()
    run = install(
        bought, "--certificate", str(bought["leaf"]), "--key", str(bought[key]), "--chain", str(bought["middle"])
    )
    assert run.returncode == 0, run.stderr
    assert "1 intermediates" in run.stdout
    after = bought["stack"].read_text()
    config = read_stack_file(bought["stack"]).config
    assert config["wis2-node:certificate"] == bought["pems"]["leaf"] + bought["pems"]["middle"], "leaf, then chain"
    assert bought["pems"]["root"] not in after and "PRIVATE KEY" not in after
    removed = [line for line in before.splitlines() if line not in after.splitlines()]
    assert removed == [], "every other line (comments included) is kept"
    read_stack_file(bought["stack"]).settings()
    # once more, with a renewed certificate: the value is replaced, not added
    again = install(
        bought, "--certificate", str(bought["leaf"]), "--key", str(bought[key]), "--chain", str(bought["middle"])
    )
    assert again.returncode == 0 and bought["stack"].read_text() == after


@pytest.mark.parametrize(
    "case, expected",
    [
        ("other-key", "issued for another key"),
        ("no-chain", "does not validate"),
        ("other-name", "does not validate for"),
        ("untrusted", "does not validate"),
        ("not-pem", "expected PEM certificates"),
    ],
)
def test_a_wrong_certificate_is_refused_and_the_file_untouched(bought, case, expected):
    before = bought["stack"].read_text()
    arguments = {"certificate": bought["leaf"], "key": bought["key"], "chain": bought["middle"]}
    if case == "other-key":
        arguments["key"] = bought["other"]
    elif case == "no-chain":
        arguments["chain"] = None
    elif case == "other-name":
        arguments["certificate"] = bought["leaf_for_other"]
    elif case == "not-pem":
        arguments["certificate"] = bought["key"]
    extra = ["--ca-file", str(bought["middle"])] if case == "untrusted" else []
    if case == "untrusted":  # trust only an unrelated CA
        other = bought["stack"].parent / "unrelated.pem"
        k = ec.generate_private_key(ec.SECP256R1())
        other.write_bytes(issue("Unrelated", k, "Unrelated", k, ca=True).public_bytes(PEM))
        extra = ["--ca-file", str(other)]
    command = [f"--{k}={v}" for k, v in arguments.items() if v]
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "wis2node",
            "install-certificate",
            "--stack",
            str(bought["stack"]),
            *(extra or ["--ca-file", str(bought["root"])]),
            *command,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == 2 and expected in run.stderr, run.stderr
    assert bought["stack"].read_text() == before


def test_a_stack_not_in_provided_mode_is_told_what_to_set(tmp_path, bought):
    stack = tmp_path / "Pulumi.aq-examplemet-test.yaml"
    shutil.copy(STACKS / "Pulumi.aq-examplemet-test.yaml", stack)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "wis2node",
            "install-certificate",
            "--stack",
            str(stack),
            "--certificate",
            str(bought["leaf"]),
            "--key",
            str(bought["key"]),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and "tlsMode is letsencrypt" in run.stderr and "provided" in run.stderr
