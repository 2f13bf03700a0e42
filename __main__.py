"""pulumi up -s <stack>: one validated settings object -> one Wis2Node -> the stack's outputs."""

import pulumi

from components.node import Wis2Node, Wis2NodeArgs
from components.settings import load_metadata, load_settings, look_up_platform
from wis2node.endpoints import endpoints, wmo_registration

settings = load_settings()
node = Wis2Node(
    "wis2-node", Wis2NodeArgs(settings=settings, platform=look_up_platform(settings), metadata=load_metadata(settings))
)

urls = endpoints(settings)
pulumi.export("fqdn", settings.fqdn)
pulumi.export("public_ip", node.public_ip)
pulumi.export("mqtts_url", urls["mqtts"])
pulumi.export("https_url", urls["https"])
pulumi.export("wss_url", urls["wss"])
pulumi.export("instance_id", node.instance_id)
pulumi.export(
    "ssm_session_command",
    node.instance_id.apply(
        lambda instance_id: f"aws ssm start-session --region {settings.region} --target {instance_id}"
    ),
)
pulumi.export("wmo_registration", node.public_ip.apply(lambda ip: {**wmo_registration(settings), "public_ip": ip}))
pulumi.export(
    "publisher_password_command",
    f"aws ssm get-parameter --region {settings.region} --name "
    f"{settings.parameter_name('publisher-password')} --with-decryption "
    "--query Parameter.Value --output text",
)
if node.certificates.csr_pem is not None:
    pulumi.export("certificate_signing_request", node.certificates.csr_pem)
pulumi.export("ingest_bucket", node.publishing.bucket.id)
pulumi.export("upload_example", node.publishing.upload_example)
pulumi.export("uploader_policy_arn", node.publishing.uploader_policy.arn)
if node.publishing.uploader_role is not None:
    pulumi.export("uploader_role_arn", node.publishing.uploader_role.arn)
