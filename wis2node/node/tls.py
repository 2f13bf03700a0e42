"""Certificate checks shared by the settings (a provided certificate) and the node's tools."""

from __future__ import annotations

import datetime

from cryptography import x509


def read_chain(pem: str) -> list[x509.Certificate]:
    """The certificates of a PEM chain, leaf first; ValueError when it is not one."""
    try:
        chain = x509.load_pem_x509_certificates(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ValueError("expected PEM certificates (-----BEGIN CERTIFICATE----- ...), leaf first") from None
    leaf = chain[0]
    if leaf.not_valid_after_utc < datetime.datetime.now(datetime.UTC):
        raise ValueError(f"the certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d}")
    return chain


def names(certificate: x509.Certificate) -> list[str]:
    """The DNS names a certificate is valid for (subject alternative names)."""
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return extension.value.get_values_for_type(x509.DNSName)


def uncovered_name(pem: str, fqdn: str) -> str | None:
    """None when the chain's leaf is valid for fqdn, else the names it does cover, for the message."""
    leaf = read_chain(pem)[0]
    covered = names(leaf)
    for name in covered:
        if name.lower() == fqdn or (name.startswith("*.") and fqdn.split(".", 1)[1] == name[2:].lower()):
            return None
    return f"certificate for {', '.join(covered) or 'no DNS name'}"


def days_left(der: bytes, now: datetime.datetime | None = None) -> float:
    """Days until a DER certificate expires (what a monitoring probe reports)."""
    certificate = x509.load_der_x509_certificate(der)
    now = now or datetime.datetime.now(datetime.UTC)
    return (certificate.not_valid_after_utc - now).total_seconds() / 86400


__all__ = ["days_left", "names", "read_chain", "uncovered_name"]
