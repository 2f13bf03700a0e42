"""A new publisher password: `python -m wis2node rotate-publisher-password --stack STACK`.

The operator's credentials write a new random password as a new version of the stack's SSM
SecureString (the node's own role may only create it, never overwrite it). The node's
wis2-config.timer sees the new version within a minute, writes it to the broker's password file
and has mosquitto re-read its accounts (SIGHUP): connected clients stay connected, the next login
with the old password is refused. The password is never printed: read it with the command shown.
"""

from __future__ import annotations

import secrets

from wis2node.errors import SettingsError


def rotate(ssm, name: str) -> int:
    """Store a new password as a new version of the parameter; return that version."""
    try:
        current = ssm.get_parameter(Name=name)["Parameter"]
    except ssm.exceptions.ParameterNotFound:
        raise SettingsError(
            f"no publisher password in {name}: the node makes it at its first boot; "
            "deploy first (or check the stack's region)"
        ) from None
    if current.get("Type") != "SecureString":
        raise SettingsError(f"{name} is a {current.get('Type')}, expected a SecureString; not touching it")
    answer = ssm.put_parameter(Name=name, Type="SecureString", Value=secrets.token_urlsafe(32), Overwrite=True)
    return int(answer["Version"])


def read_command(name: str, region: str) -> str:
    return (
        f"aws ssm get-parameter --region {region} --name {name} --with-decryption --query Parameter.Value --output text"
    )
