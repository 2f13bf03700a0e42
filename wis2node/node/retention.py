"""Local retention: published data files older than the stack's retention leave the data volume."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from wis2node.node.nodeconfig import CONFIG_PATH

LOG = logging.getLogger("wis2node.node.retention")


def remove_expired(data_dir: Path, days: int, now: float | None = None) -> list[Path]:
    """Delete files under data_dir last written more than `days` ago; return what went."""
    cutoff = (now or time.time()) - days * 86400
    removed = []
    for path in sorted(data_dir.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.stat().st_mtime < cutoff:
            path.unlink()
            removed.append(path)
    for directory in sorted((p for p in data_dir.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(directory.iterdir()):
            directory.rmdir()
    return removed


def main(config_path: str = CONFIG_PATH) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from wis2node.node.nodeconfig import load_config

    publishing = load_config(config_path, (("publishing", "retention_days"),)).publishing
    days = publishing.retention_days
    assert days is not None  # load_config fills the runtime keys asked for, or refuses
    removed = remove_expired(Path(publishing.public_dir) / "data", days)
    LOG.info("removed %d files older than %s days", len(removed), days)
    if Path(publishing.state_db).exists():
        from wis2node.node.state import State

        LOG.info("forgot %d events the queue can no longer redeliver", State(Path(publishing.state_db)).forget_events())
    return 0
