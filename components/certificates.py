"""Certificates: the node's TLS key when Pulumi makes it (self-signed, or key + CSR for a CA).

With Let's Encrypt the VM makes its own key and certificate (certbot), so nothing is declared.
The private key reaches the VM only through SSM Parameter Store (SecureString); Pulumi keeps it
as a secret in its state. The certificate (public) goes there too, as a plain String, so that a
long CA chain never pushes the user data over EC2's limit.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_tls as tls
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from wis2node.settings import NodeSettings, key

SELF_SIGNED_DAYS = 365


@dataclass(frozen=True)
class CertificatesArgs:
    settings: NodeSettings


class Certificates(pulumi.ComponentResource):
    """Key, certificate or signing request, and the key's SSM parameter, per the stack's TLS mode."""

    def __init__(self, name: str, args: CertificatesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("wis2-node:index:Certificates", name, None, opts)
        settings = args.settings
        child = pulumi.ResourceOptions(parent=self)
        self.private_key: tls.PrivateKey | None = None
        self.self_signed: tls.SelfSignedCert | None = None
        self.signing_request: tls.CertRequest | None = None
        self.key_parameter: aws.ssm.Parameter | None = None
        self.certificate_parameter: aws.ssm.Parameter | None = None
        # The certificate the VM installs; None when certbot makes it on the VM.
        self.certificate_pem: pulumi.Output[str] | None = None
        self.csr_pem: pulumi.Output[str] | None = None

        if settings.uses_private_key_parameter:
            private_key = tls.PrivateKey(f"{name}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
            self.private_key = private_key
            self.key_parameter = aws.ssm.Parameter(
                f"{name}-key-parameter",
                name=settings.parameter_name("tls-private-key"),
                description=f"WIS2 Node {settings.fqdn}: TLS private key (read by the instance at boot)",
                type="SecureString",
                value=private_key.private_key_pem,
                tags=settings.resource_tags,
                opts=child,
            )
            if settings.tls_mode == "self-signed":
                self.self_signed = tls.SelfSignedCert(
                    f"{name}-self-signed",
                    private_key_pem=private_key.private_key_pem,
                    subject=tls.SelfSignedCertSubjectArgs(common_name=settings.fqdn, organization=settings.centre_id),
                    dns_names=[settings.fqdn],
                    validity_period_hours=SELF_SIGNED_DAYS * 24,
                    early_renewal_hours=30 * 24,
                    allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
                    opts=child,
                )
                self.certificate_pem = self.self_signed.cert_pem
            elif settings.tls_mode == "provided":
                self.signing_request = tls.CertRequest(
                    f"{name}-csr",
                    private_key_pem=private_key.private_key_pem,
                    subject=tls.CertRequestSubjectArgs(common_name=settings.fqdn, organization=settings.centre_id),
                    dns_names=[settings.fqdn],
                    opts=child,
                )
                self.csr_pem = self.signing_request.cert_request_pem
                # Known only once the key exists: then the stack must carry the CA's certificate for it.
                self.certificate_pem = private_key.public_key_pem.apply(
                    lambda public_key: _provided_certificate(settings, public_key)
                )
        if self.certificate_pem is not None:
            self.certificate_parameter = aws.ssm.Parameter(
                f"{name}-certificate-parameter",
                name=settings.parameter_name("tls-certificate"),
                description=f"WIS2 Node {settings.fqdn}: TLS certificate and chain (public)",
                type="String",
                tier="Intelligent-Tiering",  # a long chain needs more than a standard parameter's 4 KB
                value=self.certificate_pem,  # public, though pulumi-aws keeps every parameter value secret
                tags=settings.resource_tags,
                opts=child,
            )
        self.register_outputs({"csr_pem": self.csr_pem})


def _provided_certificate(settings: NodeSettings, public_key_pem: str) -> str:
    """The stack's certificate, once it is there and made for the node's own key; else refuse."""
    if not settings.certificate:
        raise pulumi.RunError(
            f"{key('certificate')} is not set: expected the certificate your CA issued for the key this "
            "stack made. Send `pulumi stack output certificate_signing_request` to the CA and put the "
            "certificate it returns (with its chain) in the stack file."
        )
    leaf = x509.load_pem_x509_certificates(settings.certificate.encode())[0]
    if _der(leaf.public_key()) != _der(serialization.load_pem_public_key(public_key_pem.encode())):
        raise pulumi.RunError(
            f"{key('certificate')}: expected a certificate for the key this stack made, but it was "
            "issued for another key; send the stack's certificate_signing_request to the CA"
        )
    return settings.certificate


def _der(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
