"""pywis-pubsub's test suite on a message, run as its command line does (HOME: see conftest)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def ets_validate(message: dict, tmp_path: Path) -> dict:
    """pywis-pubsub's executable test suite on one message (schema first); returns its report."""
    path = tmp_path / "message.json"
    path.write_text(json.dumps(message))
    tool = str(Path(sys.executable).parent / "pywis-pubsub")
    run = subprocess.run([tool, "ets", "validate", str(path)], capture_output=True, text=True)
    if run.returncode != 0:  # the suite stops at a schema failure and says why
        assert "fails WNM validation" in run.stdout + run.stderr, run.stdout + run.stderr
        return {"summary": {"PASSED": 0, "FAILED": 1, "SKIPPED": 0}, "errors": run.stdout + run.stderr}
    return json.loads(run.stdout[run.stdout.index("{") :])["ets-report"]  # after its "Opening ..." lines
