"""Put a bought certificate in a stack file, once it is known to work:
`python -m wis2node install-certificate --stack S --certificate F --key K [--chain C]`.

Before the stack file is touched: the certificate is a PEM certificate for the node's FQDN; it was
issued for the key given (the private key the signing request was made from, or that request
itself: `pulumi stack output certificate_signing_request`); the chain (the certificate file's own
intermediates, then --chain's) leads from it to a CA this machine trusts (or --ca-file), for a TLS
server, valid today. Then `wis2-node:certificate` gets the leaf and its intermediates (never the
root, never the key: the stack's key reaches the node from SSM), the rest of the file untouched,
and the stack is validated again; any failure leaves the file as it was. `pulumi up` installs it.
"""

from __future__ import annotations

import datetime
import os
import re
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification

from wis2node.errors import SettingsError
from wis2node.settings import key as config_key
from wis2node.stackfile import StackFile, read_stack_file

KEY_NAME = config_key("certificate")


def _public_der(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_of(path: Path) -> bytes:
    """The public key (DER) in a private key, a signing request or a public key PEM file."""
    data = path.read_bytes()
    if b"ENCRYPTED PRIVATE KEY" in data:
        raise SettingsError(
            f"{path}: the private key is encrypted; give the signing request instead "
            "(pulumi stack output certificate_signing_request)"
        )
    loaders = (
        lambda: serialization.load_pem_private_key(data, password=None).public_key(),
        lambda: x509.load_pem_x509_csr(data).public_key(),
        lambda: serialization.load_pem_public_key(data),
    )
    for loader in loaders:
        try:
            return _public_der(loader())
        except (ValueError, TypeError):
            continue
    raise SettingsError(f"{path}: expected a PEM private key, certificate signing request or public key")


def read_certificates(path: Path) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except ValueError:
        raise SettingsError(f"{path}: expected PEM certificates (-----BEGIN CERTIFICATE----- ...)") from None


def trust_store(ca_file: Path | None) -> verification.Store:
    path = ca_file or Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    try:
        return verification.Store(x509.load_pem_x509_certificates(path.read_bytes()))
    except (OSError, ValueError) as err:
        raise SettingsError(f"cannot read trusted CAs from {path}: {err}; give --ca-file") from None


def checked_chain(
    stack: StackFile,
    certificate: Path,
    key: Path,
    chain: Path | None,
    ca_file: Path | None,
    now: datetime.datetime | None = None,
) -> list[x509.Certificate]:
    """Leaf and intermediates, once each check passes; SettingsError naming what is wrong."""
    settings = stack.settings()
    if settings.tls_mode != "provided":
        raise SettingsError(
            f"stack {stack.stack}: {config_key('tlsMode')} is {settings.tls_mode}; a bought "
            f"certificate needs tlsMode: provided and {config_key('certificateAuthority')} "
            '(README, "Certificate")'
        )
    given = read_certificates(certificate) + (read_certificates(chain) if chain else [])
    leaf, intermediates = given[0], given[1:]
    if _public_der(leaf.public_key()) != public_key_of(key):
        raise SettingsError(
            f"{certificate}: issued for another key than {key}; the CA must sign the stack's "
            "signing request (pulumi stack output certificate_signing_request)"
        )
    now = now or datetime.datetime.now(datetime.UTC)
    builder = verification.PolicyBuilder().store(trust_store(ca_file)).time(now)
    try:
        verified = builder.build_server_verifier(x509.DNSName(settings.fqdn)).verify(leaf, intermediates)
    except verification.VerificationError as err:
        raise SettingsError(
            f"{certificate}: does not validate for {settings.fqdn}: {err} (is the CA's "
            "intermediate certificate missing? give it with --chain)"
        ) from None
    roots = {_public_der(c.public_key()) for c in verified[-1:]}
    # What the node sends: the leaf and the intermediates the path used, never the root.
    return [c for c in verified if c.subject != c.issuer or _public_der(c.public_key()) not in roots]


def set_certificate(path: Path, pem: str) -> str:
    """The stack file's text with wis2-node:certificate set to pem (a literal block), all else kept."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)

    def indent_of(line: str) -> int:
        return len(line) - len(line.lstrip(" "))

    def block(indent: int) -> list[str]:
        pad = " " * indent
        return [f"{pad}{KEY_NAME}: |\n"] + [f"{pad}  {line}\n" for line in pem.strip().splitlines()]

    pattern = re.compile(rf"^\s*{re.escape(KEY_NAME)}\s*:")
    for index, line in enumerate(lines):
        if pattern.match(line):  # replace the key and its value (the lines indented below it)
            end = index + 1
            while end < len(lines) and (not lines[end].strip() or indent_of(lines[end]) > indent_of(line)):
                end += 1
            while end > index + 1 and not lines[end - 1].strip():
                end -= 1
            return "".join(lines[:index] + block(indent_of(line)) + lines[end:])
    anchor = re.compile(rf"^\s*{re.escape(config_key('tlsMode'))}\s*:")
    for index, line in enumerate(lines):
        if anchor.match(line):  # beside the TLS mode it belongs to
            return "".join(lines[: index + 1] + block(indent_of(line)) + lines[index + 1 :])
    raise SettingsError(
        f"{path}: no {config_key('tlsMode')} line to put {KEY_NAME} under; set {config_key('tlsMode')}: provided first"
    )


def install(
    stack: StackFile, certificate: Path, key: Path, chain: Path | None = None, ca_file: Path | None = None
) -> list[x509.Certificate]:
    installed = checked_chain(stack, certificate, key, chain, ca_file)
    pem = "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in installed)
    updated = set_certificate(stack.path, pem)
    handle, temporary = tempfile.mkstemp(dir=stack.path.parent, prefix=".install-certificate-", suffix=".yaml")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(updated)
        written = read_stack_file(Path(temporary))
        written = StackFile(stack=stack.stack, path=stack.path, config=written.config)
        if written.config.get(KEY_NAME, "").strip() != pem.strip():
            raise SettingsError(f"{stack.path}: could not place {KEY_NAME} in the file; set it by hand")
        written.settings()  # the whole stack, as the program will read it
        os.chmod(temporary, os.stat(stack.path).st_mode & 0o777)
        os.replace(temporary, stack.path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return installed
