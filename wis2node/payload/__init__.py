"""The node's files, rendered from templates: settings + deploy-time facts in, bytes out.

Pure and deterministic (no Pulumi, no clock, no randomness): the same inputs give the same bytes,
so a preview shows a user-data change only when something really changed.
"""

from __future__ import annotations

import base64
import gzip
from dataclasses import dataclass
from pathlib import Path

import jinja2

from wis2node.settings import NodeSettings

TEMPLATES = Path(__file__).parent / "templates"
DATA_ROOT = "/srv/wis2"
# EC2 refuses user data over 16 KB (before base64).
USER_DATA_LIMIT = 16 * 1024

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)


@dataclass(frozen=True)
class DeployFacts:
    """What only the deployment knows: ids of resources created alongside the instance."""

    data_volume_id: str


@dataclass(frozen=True)
class NodeFile:
    """One file the VM gets, with its owner and mode."""

    path: str
    content: bytes
    mode: str = "0644"
    owner: str = "root:root"

    @property
    def gz_b64(self) -> str:
        """The content gzipped (mtime 0, so the bytes are stable) and base64-encoded."""
        return base64.b64encode(gzip.compress(self.content, mtime=0)).decode("ascii")


# (template under templates/, path on the VM, mode)
_FILES = (
    ("usr/local/sbin/wis2-data-volume", "/usr/local/sbin/wis2-data-volume", "0755"),
)
_PACKAGES = ()
_COMMANDS = ("/usr/local/sbin/wis2-data-volume",)


def _context(settings: NodeSettings, facts: DeployFacts) -> dict:
    return {
        "centre_id": settings.centre_id,
        "environment": settings.environment,
        "stack": settings.stack,
        "fqdn": settings.fqdn,
        "hostname": settings.fqdn.split(".", 1)[0],
        "data_root": DATA_ROOT,
        "data_volume_id": facts.data_volume_id,
    }


def render_files(settings: NodeSettings, facts: DeployFacts) -> list[NodeFile]:
    """Every file the node's VM gets, in a stable order."""
    context = _context(settings, facts)
    return [
        NodeFile(path=path, content=_ENV.get_template(template).render(context).encode("utf-8"), mode=mode)
        for template, path, mode in _FILES
    ]


def render_user_data(settings: NodeSettings, facts: DeployFacts) -> str:
    """The cloud-init document that turns a fresh Ubuntu instance into the node."""
    document = _ENV.get_template("cloud-config.yaml").render(
        _context(settings, facts),
        files=render_files(settings, facts),
        packages=_PACKAGES,
        commands=_COMMANDS,
    )
    size = len(document.encode("utf-8"))
    if size > USER_DATA_LIMIT:
        raise ValueError(f"user data is {size} bytes, over EC2's limit of {USER_DATA_LIMIT}")
    return document
