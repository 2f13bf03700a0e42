"""Give the broker its publisher account, with a password kept only in SSM Parameter Store.

The first boot generates the password and stores it as a SecureString; later boots (and
replacement instances) read it back, so publishers keep their credential. It never appears in
user data or in Pulumi's state. Operators read it with `aws ssm get-parameter --with-decryption`.
"""

from __future__ import annotations

import secrets
import subprocess

import boto3

from wis2node.node.nodeconfig import CONFIG_PATH, load_config


def publisher_password(ssm, name: str) -> str:
    try:
        return ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        pass
    try:
        ssm.put_parameter(
            Name=name,
            Type="SecureString",
            Value=secrets.token_urlsafe(32),
            Overwrite=False,
            Description="WIS2 Node publisher account password (generated on the node)",
        )
    except ssm.exceptions.ParameterAlreadyExists:  # another boot won the race: use its password
        pass
    return ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]


def set_password(password_file: str, user: str, password: str) -> None:
    """The publisher account in the broker's password file (mosquitto re-reads it on SIGHUP)."""
    # On standard input (asked twice, as at a terminal), never on the command line: any local user
    # can read a process's arguments in /proc while it runs.
    subprocess.run(
        ["mosquitto_passwd", password_file, user],
        input=f"{password}\n{password}\n",
        text=True,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def main(config_path: str = CONFIG_PATH) -> int:
    config = load_config(config_path, needs=())
    broker = config.broker
    ssm = boto3.client("ssm", region_name=config.region)
    set_password(broker.password_file, broker.publisher_user, publisher_password(ssm, broker.password_parameter))
    print(f"wis2-publisher-credential: account {broker.publisher_user} set from {broker.password_parameter}")
    return 0
