"""TLS modes as the program declares them: who makes the key, where it goes, what the VM gets."""

from __future__ import annotations

import json

import pulumi
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.pulumi_harness import Deployment, mock_certificate, run_program, user_data_files
from wis2node.stackfile import find_stack

TEST = find_stack("aq-examplemet-test")
PROD = find_stack("aq-examplemet-prod")
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # how Pulumi marks a secret value
PARAMETER = "aws:ssm/parameter:Parameter"


def files(deployment: Deployment) -> dict[str, bytes]:
    return user_data_files(deployment.one("aws:ec2/instance:Instance").user_data)


def policy(deployment: Deployment) -> dict:
    statements = json.loads(deployment.named("host-policy").inputs["policy"])["Statement"]
    return {statement["Sid"]: statement for statement in statements}


def provided(stack, **extra):
    return {**stack.config, "wis2-node:tlsMode": "provided", "wis2-node:certificateAuthority": "digicert.com", **extra}


def issued_for(fqdn: str) -> str:
    """A certificate a CA issued for the stack's key, with the CA's own certificate as chain."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    return mock_certificate(fqdn, issuer_key=ca_key) + mock_certificate("Example CA", key=ca_key)


def parameters(deployment: Deployment) -> dict[str, dict]:
    """SSM parameters by name, with their value unwrapped (pulumi-aws marks every value secret)."""
    found = {}
    for parameter in deployment.of_type(PARAMETER):
        inputs = dict(parameter.inputs)
        value = inputs.get("value")
        inputs["plain_value"] = value["value"] if isinstance(value, dict) and SECRET_SIG in value else value
        found[parameter.inputs["name"].rsplit("/", 1)[1]] = inputs
    return found


def assert_key_only_in_ssm(deployment: Deployment, stack: str):
    parameter = parameters(deployment)["tls-private-key"]
    assert parameter["name"] == f"/wis2-node/{stack}/tls-private-key"
    assert parameter["type"] == "SecureString"
    assert SECRET_SIG in parameter["value"], "the key must be a secret in Pulumi's state"
    assert "PRIVATE KEY" not in deployment.one("aws:ec2/instance:Instance").user_data
    assert not any(b"PRIVATE KEY" in content for content in files(deployment).values())
    assert [arn.rsplit(":parameter", 1)[1] for arn in policy(deployment)["TlsKey"]["Resource"]] == [
        f"/wis2-node/{stack}/tls-private-key",
        f"/wis2-node/{stack}/tls-certificate",
    ]
    instance = deployment.one("aws:ec2/instance:Instance")
    assert instance.options["delete_before_replace"]  # and it boots after both parameters exist (depends_on)


def test_letsencrypt_makes_nothing_in_pulumi_and_uses_staging_on_test_stacks():
    for stack, staging in ((TEST, True), (PROD, False)):
        deployment = run_program(stack.stack, stack.config)
        assert not [r for r in deployment.resources if r.type.startswith("tls:")]
        # no secret parameter: the runtime configuration and the alert topic's name (components/monitoring.py)
        assert sorted(p.inputs["name"] for p in deployment.of_type(PARAMETER)) == sorted(
            [f"/wis2-node/{stack.stack}/runtime-config", f"/wis2-node/{stack.stack}/alerts-topic"]
        )
        node = json.loads(files(deployment)["/etc/wis2/node.json"])
        assert node["tls"]["mode"] == "letsencrypt"
        assert ("acme-staging" in node["tls"]["acme_server"]) is staging
        assert "tls-certificate" not in parameters(deployment)


def test_self_signed_key_goes_to_ssm_and_certificate_to_the_vm():
    deployment = run_program(TEST.stack, {**TEST.config, "wis2-node:tlsMode": "self-signed"})
    certificate = deployment.one("tls:index/selfSignedCert:SelfSignedCert").inputs
    assert certificate["dnsNames"] == [TEST.config["wis2-node:fqdn"]]
    assert "server_auth" in certificate["allowedUses"]
    certificate = parameters(deployment)["tls-certificate"]
    assert certificate["type"] == "String" and certificate["plain_value"].startswith("-----BEGIN CERTIFICATE-----")
    assert_key_only_in_ssm(deployment, TEST.stack)
    assert "AcmeChallengeRecord" not in policy(deployment)
    caa = next(r for r in deployment.of_type("aws:route53/record:Record") if r.inputs["type"] == "CAA")
    assert caa.inputs["records"][0] == '0 issue ";"'


def test_provided_exports_a_csr_and_installs_the_issued_certificate():
    fqdn = PROD.config["wis2-node:fqdn"]
    chain = issued_for(fqdn)
    deployment = run_program(PROD.stack, provided(PROD, **{"wis2-node:certificate": chain}))
    request = deployment.one("tls:index/certRequest:CertRequest").inputs
    assert request["dnsNames"] == [fqdn] and request["subject"]["commonName"] == fqdn
    assert deployment.outputs["certificate_signing_request"].startswith("-----BEGIN CERTIFICATE REQUEST-----")
    assert parameters(deployment)["tls-certificate"]["plain_value"] == chain
    assert_key_only_in_ssm(deployment, PROD.stack)


def test_provided_without_the_issued_certificate_is_refused_once_the_key_exists():
    with pytest.raises(pulumi.RunError, match="wis2-node:certificate is not set"):
        run_program(PROD.stack, provided(PROD))


def test_provided_certificate_for_another_key_is_refused():
    other_key = ec.generate_private_key(ec.SECP256R1())
    foreign = mock_certificate(PROD.config["wis2-node:fqdn"], key=other_key, issuer_key=other_key)
    with pytest.raises(pulumi.RunError, match=r"wis2-node:certificate.*another key"):
        run_program(PROD.stack, provided(PROD, **{"wis2-node:certificate": foreign}))


@pytest.mark.parametrize(
    "certificate,detail",
    [
        (issued_for("other.example.org"), "certificate for other.example.org"),
        ("not a certificate", "expected PEM certificates"),
    ],
)
def test_provided_certificate_must_cover_the_fqdn(certificate, detail):
    with pytest.raises(pulumi.RunError) as refused:
        run_program(PROD.stack, provided(PROD, **{"wis2-node:certificate": certificate}))
    assert "wis2-node:certificate" in str(refused.value) and detail in str(refused.value)


def test_publisher_password_is_never_declared_only_its_parameter_name_is_exported():
    deployment = run_program(PROD.stack, PROD.config)
    assert deployment.outputs["publisher_password_command"] == (
        "aws ssm get-parameter --region eu-west-1 --name /wis2-node/aq-examplemet-prod/publisher-password "
        "--with-decryption --query Parameter.Value --output text"
    )
    assert not [r for r in deployment.of_type(PARAMETER) if "publisher" in r.inputs["name"]]
