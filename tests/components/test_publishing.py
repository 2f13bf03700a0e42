"""The publishing component as the program declares it, and the repository's metadata at preview."""

from __future__ import annotations

import base64
import json
import shutil

import pulumi
import pytest

from tests.pulumi_harness import ACCOUNT, Deployment, run_program
from wis2node import metadata as metadata_module
from wis2node.metadata import metadata_dir
from wis2node.payload import PACKAGE_KEY, node_package
from wis2node.stackfile import StackFile, find_stack


def policy_of(resource) -> dict:
    return json.loads(resource.inputs["policy"])


def test_bucket_is_private_encrypted_and_expires_data(stack_file: StackFile, deployment: Deployment):
    bucket = deployment.one("aws:s3/bucket:Bucket").inputs
    assert bucket["bucket"] == f"{stack_file.stack}-wis2-ingest-{ACCOUNT}"
    block = deployment.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert all(
        block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    encryption = deployment.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    ).inputs
    assert encryption["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    rule = deployment.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs["rules"][0]
    assert rule["filter"]["prefix"] == "data/" and rule["status"] == "Enabled"
    assert rule["expiration"]["days"] == stack_file.settings().retention_days
    deny = policy_of(deployment.one("aws:s3/bucketPolicy:BucketPolicy"))["Statement"][0]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_bucket_events_feed_a_queue_with_a_dead_letter_queue(stack_file: StackFile, deployment: Deployment):
    queues = {q.inputs["name"]: q.inputs for q in deployment.of_type("aws:sqs/queue:Queue")}
    settings = stack_file.settings()
    main, failed = queues[settings.ingest_queue], queues[settings.dead_letter_queue]
    assert main["sqsManagedSseEnabled"] is True and failed["sqsManagedSseEnabled"] is True
    assert json.loads(main["redrivePolicy"])["maxReceiveCount"] == 5
    notification = deployment.one("aws:s3/bucketNotification:BucketNotification").inputs
    assert {q["filterPrefix"] for q in notification["queues"]} == {"data/", "metadata/"}
    assert all(q["events"] == ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"] for q in notification["queues"])
    statement = policy_of(deployment.one("aws:sqs/queuePolicy:QueuePolicy"))["Statement"][0]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"} and statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}


def test_no_one_but_s3_for_this_bucket_may_send_to_the_queue(stack_file: StackFile, deployment: Deployment):
    """A forged event (issue 11, item 2) is refused by AWS, whatever an identity policy allows.

    IAM: an explicit Deny outranks every Allow; a negated operator (ArnNotEquals, StringNotEquals)
    holds when its key is absent from the request, so a direct SendMessage, which carries neither
    aws:SourceArn nor aws:SourceAccount, is denied; S3 sets both for this bucket's notifications.
    """
    settings = stack_file.settings()
    queue_arn = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:{settings.ingest_queue}"
    bucket_arn = f"arn:aws:s3:::{settings.ingest_bucket(ACCOUNT)}"
    policy = policy_of(deployment.one("aws:sqs/queuePolicy:QueuePolicy"))
    denials = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    assert denials, "no explicit Deny: any principal an identity policy allows may forge events"
    for deny in denials:
        assert deny["Principal"] == "*" and deny["Resource"] == queue_arn
        # only sending: the owner still manages the queue, the node still receives and deletes
        assert deny["Action"] == "sqs:SendMessage"
        assert "NotAction" not in deny and "NotPrincipal" not in deny and len(deny["Condition"]) == 1
    # one statement per condition: a sender is denied if EITHER differs (within one statement they would AND)
    conditions = {
        (operator, key, value)
        for deny in denials
        for operator, pairs in deny["Condition"].items()
        for key, value in pairs.items()
    }
    assert conditions == {
        ("ArnNotEquals", "aws:SourceArn", bucket_arn),
        ("StringNotEquals", "aws:SourceAccount", ACCOUNT),
    }
    # and the only Allow is S3's, for this bucket of this account
    allows = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    assert [(a["Principal"], a["Condition"]) for a in allows] == [
        (
            {"Service": "s3.amazonaws.com"},
            {"ArnEquals": {"aws:SourceArn": bucket_arn}, "StringEquals": {"aws:SourceAccount": ACCOUNT}},
        )
    ]


def test_uploaders_may_only_put_data(deployment: Deployment):
    statements = policy_of(deployment.one("aws:iam/policy:Policy"))["Statement"]
    assert [(s["Action"], s["Resource"].rsplit(":::", 1)[1]) for s in statements] == [
        ("s3:PutObject", f"{deployment.one('aws:s3/bucket:Bucket').inputs['bucket']}/data/*")
    ]


def test_the_node_may_only_read_the_bucket_and_use_its_queues(deployment: Deployment):
    statements = {s["Sid"]: s for s in policy_of(deployment.named("ingest-node"))["Statement"]}
    assert statements["ReadIngest"]["Action"] == ["s3:GetObject", "s3:ListBucket"]
    assert set(statements["ConsumeEvents"]["Action"]) == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
    }
    assert statements["ParkFailures"]["Action"] == ["sqs:SendMessage"]
    assert not [s for s in statements.values() if s["Resource"] == "*"]


def test_optional_uploader_role_trusts_only_the_listed_principals(stack_file: StackFile):
    principal = "arn:aws:iam::210987654321:role/message-switch"
    deployment = run_program(stack_file.stack, {**stack_file.config, "wis2-node:uploaderPrincipals": [principal]})
    role = deployment.named("ingest-uploader-role").inputs
    assert json.loads(role["assumeRolePolicy"])["Statement"][0]["Principal"] == {"AWS": [principal]}
    assert deployment.outputs["uploader_role_arn"]
    attachments = {
        a.inputs["role"]: a.inputs["policyArn"]
        for a in deployment.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    }
    assert attachments["ingest-uploader-role"] == f"arn:aws:iam::{ACCOUNT}:policy/ingest-uploader"


def test_repository_metadata_and_the_node_package_are_uploaded(stack_file: StackFile, deployment: Deployment):
    objects = {o.inputs["key"]: o.inputs for o in deployment.of_type("aws:s3/bucketObjectv2:BucketObjectv2")}
    for record in metadata_dir(stack_file.stack).glob("*.json"):
        uploaded = objects[f"metadata/{record.name}"]
        assert base64.b64decode(uploaded["contentBase64"]) == record.read_bytes()
        assert uploaded["metadata"] == {"metadata-id": json.loads(record.read_text())["id"]}
    package = objects[PACKAGE_KEY]
    assert base64.b64decode(package["contentBase64"]) == node_package().archive
    assert deployment.outputs["upload_example"].startswith("aws s3 cp A_ISMD01LFPW.bufr4 s3://")


def test_node_package_is_deterministic_and_complete():
    first, second = node_package(), node_package()
    assert first.archive == second.archive
    import io
    import zipfile

    names = zipfile.ZipFile(io.BytesIO(first.archive)).namelist()
    assert "requirements-node.txt" in names and "wis2node/node/agent.py" in names
    assert not [n for n in names if "__pycache__" in n]


@pytest.fixture
def stack_with_metadata(tmp_path, monkeypatch):
    """A copy of the test stack's metadata folder that a test may break."""
    stack = find_stack("aq-examplemet-test")
    folder = tmp_path / stack.stack / "metadata"
    shutil.copytree(metadata_dir(stack.stack), folder)
    monkeypatch.setattr(metadata_module, "STACKS", tmp_path)
    monkeypatch.setattr(metadata_module, "metadata_dir", lambda name, stacks=tmp_path: stacks / name / "metadata")
    return stack, folder


def test_invalid_record_fails_evaluation_naming_file_and_rule(stack_with_metadata):
    stack, folder = stack_with_metadata
    record_path = next(folder.glob("*.json"))
    record = json.loads(record_path.read_text())
    del record["properties"]["title"]
    record_path.write_text(json.dumps(record))
    with pytest.raises(pulumi.RunError) as refused:
        run_program(stack.stack, stack.config)
    message = str(refused.value)
    assert record_path.name in message and "conf/core" in message, message


def test_record_of_another_centre_is_refused(stack_with_metadata):
    stack, folder = stack_with_metadata
    record_path = next(folder.glob("*.json"))
    record_path.write_text(record_path.read_text().replace("aq-examplemet-test", "fr-meteofrance"))
    with pytest.raises(pulumi.RunError, match="must start with urn:wmo:md:aq-examplemet-test:"):
        run_program(stack.stack, stack.config)


def claim_the_synop_topic_twice(folder) -> str:
    """A second record (another id) declaring the synop dataset's topic; returns its file name."""
    record = json.loads((folder / "surface-based-observations-synop.json").read_text())
    record["id"] += "-copy"
    (folder / "synop-copy.json").write_text(json.dumps(record))
    return "synop-copy.json"


def test_two_records_claiming_one_topic_are_refused_naming_both(stack_with_metadata):
    stack, folder = stack_with_metadata
    copy = claim_the_synop_topic_twice(folder)
    with pytest.raises(pulumi.RunError) as refused:
        run_program(stack.stack, stack.config)
    message = str(refused.value)
    assert "surface-based-observations-synop.json and" in message and copy in message, message
    assert "data/core/weather/surface-based-observations/synop is declared by" in message


def test_a_dataset_gts_mapping_is_uploaded_where_the_agent_reads_it(stack_with_metadata):
    stack, folder = stack_with_metadata
    deployment = run_program(stack.stack, stack.config)
    objects = {o.inputs["key"]: o for o in deployment.of_type("aws:s3/bucketObjectv2:BucketObjectv2")}
    mapping = folder / "surface-based-observations-synop" / "gts_headers_mapping.csv"
    uploaded = objects["datasets/surface-based-observations-synop/gts_headers_mapping.csv"]
    assert base64.b64decode(uploaded.inputs["contentBase64"]) == mapping.read_bytes()
    assert "datasets/regional-model-short-range/gts_headers_mapping.csv" not in objects  # optional


def test_an_invalid_gts_mapping_is_refused_naming_the_line(stack_with_metadata):
    stack, folder = stack_with_metadata
    mapping = folder / "surface-based-observations-synop" / "gts_headers_mapping.csv"
    mapping.write_text("string_in_filepath,TTAAii,CCCC\nSMAQ01EXMP,SMAQ1,EXMP\n")
    with pytest.raises(pulumi.RunError, match=r"gts_headers_mapping.csv: line 2: TTAAii='SMAQ1': expected four"):
        run_program(stack.stack, stack.config)
