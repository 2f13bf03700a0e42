"""Get the node a trusted certificate, per its TLS mode, and install it with the deploy hook.

letsencrypt: certbot with the dns-route53 plugin (DNS-01: port 80 stays closed); state on the
data volume, renewals by certbot's own timer. self-signed / provided: the key and the
certificate from SSM Parameter Store, where Pulumi put them. On failure the node keeps serving
what it has, the reason goes to the journal, and the timer tries again later: nothing
crash-loops.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from wis2node.node.nodeconfig import CONFIG_PATH, ConfigError, NodeConfig, Tls

TEMPFAIL = 75  # sysexits EX_TEMPFAIL: try again later


def certbot_state(tls: Tls) -> list[str]:
    """certbot's options naming the ACME server and where it keeps its state (on the data volume)."""
    if tls.acme_server is None:  # the renderer sets it in letsencrypt mode, the only one that runs certbot
        raise ConfigError(f"tls.acme_server: not set, and certbot needs it (tls.mode is {tls.mode!r})")
    return [
        "--server",
        tls.acme_server,
        "--config-dir",
        tls.letsencrypt_dir,
        "--work-dir",
        tls.letsencrypt_work_dir,
        "--logs-dir",
        tls.letsencrypt_logs_dir,
    ]


def letsencrypt(config: NodeConfig) -> int:
    tls, fqdn = config.tls, config.fqdn
    live = os.path.join(tls.letsencrypt_dir, "live", fqdn)
    if os.path.exists(os.path.join(live, "fullchain.pem")):
        print(f"wis2-certificate: Let's Encrypt certificate for {fqdn} present; certbot.timer renews it")
        return 0
    command = [
        "certbot",
        "certonly",
        "--non-interactive",
        "--agree-tos",
        "--dns-route53",
        "--domain",
        fqdn,
        "--cert-name",
        fqdn,
        "--key-type",
        "ecdsa",
        *certbot_state(tls),
        "--deploy-hook",
        tls.deploy_hook,
    ]
    command += ["--email", tls.letsencrypt_email] if tls.letsencrypt_email else ["--register-unsafely-without-email"]
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        reason = (run.stderr or run.stdout).strip().splitlines()[-3:]
        print(
            f"wis2-certificate: issuance for {fqdn} failed (certbot exit {run.returncode}): "
            f"{' / '.join(reason)}; still serving the current certificate, will retry",
            file=sys.stderr,
        )
        return TEMPFAIL
    print(f"wis2-certificate: Let's Encrypt issued a certificate for {fqdn}")
    return 0


def from_stack(config: NodeConfig) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    tls = config.tls
    ssm = boto3.client("ssm", region_name=config.region)
    try:
        certificate = ssm.get_parameter(Name=tls.certificate_parameter)["Parameter"]["Value"]
    except (BotoCoreError, ClientError) as err:
        print(
            f"wis2-certificate: no certificate in {tls.certificate_parameter} yet ({err}); "
            "still serving the current one",
            file=sys.stderr,
        )
        return TEMPFAIL
    try:
        key = ssm.get_parameter(Name=tls.key_parameter, WithDecryption=True)["Parameter"]["Value"]
    except (BotoCoreError, ClientError) as err:
        print(f"wis2-certificate: cannot read the key from {tls.key_parameter}: {err}", file=sys.stderr)
        return TEMPFAIL
    installed = os.path.join(tls.installed_dir, "fullchain.pem")
    if os.path.exists(installed) and _read(installed) == certificate:
        print("wis2-certificate: the stack's certificate is already installed")
        return 0
    with tempfile.TemporaryDirectory() as lineage:
        os.chmod(lineage, 0o700)
        with open(os.path.join(lineage, "fullchain.pem"), "w") as handle:
            handle.write(certificate)
        with open(os.open(os.path.join(lineage, "privkey.pem"), os.O_WRONLY | os.O_CREAT, 0o600), "w") as handle:
            handle.write(key)
        subprocess.run([tls.deploy_hook], check=True, env={**os.environ, "RENEWED_LINEAGE": lineage})
    return 0


def main(config_path: str = CONFIG_PATH) -> int:
    from wis2node.node.nodeconfig import load_config

    config = load_config(config_path, (("tls", "letsencrypt_email"),))
    return letsencrypt(config) if config.tls.mode == "letsencrypt" else from_stack(config)


def _read(path: str) -> str:
    with open(path) as handle:
        return handle.read()
