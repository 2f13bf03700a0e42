"""The command line: the demo end to end, and the local node's life cycle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from wis2node.stackfile import ROOT

# Starts the node's daemons: not in the quick loop, `pytest -m "not slow"` (docs/DEVELOPING.md).
pytestmark = pytest.mark.slow


def test_demo_publishes_receives_and_downloads():
    run = subprocess.run(
        [sys.executable, "-m", "wis2node", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("sha512 matches") == 2, run.stdout  # the dataset's record, then the file
    assert "notification for the discovery metadata" in run.stdout and "notification for the data" in run.stdout
    assert "every download matches its notification" in run.stdout


def test_local_node_runs_until_interrupted_then_stops_both_daemons(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "wis2node", "local", "--stack", "aq-examplemet-test", "--workdir", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    node_json = tmp_path / "node.json"
    deadline = time.monotonic() + 30
    while not node_json.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    assert node_json.exists(), process.stdout.read() if process.poll() is not None else "no node.json"
    described = json.loads(node_json.read_text())
    pids = [int((tmp_path / "run" / name).read_text()) for name in ("nginx.pid", "mosquitto/mosquitto.pid")]
    assert described["publisher"]["password"] and described["ports"]["https"]
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}"), f"process {pid} still running"
    assert subprocess.run(["pgrep", "-f", str(tmp_path / "etc/mosquitto")], capture_output=True).returncode == 1


def test_bad_stack_is_refused_with_the_key_named(tmp_path):
    bad = tmp_path / "Pulumi.bad-test.yaml"
    bad.write_text("config:\n  aws:region: eu-west-1\n  wis2-node:centreId: Bad\n")
    run = subprocess.run(
        [sys.executable, "-m", "wis2node", "render", "--stack", str(bad), "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "wis2-node:centreId = 'Bad'" in run.stderr
