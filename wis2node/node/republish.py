"""Announce every discovery metadata record the node serves again (the daily timer).

    python -m wis2node.node republish [/etc/wis2/node.json]

A Global Broker relays only what it hears: a record announced before a broker (or a Global
Discovery Catalogue) subscribed is lost to it. wis2box republishes its records every day for this
reason (wis2box.cron); so does the node, with rel "update" (the record is not new), from the files
nginx serves under /metadata/.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from wis2node.node.media_types import METADATA_TYPE
from wis2node.node.nodeconfig import CONFIG_PATH, NodeConfig, load_config
from wis2node.node.notification import build_notification
from wis2node.node.rules import Rejected, check_file_name, topic_root

LOG = logging.getLogger("wis2node.node.republish")
MAX_RECORD_BYTES = 1024 * 1024


def records(metadata_dir: Path) -> list[tuple[Path, dict]]:
    """The records served (name order), each with its parsed content; unreadable ones are logged and skipped."""
    found = []
    for path in sorted(metadata_dir.glob("*.json")):
        try:
            check_file_name(path.name)
            if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_RECORD_BYTES:
                raise Rejected("not a regular file of at most 1 MB")
            record = json.loads(path.read_bytes())
            if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                raise Rejected("no record id")
        except (OSError, ValueError, Rejected) as err:
            LOG.error("%s: skipped: %s", path.name, err)
            continue
        found.append((path, record))
    return found


def republish(config: NodeConfig, publisher, validate=None) -> list[str]:
    """Publish one notification per record; return the record ids announced."""
    from wis2node.node.wmo_checks import validate_notification

    validate = validate or validate_notification
    centre = config.centre_id
    metadata_dir = Path(config.publishing.public_dir) / "metadata"
    announced = []
    for path, record in records(metadata_dir):
        content = path.read_bytes()
        message = build_notification(
            data_id=f"{centre}/metadata/{record['id']}",
            href=f"https://{config.fqdn}/metadata/{path.name}",
            content=content,
            media_type=METADATA_TYPE,
            rel="update",
        )
        publisher.publish(f"{topic_root(centre)}/metadata", validate(message))
        announced.append(record["id"])
        LOG.info("announced %s again", record["id"])
    return announced


def main(config_path: str = CONFIG_PATH) -> int:
    import boto3

    from wis2node.node.publisher import Publisher

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config = load_config(config_path, needs=())
    broker = config.broker
    password = (
        boto3.session.Session(region_name=config.region)
        .client("ssm")
        .get_parameter(Name=broker.password_parameter, WithDecryption=True)["Parameter"]["Value"]
    )
    publisher = Publisher("127.0.0.1", broker.local_port, broker.publisher_user, password)
    try:
        announced = republish(config, publisher)
    finally:
        publisher.reset()
    LOG.info("%d discovery metadata records announced again", len(announced))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
