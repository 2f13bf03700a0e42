"""The program, evaluated under Pulumi's mocks for every example stack: what it declares."""

from __future__ import annotations

import csv
import json
import re

import pulumi
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.pulumi_harness import DOC_IP, MOCK_KEY_PEM, Deployment, mock_certificate, run_program, user_data_files
from wis2node.node.catalogue import GLOBAL_SERVICES_CSV
from wis2node.stackfile import StackFile

INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
INSTANCE = "aws:ec2/instance:Instance"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"


def expected_sources(stack_file: StackFile) -> set[tuple[str, int]]:
    """The allowlist as the issue states it, read straight from the catalogue file and the stack."""
    config = stack_file.config
    expected: set[tuple[str, int]] = set()
    if config.get("wis2-node:globalServices", True):
        excluded = set(config.get("wis2-node:excludeOperators", []))
        with GLOBAL_SERVICES_CSV.open() as handle:
            for row in csv.DictReader(line for line in handle if not line.startswith("#")):
                if row["operator"] not in excluded:
                    expected.add((row["ip"] + "/32", 8883 if row["service"] == "global-broker" else 443))
    for partner in config.get("wis2-node:partners", []):
        expected |= {(partner["cidr"], port) for port in partner["ports"]}
    for port in config.get("wis2-node:openToInternet", []):
        expected |= {("0.0.0.0/0", port), ("::/0", port)}
    return expected | HEALTH_CHECKERS


def declared_sources(deployment: Deployment) -> list[tuple[str, int]]:
    """Every ingress rule as (source, port): a CIDR, or the health checkers' prefix list."""
    rules = deployment.of_type(INGRESS)
    for rule in rules:
        assert rule.inputs["ipProtocol"] == "tcp"
        assert rule.inputs["fromPort"] == rule.inputs["toPort"]
        assert sum(k in rule.inputs for k in ("cidrIpv4", "cidrIpv6", "prefixListId")) == 1
    return [
        (r.inputs.get("cidrIpv4") or r.inputs.get("cidrIpv6") or r.inputs["prefixListId"], int(r.inputs["fromPort"]))
        for r in rules
    ]


HEALTH_CHECKERS = {("pl-0123456789abcdef0", 443), ("pl-0123456789abcdef0", 8883)}


def test_every_stack_evaluates_and_declares_the_node(deployment: Deployment):
    for type_ in (
        INSTANCE,
        "aws:ec2/eip:Eip",
        "aws:ec2/eipAssociation:EipAssociation",
        "aws:ebs/volume:Volume",
        "aws:ec2/volumeAttachment:VolumeAttachment",
        "aws:iam/instanceProfile:InstanceProfile",
    ):
        deployment.one(type_)


def test_ingress_is_exactly_the_allowlist(stack_file: StackFile, deployment: Deployment):
    declared = declared_sources(deployment)
    assert len(declared) == len(set(declared)), "one rule per (source, port)"
    assert set(declared) == expected_sources(stack_file)
    assert {port for _, port in declared} <= {443, 8883}
    groups = deployment.of_type(SECURITY_GROUP)
    assert groups and not [g for g in groups if "ingress" in g.inputs or "egress" in g.inputs]


def test_security_groups_and_rules_are_described_as_ec2_accepts(deployment: Deployment):
    # EC2 CreateSecurityGroup / rule descriptions: up to 255 of a-zA-Z0-9, spaces and ._-:/()#,@[]+=&;{}!$*
    allowed = re.compile(r"[a-zA-Z0-9. _\-:/()#,@\[\]+=&;{}!$*]{1,255}")
    described = deployment.of_type(SECURITY_GROUP) + deployment.of_type(INGRESS) + deployment.of_type(EGRESS)
    for resource in described:
        assert allowed.fullmatch(resource.inputs["description"]), (resource.name, resource.inputs["description"])


def test_the_instance_wears_every_security_group(deployment: Deployment):
    worn = deployment.one(INSTANCE).inputs["vpcSecurityGroupIds"]
    assert sorted(worn) == sorted(f"{g.name}-id" for g in deployment.of_type(SECURITY_GROUP))
    rules = deployment.of_type(INGRESS) + deployment.of_type(EGRESS)
    assert {r.inputs["securityGroupId"] for r in rules} == set(worn), "a rule outside the instance's groups"


def test_no_port_is_open_to_the_world_unless_asked(stack_file: StackFile, deployment: Deployment):
    asked = {
        (cidr, port) for port in stack_file.config.get("wis2-node:openToInternet", []) for cidr in ("0.0.0.0/0", "::/0")
    }
    assert {s for s in declared_sources(deployment) if s[0] in ("0.0.0.0/0", "::/0")} == asked


def test_open_to_internet_opens_exactly_the_listed_port(stack_file: StackFile):
    deployment = run_program(stack_file.stack, {**stack_file.config, "wis2-node:openToInternet": [443]})
    public = {s for s in declared_sources(deployment) if s[0] in ("0.0.0.0/0", "::/0")}
    assert public == {("0.0.0.0/0", 443), ("::/0", 443)}


def test_excluding_an_operator_removes_its_addresses(stack_file: StackFile):
    config = {**stack_file.config, "wis2-node:excludeOperators": ["jp-jma"]}
    deployment = run_program(stack_file.stack, config)
    jma = {"35.76.201.251/32", "13.115.11.72/32"}
    assert not jma & {cidr for cidr, _ in declared_sources(deployment)}
    assert set(declared_sources(deployment)) == expected_sources(StackFile(stack_file.stack, stack_file.path, config))


def test_route53_health_checkers_are_let_in_on_exactly_the_two_ports(deployment: Deployment):
    lists = {s for s in declared_sources(deployment) if s[0].startswith("pl-")}
    assert lists == HEALTH_CHECKERS


def test_egress_is_web_only(deployment: Deployment):
    egress = {
        (r.inputs["ipProtocol"], int(r.inputs["fromPort"]), int(r.inputs["toPort"])) for r in deployment.of_type(EGRESS)
    }
    assert egress == {("tcp", 443, 443), ("tcp", 80, 80)}


def test_instance_is_locked_down(deployment: Deployment):
    instance = deployment.one(INSTANCE).inputs
    assert instance["metadataOptions"]["httpTokens"] == "required"
    assert instance["metadataOptions"]["httpPutResponseHopLimit"] == 1
    assert instance["rootBlockDevice"]["encrypted"] is True
    assert instance["rootBlockDevice"]["volumeType"] == "gp3"
    assert "keyName" not in instance
    assert instance["userDataReplaceOnChange"] is True
    assert instance["tags"]["wis2-node:centre-id"]
    assert not [t for t in deployment.resources if t.type == "aws:ec2/keyPair:KeyPair"]


def test_data_volume_is_encrypted_and_attached(deployment: Deployment):
    volume = deployment.one("aws:ebs/volume:Volume")
    assert volume.inputs["encrypted"] is True
    attachment = deployment.one("aws:ec2/volumeAttachment:VolumeAttachment").inputs
    assert attachment["volumeId"] == "vol-0123456789abcdef0"
    assert attachment["instanceId"] == "i-0123456789abcdef0"
    # the boot script waits for exactly this volume
    files = user_data_files(deployment.one(INSTANCE).user_data)
    assert b"nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0" in files["/usr/local/sbin/wis2-data-volume"]


def test_elastic_ip_is_associated_with_the_instance(deployment: Deployment):
    eip = deployment.one("aws:ec2/eip:Eip")
    assert eip.inputs["domain"] == "vpc"
    association = deployment.one("aws:ec2/eipAssociation:EipAssociation").inputs
    assert association["instanceId"] == "i-0123456789abcdef0"
    assert association["allocationId"] == "eipalloc-0123456789abcdef0"


def test_a_record_is_the_fqdn_pointing_at_the_elastic_ip(stack_file: StackFile, deployment: Deployment):
    fqdn = stack_file.config["wis2-node:fqdn"]
    records = {r.inputs["type"]: r.inputs for r in deployment.of_type("aws:route53/record:Record")}
    assert records["A"]["name"] == fqdn and records["A"]["records"] == [DOC_IP]
    assert records["CAA"]["name"] == fqdn
    assert records["CAA"]["records"] == ['0 issue "letsencrypt.org"', '0 issuewild ";"']
    assert deployment.outputs["fqdn"] == fqdn and deployment.outputs["public_ip"] == DOC_IP


def test_caa_names_the_provided_ca(stack_file: StackFile):
    issued = mock_certificate(stack_file.config["wis2-node:fqdn"], issuer_key=ec.generate_private_key(ec.SECP256R1()))
    deployment = run_program(
        stack_file.stack,
        {
            **stack_file.config,
            "wis2-node:tlsMode": "provided",
            "wis2-node:certificateAuthority": "digicert.com",
            "wis2-node:certificate": issued,
        },
    )
    caa = next(r for r in deployment.of_type("aws:route53/record:Record") if r.inputs["type"] == "CAA")
    assert '0 issue "digicert.com"' in caa.inputs["records"]


def test_instance_role_is_scoped_to_the_node(stack_file: StackFile, deployment: Deployment):
    # the node's role has no managed policy (the one attachment is Data Lifecycle Manager's role's)
    assert [a.inputs["role"] for a in deployment.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")] == [
        "host-snapshots-role"
    ]
    statements = {s["Sid"]: s for s in json.loads(deployment.named("host-policy").inputs["policy"])["Statement"]}
    assert all(
        a.startswith(("ssm:UpdateInstanceInformation", "ssmmessages:"))
        for a in statements.pop("SessionManager")["Action"]
    )
    stack = stack_file.stack
    assert (
        statements.pop("PublisherPassword")["Resource"]
        == f"arn:aws:ssm:eu-west-1:123456789012:parameter/wis2-node/{stack}/publisher-password"
    )
    assert statements.pop("PublisherPasswordCreateOnly")["Effect"] == "Deny"  # test_least_privilege.py
    # letsencrypt stacks: the ACME challenge record of the node's own name, nothing else in the zone
    challenge = statements.pop("AcmeChallengeRecord")
    assert challenge["Resource"] == "arn:aws:route53:::hostedzone/Z0123456789EXAMPLE"
    assert challenge["Condition"]["ForAllValues:StringEquals"] == {
        "route53:ChangeResourceRecordSetsNormalizedRecordNames": [
            f"_acme-challenge.{stack_file.config['wis2-node:fqdn']}"
        ],
        "route53:ChangeResourceRecordSetsRecordTypes": ["TXT"],
        "route53:ChangeResourceRecordSetsActions": ["UPSERT", "DELETE"],
    }
    metrics = statements.pop("Metrics")
    assert metrics["Action"] == "cloudwatch:PutMetricData"
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": ["WIS2Node", "WIS2Node/Host"]}}
    # the runtime configuration it re-reads, and its services' own log groups, nothing else
    assert (
        statements.pop("RuntimeConfig")["Resource"]
        == f"arn:aws:ssm:eu-west-1:123456789012:parameter/wis2-node/{stack}/runtime-config"
    )
    logs = statements.pop("Logs")
    assert logs["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    groups = {r.inputs["name"] for r in deployment.of_type("aws:cloudwatch/logGroup:LogGroup")}
    assert sorted(logs["Resource"]) == sorted(f"arn:aws:logs:eu-west-1:123456789012:log-group:{g}:*" for g in groups)
    assert groups and all(g.startswith(f"/wis2-node/{stack}/") for g in groups)
    assert set(statements) == {"AcmeChangeStatus", "AcmeFindZone"}
    trust = json.loads(deployment.named("host-role").inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}


def test_user_data_holds_no_secret(deployment: Deployment):
    user_data = deployment.one(INSTANCE).user_data
    assert user_data.startswith("#cloud-config\n")
    files = user_data_files(user_data)
    readable = user_data + "".join(f.decode() for f in files.values())
    for pattern in (r"PRIVATE KEY", r"AKIA[0-9A-Z]{16}", MOCK_KEY_PEM.splitlines()[1]):
        assert not re.search(pattern, readable), pattern
    # accounts are made on the VM (the publisher's password comes from SSM at boot), never shipped
    assert not [path for path in files if path.endswith("/passwd")]


def test_every_resource_belongs_to_a_component(deployment: Deployment):
    for resource in deployment.resources:
        parent_type = resource.urn.split("::")[2].split("$")[0]
        assert parent_type.startswith("wis2-node:index:"), resource.urn


def test_exports_tell_a_centre_how_to_reach_and_register_the_node(stack_file: StackFile, deployment: Deployment):
    fqdn = stack_file.config["wis2-node:fqdn"]
    outputs = deployment.outputs
    assert outputs["mqtts_url"] == f"mqtts://everyone:everyone@{fqdn}:8883"
    assert outputs["https_url"] == f"https://{fqdn}/"
    assert outputs["wss_url"] == f"wss://{fqdn}/mqtt"
    assert outputs["instance_id"] == "i-0123456789abcdef0"
    assert outputs["ssm_session_command"] == "aws ssm start-session --region eu-west-1 --target i-0123456789abcdef0"
    registration = outputs["wmo_registration"]
    centre_id = stack_file.config["wis2-node:centreId"]
    assert registration["subscription_topics"] == [f"origin/a/wis2/{centre_id}/#"]
    assert registration["public_ip"] == DOC_IP
    # what WMO asks for at registration, from the stack
    assert registration["centre_id"] == centre_id
    assert registration["centre_name"] == stack_file.config["wis2-node:centreName"]
    assert registration["contact_email"] == stack_file.config["wis2-node:contactEmail"]
    assert registration["mqtt_broker_url"] == f"mqtts://everyone:everyone@{fqdn}:8883"
    assert registration["http_endpoint"] == f"https://{fqdn}/"
    assert registration["missing"] == []


def test_registration_names_what_the_stack_has_not_said(stack_file: StackFile):
    config = {k: v for k, v in stack_file.config.items() if k not in ("wis2-node:centreName", "wis2-node:contactEmail")}
    registration = run_program(stack_file.stack, config).outputs["wmo_registration"]
    assert registration["missing"] == ["wis2-node:centreName", "wis2-node:contactEmail"]
    assert registration["centre_name"] is None and registration["contact_email"] is None


@pytest.mark.parametrize(
    "config_key,value",
    [
        ("wis2-node:contactEmail", "focal-point-at-example"),
        ("wis2-node:centreName", "Example\nMet"),
        ("wis2-node:centreName", " padded "),
    ],
)
def test_bad_registration_details_are_refused_naming_the_key(stack_file: StackFile, config_key: str, value: str):
    with pytest.raises(pulumi.RunError) as refused:
        run_program(stack_file.stack, {**stack_file.config, config_key: value})
    assert f"{config_key} = " in str(refused.value), str(refused.value)


def test_image_follows_the_instance_architecture(stack_file: StackFile):
    for instance_type, arch in (("t4g.small", "arm64"), ("t3.small", "amd64")):
        deployment = run_program(stack_file.stack, {**stack_file.config, "wis2-node:instanceType": instance_type})
        names = [args["name"] for token, args in deployment.calls if token == "aws:ssm/getParameter:getParameter"]
        assert names == [f"/aws/service/canonical/ubuntu/server/24.04/stable/current/{arch}/hvm/ebs-gp3/ami-id"]


def test_pinned_image_is_used_as_is(stack_file: StackFile):
    deployment = run_program(stack_file.stack, {**stack_file.config, "wis2-node:imageId": "ami-0fedcba9876543210"})
    assert deployment.one(INSTANCE).inputs["ami"] == "ami-0fedcba9876543210"
    assert not [c for c in deployment.calls if c[0] == "aws:ssm/getParameter:getParameter"]


def test_the_readme_lists_every_stack_output():
    """README, "Stack outputs": every output the program exports (the optional ones included), and no other."""
    from wis2node.stackfile import ROOT, find_stack

    test = find_stack("aq-examplemet-test")
    fqdn = test.config["wis2-node:fqdn"]
    everything = {
        **test.config,
        "wis2-node:tlsMode": "provided",
        "wis2-node:certificateAuthority": "digicert.com",
        "wis2-node:certificate": mock_certificate(fqdn),
        "wis2-node:uploaderPrincipals": ["arn:aws:iam::210987654321:role/message-switch"],
    }
    exported = set(run_program(test.stack, everything).outputs)
    readme = (ROOT / "README.md").read_text()
    table = readme.split("Stack outputs (`pulumi stack output -s <stack>`):", 1)[1].split("\n\n", 2)[1]
    listed = {name for line in table.splitlines() for name in re.findall(r"`([a-z_]+)`", line.split("|")[1])}
    assert listed == exported
