"""Local retention: files past the stack's retention leave the data volume, nothing else does."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.wis2node.nodejson import write_node_json
from wis2node.stackfile import ROOT


def test_files_past_retention_are_removed(tmp_path):
    public = tmp_path / "public"
    now = time.time()
    files = {
        "data/core/weather/a/old.bufr4": now - 8 * 86400,
        "data/core/weather/a/recent.bufr4": now - 6 * 86400,
        "data/core/weather/b/old-too.bufr4": now - 30 * 86400,
        "metadata/old-record.json": now - 400 * 86400,
        # the copies an update links to (wis2node.node.rules.version_key) expire by their own age
        f"data/core/weather/a/_versions/{'0' * 32}/recent.bufr4": now - 9 * 86400,
        f"data/core/weather/a/_versions/{'1' * 32}/recent.bufr4": now - 1 * 86400,
    }
    for relative, mtime in files.items():
        path = public / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        os.utime(path, (mtime, mtime))
    config = write_node_json(
        tmp_path / "node.json",
        publishing={"public_dir": str(public), "retention_days": 7, "state_db": str(tmp_path / "none.sqlite")},
    )
    run = subprocess.run(
        [sys.executable, "-m", "wis2node", "retention", str(config)], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    remaining = sorted(str(p.relative_to(public)) for p in public.rglob("*") if p.is_file())
    assert remaining == [
        f"data/core/weather/a/_versions/{'1' * 32}/recent.bufr4",
        "data/core/weather/a/recent.bufr4",
        "metadata/old-record.json",
    ]
    assert not (public / "data/core/weather/b").exists(), "emptied directories go too"
    assert not (public / f"data/core/weather/a/_versions/{'0' * 32}").exists()
    assert "removed 3 files" in run.stderr


def test_events_older_than_the_queue_can_redeliver_are_forgotten(tmp_path):
    from wis2node.node.state import State

    state = State(tmp_path / "state.sqlite")
    state.rel_for("old-message/0", "data/a.bufr4", deleted=False)
    state.rel_for("new-message/0", "data/b.bufr4", deleted=False)
    state.db.execute("UPDATE events SET seen = unixepoch() - 15 * 86400 WHERE event_id = 'old-message/0'")
    config = write_node_json(
        tmp_path / "node.json",
        publishing={
            "public_dir": str(tmp_path / "public"),
            "retention_days": 7,
            "state_db": str(tmp_path / "state.sqlite"),
        },
    )
    (tmp_path / "public" / "data").mkdir(parents=True)
    run = subprocess.run(
        [sys.executable, "-m", "wis2node", "retention", str(config)], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert "forgot 1 events" in run.stderr
    remaining = [row[0] for row in State(tmp_path / "state.sqlite").db.execute("SELECT event_id FROM events")]
    assert remaining == ["new-message/0"]
