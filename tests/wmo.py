"""The WMO validators, run offline against the bundles kept in ../shared (or synced when absent)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from wis2node.stackfile import ROOT

SHARED_BUNDLES = ROOT.parent / "shared" / "reference" / "wis2-bundles" / "home"


def validator_home(tmp_path: Path) -> Path:
    """A HOME holding the validators' bundles: a copy of ../shared's, or freshly synced ones."""
    home = tmp_path / "wis2-home"
    if SHARED_BUNDLES.is_dir():
        shutil.copytree(SHARED_BUNDLES, home)
        for path in [home, *home.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
    else:  # a machine with internet: let the tools fetch their own
        home.mkdir()
        environment = {**os.environ, "HOME": str(home)}
        subprocess.run([_tool("pywis-pubsub"), "schema", "sync"], env=environment, check=True)
    return home


def ets_validate(message: dict, home: Path, tmp_path: Path) -> dict:
    """pywis-pubsub's executable test suite on one message (schema first); returns its report."""
    path = tmp_path / "message.json"
    path.write_text(json.dumps(message))
    run = subprocess.run([_tool("pywis-pubsub"), "ets", "validate", str(path)],
                         capture_output=True, text=True, env={**os.environ, "HOME": str(home)})
    if run.returncode != 0:  # the suite stops at a schema failure and says why
        assert "fails WNM validation" in run.stdout + run.stderr, run.stdout + run.stderr
        return {"summary": {"PASSED": 0, "FAILED": 1, "SKIPPED": 0}, "errors": run.stdout + run.stderr}
    return json.loads(run.stdout[run.stdout.index("{"):])["ets-report"]  # after its "Opening ..." lines


def _tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)
