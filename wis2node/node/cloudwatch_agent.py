"""Amazon's CloudWatch agent on the node, at a pinned version, installed only once its package's
signature checks out against the fingerprint of Amazon's signing key; then configured.

    python -m wis2node.node cloudwatch-agent [/etc/wis2/node.json]

The version and the signer's fingerprint come from the environment (the unit sets them, from the
renderer's pins): CLOUDWATCH_AGENT_VERSION, CLOUDWATCH_AGENT_SIGNER. The package, its detached
signature and Amazon's public key are read from Amazon's public buckets, anonymously, through the
machine's usual AWS configuration. A package whose signature is missing, bad, or made by any other
key is never installed. Run as root by wis2-cloudwatch-agent.service, which retries on failure.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from wis2node.node.nodeconfig import CONFIG_PATH, load_config

LOG = logging.getLogger("wis2node.node.cloudwatch_agent")
# docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/verify-CloudWatch-Agent-Package-Signature.html
KEY_BUCKET, KEY_KEY = "amazoncloudwatch-agent", "assets/amazon-cloudwatch-agent.gpg"
INSTALLED = Path("/var/lib/wis2/cloudwatch-agent.version")
CTL = "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl"
_VERSION = re.compile(r"^[0-9][0-9A-Za-z.]{0,40}$")
_FINGERPRINT = re.compile(r"^[0-9A-F]{40}$")


class Refused(Exception):
    """The package is not installed: why."""


def package_key(version: str, arch: str) -> str:
    return f"ubuntu/{arch}/{version}/amazon-cloudwatch-agent.deb"


def verified_signer(package: Path, signature: Path, public_key: Path) -> str:
    """The fingerprint of the key that made a good signature of the package, or Refused."""
    with tempfile.TemporaryDirectory() as home:
        base = ["gpg", "--batch", "--no-tty", "--homedir", home]
        imported = subprocess.run([*base, "--import", str(public_key)], capture_output=True, text=True)
        if imported.returncode != 0:
            raise Refused(f"the signing key does not import: {imported.stderr.strip()[:200]}")
        status = subprocess.run(
            [*base, "--status-fd", "1", "--verify", str(signature), str(package)], capture_output=True, text=True
        )
    signers = [line.split()[2] for line in status.stdout.splitlines() if line.startswith("[GNUPG:] VALIDSIG ")]
    if status.returncode != 0 or len(signers) != 1:
        raise Refused(
            "the package's signature does not verify: "
            + (status.stderr.strip().splitlines() or ["no signature"])[-1][:200]
        )
    return signers[0]


def install(s3, region: str, version: str, signer: str, arch: str, work: Path) -> None:
    """Download, verify and dpkg -i the pinned package (Refused or a botocore error otherwise)."""
    paths = {name: work / name for name in ("agent.deb", "agent.deb.sig", "amazon-cloudwatch-agent.gpg")}
    bucket = f"amazoncloudwatch-agent-{region}"
    key = package_key(version, arch)
    s3.download_file(bucket, key, str(paths["agent.deb"]))
    s3.download_file(bucket, key + ".sig", str(paths["agent.deb.sig"]))
    s3.download_file(KEY_BUCKET, KEY_KEY, str(paths["amazon-cloudwatch-agent.gpg"]))
    found = verified_signer(paths["agent.deb"], paths["agent.deb.sig"], paths["amazon-cloudwatch-agent.gpg"])
    if found != signer:
        raise Refused(f"the package is signed by {found}, not by Amazon's key {signer}")
    subprocess.run(["dpkg", "-i", str(paths["agent.deb"])], check=True, stdout=subprocess.DEVNULL)


def main(config_path: str = CONFIG_PATH) -> int:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    region = load_config(config_path, needs=()).region
    version = os.environ.get("CLOUDWATCH_AGENT_VERSION", "")
    signer = os.environ.get("CLOUDWATCH_AGENT_SIGNER", "").replace(" ", "").upper()
    if not _VERSION.match(version) or not _FINGERPRINT.match(signer):
        LOG.error(
            "CLOUDWATCH_AGENT_VERSION=%r and CLOUDWATCH_AGENT_SIGNER=%r: expected a version such as "
            "1.300072.0b1766 and a 40-digit key fingerprint",
            version,
            signer,
        )
        return 2
    if not (INSTALLED.exists() and INSTALLED.read_text().strip() == version and Path(CTL).exists()):
        arch = subprocess.run(
            ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
        ).stdout.strip()
        s3 = boto3.client("s3", region_name=region, config=Config(signature_version=UNSIGNED))
        try:
            with tempfile.TemporaryDirectory() as work:
                install(s3, region, version, signer, arch, Path(work))
        except Refused as err:
            LOG.error("CloudWatch agent %s not installed: %s", version, err)
            return 1
        except (BotoCoreError, ClientError, OSError) as err:
            LOG.error("CloudWatch agent %s not installed: cannot download it (%s); trying again later", version, err)
            return 1
        INSTALLED.parent.mkdir(parents=True, exist_ok=True)
        INSTALLED.write_text(version + "\n")
        LOG.info("CloudWatch agent %s installed (signed by %s)", version, signer)
    subprocess.run(
        [
            CTL,
            "-a",
            "fetch-config",
            "-m",
            "ec2",
            "-s",
            "-c",
            f"file:{Path(config_path).parent / 'cloudwatch-agent.json'}",
        ],
        check=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
