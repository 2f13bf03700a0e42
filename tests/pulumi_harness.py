"""Run the real Pulumi program under Pulumi's own mocks and record what it declares.

The public way throughout (`pulumi.runtime.set_mocks`, `@pulumi.runtime.test`, `reset_options`,
`MockMonitor.get_registered_resources`), with one exception: `RecordingMonitor` overrides
`MockMonitor.RegisterResource` (set_mocks takes the monitor as an argument) to read the resource
options from the engine's request. `Mocks.new_resource` is handed the type, name and inputs only,
while the tests must see `protect`, `ignore_changes` and `delete_before_replace`, which decide
whether `pulumi up` replaces the instance or may delete the data volume and the address
(tests/components/test_operations.py, test_tls.py fail without them). The override calls the
stock method and only reads the request and its response.

Each evaluation starts from `reset_options()`: set_mocks makes a new root stack only when there is
none, and the program runs once per stack file, so without it one stack's exports would carry over
into the next. The exports are resolved inside the test function, where `@pulumi.runtime.test`
awaits them.
"""

from __future__ import annotations

import datetime
import json
import runpy
from dataclasses import dataclass, field
from typing import Any

import pulumi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pulumi.runtime import mocks as pulumi_mocks

from wis2node.stackfile import ROOT, StackFile

PROGRAM = ROOT / "__main__.py"
DOC_IP = "203.0.113.10"  # TEST-NET-3: the address the mock gives every Elastic IP
ACCOUNT = "123456789012"

# What pulumi-tls would make: one real key per test session, so tests can issue certificates for it.
_MOCK_KEY = ec.generate_private_key(ec.SECP256R1())
MOCK_KEY_PEM = _MOCK_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
MOCK_PUBLIC_KEY_PEM = (
    _MOCK_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


def mock_certificate(fqdn: str, key=_MOCK_KEY, issuer_key=None, days: int = 365) -> str:
    """A certificate for fqdn and key, self-signed unless an issuer key is given."""
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, fqdn)])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example CA")]) if issuer_key else subject
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(fqdn)]), critical=False)
        .sign(issuer_key or key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def mock_csr(fqdn: str) -> str:
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, fqdn)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(fqdn)]), critical=False)
        .sign(_MOCK_KEY, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM).decode()


# What AWS would answer for the instance types the tests use.
ARCHITECTURES = {
    "t4g": ["arm64"],
    "m7g": ["arm64"],
    "t3": ["i386", "x86_64"],
    "t3a": ["x86_64"],
    "mac2": ["arm64_mac"],
    "mac1": ["x86_64_mac"],
}


@dataclass
class Declared:
    type: str
    name: str
    inputs: dict[str, Any]
    urn: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def user_data(self) -> str:
        """An instance's cloud-config document, unpacked from its gzipped user data as cloud-init does."""
        import base64
        import gzip

        return gzip.decompress(base64.b64decode(self.inputs["userDataBase64"])).decode("utf-8")


@dataclass
class Deployment:
    """What one evaluation of the program declared, invoked and exported."""

    resources: list[Declared] = field(default_factory=list)
    calls: list[tuple[str, dict]] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    program: dict[str, Any] = field(default_factory=dict)
    # Every resource registered, components included, by URN (what `pulumi up` matches state by).
    urns: list[str] = field(default_factory=list)

    def of_type(self, type_: str) -> list[Declared]:
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str) -> Declared:
        found = [r for r in self.resources if r.name == name]
        assert len(found) == 1, f"expected one resource named {name}, found {len(found)}"
        return found[0]

    def one(self, type_: str) -> Declared:
        found = self.of_type(type_)
        assert len(found) == 1, f"expected one {type_}, found {len(found)}"
        return found[0]


class RecordingMocks(pulumi.runtime.Mocks):
    """Answers like AWS would for the few things the program reads back, and records the rest."""

    def __init__(self, deployment: Deployment):
        self.deployment = deployment

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        outputs = {"name": args.name, **args.inputs}
        resource_id = f"{args.name}-id"
        if args.typ == "aws:ec2/eip:Eip":
            outputs.update(publicIp=DOC_IP, allocationId="eipalloc-0123456789abcdef0")
        elif args.typ == "aws:ec2/instance:Instance":
            resource_id = "i-0123456789abcdef0"
        elif args.typ == "aws:ebs/volume:Volume":
            resource_id = "vol-0123456789abcdef0"
        elif args.typ == "aws:s3/bucket:Bucket":
            resource_id = args.inputs["bucket"]
            outputs["arn"] = f"arn:aws:s3:::{resource_id}"
        elif args.typ == "aws:sqs/queue:Queue":
            outputs.update(
                arn=f"arn:aws:sqs:eu-west-1:{ACCOUNT}:{args.inputs['name']}",
                url=f"https://sqs.eu-west-1.amazonaws.com/{ACCOUNT}/{args.inputs['name']}",
            )
        elif args.typ == "aws:sns/topic:Topic":
            outputs["arn"] = f"arn:aws:sns:{args.inputs.get('region', 'eu-west-1')}:{ACCOUNT}:{args.name}"
        elif args.typ == "aws:kms/key:Key":
            outputs["arn"] = f"arn:aws:kms:{args.inputs.get('region', 'eu-west-1')}:{ACCOUNT}:key/{args.name}"
        elif args.typ in ("aws:iam/policy:Policy", "aws:iam/role:Role"):
            kind = args.typ.rsplit(":", 1)[1].lower()
            outputs["arn"] = f"arn:aws:iam::{ACCOUNT}:{kind}/{args.name}"
        elif args.typ == "aws:route53/record:Record":
            outputs["fqdn"] = args.inputs["name"]
        elif args.typ == "tls:index/privateKey:PrivateKey":
            outputs.update(privateKeyPem=MOCK_KEY_PEM, publicKeyPem=MOCK_PUBLIC_KEY_PEM)
        elif args.typ == "tls:index/selfSignedCert:SelfSignedCert":
            outputs["certPem"] = mock_certificate(args.inputs["dnsNames"][0])
        elif args.typ == "tls:index/certRequest:CertRequest":
            outputs["certRequestPem"] = mock_csr(args.inputs["dnsNames"][0])
        return resource_id, outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.deployment.calls.append((args.token, dict(args.args)))
        if args.token == "aws:route53/getZone:getZone":
            return {"zoneId": "Z0123456789EXAMPLE", "name": args.args["name"]}
        if args.token == "aws:ec2/getSubnet:getSubnet":
            az = args.args.get("availabilityZone", "eu-west-1a")
            return {
                "id": args.args.get("id", "subnet-0123456789abcdef0"),
                "vpcId": "vpc-0123456789abcdef0",
                "availabilityZone": az,
            }
        if args.token == "aws:ec2/getInstanceType:getInstanceType":
            family = args.args["instanceType"].split(".")[0]
            if family not in ARCHITECTURES:  # how AWS refuses it: a failed invoke, not a crash
                return {}, [("instanceType", f"InvalidInstanceType: {args.args['instanceType']}")]
            return {"instanceType": args.args["instanceType"], "supportedArchitectures": ARCHITECTURES[family]}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/ci", "userId": "AIDEXAMPLE"}
        if args.token == "aws:ec2/getManagedPrefixList:getManagedPrefixList":
            return {"id": "pl-0123456789abcdef0", "name": args.args["name"]}
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com"}
        if args.token == "aws:ssm/getParameter:getParameter":
            arch = "arm64" if "/arm64/" in args.args["name"] else "amd64"
            return {"name": args.args["name"], "value": f"ami-0{arch}0000000000000"[:21], "type": "String"}
        raise Exception(f"the tests do not expect the program to call {args.token}")


class RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: RecordingMocks):
        super().__init__(mocks)
        self.deployment = mocks.deployment

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.custom:
            from google.protobuf import json_format

            inputs = json_format.MessageToDict(request.object)
            options = {
                "ignore_changes": list(request.ignoreChanges),
                "protect": request.protect,
                "delete_before_replace": request.deleteBeforeReplace,
            }
            self.deployment.resources.append(Declared(request.type, request.name, inputs, response.urn, options))
        return response


def to_pulumi_config(config: dict[str, Any]) -> dict[str, str]:
    """Encode a stack file's config as the Pulumi CLI hands it to a program: strings, JSON for structures."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


def run_program(stack: str, config: dict[str, Any]) -> Deployment:
    """Evaluate __main__.py for a stack config under mocks; return what it declared and exported."""
    deployment = Deployment()
    pulumi.runtime.reset_options()
    pulumi.runtime.set_all_config(to_pulumi_config(config))
    mocks = RecordingMocks(deployment)
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="wis2-node", stack=stack, preview=False, monitor=monitor)

    @pulumi.runtime.test
    def evaluate() -> pulumi.Output[None]:
        deployment.program = runpy.run_path(str(PROGRAM), run_name="__main__")
        root = pulumi.runtime.get_root_resource()
        assert root is not None
        return pulumi.Output.from_input(root.outputs).apply(deployment.outputs.update)

    evaluate()
    deployment.urns = list(monitor.get_registered_resources())
    return deployment


def run_stack_file(stack_file: StackFile) -> Deployment:
    return run_program(stack_file.stack, stack_file.config)


def user_data_files(user_data: str) -> dict[str, bytes]:
    """The files a cloud-config document writes, decoded as cloud-init would."""
    import yaml

    document = yaml.safe_load(user_data)
    files = {}
    for entry in document.get("write_files", []):
        assert "encoding" not in entry, "the files are text; the document as a whole is gzipped"
        files[entry["path"]] = entry["content"].encode("utf-8")
    return files
