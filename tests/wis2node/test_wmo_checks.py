"""The agent's WMO checks: pywis-pubsub's own WNM suite, loaded without the rest of its package."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from wis2node.node.notification import build_notification
from wis2node.node.rules import Rejected
from wis2node.node.wmo_checks import validate_notification

ROOT = Path(__file__).resolve().parents[2]


def message() -> dict:
    return build_notification(
        data_id="aq-examplemet-test/data/core/weather/x.bufr4",
        href="https://node.example.org/data/core/weather/x.bufr4",
        content=b"x" * 100,
        media_type="application/bufr",
        metadata_id="urn:wmo:md:aq-examplemet-test:synop",
        observed=datetime.datetime(2026, 11, 24, 6, tzinfo=datetime.UTC),
    )


def test_a_valid_notification_passes_as_it_goes_on_the_wire():
    good = message()
    assert json.loads(validate_notification(good)) == good


def test_a_notification_without_pubtime_fails_the_wnm_schema():
    bad = message()
    del bad["properties"]["pubtime"]
    with pytest.raises(Rejected, match=r"fails the WNM schema.*pubtime"):
        validate_notification(bad)


def test_a_notification_in_local_time_fails_the_suites_temporal_test():
    bad = message()
    bad["properties"]["datetime"] = "2026-11-24T06:00:00+01:00"  # the schema takes it; the suite's own test does not
    with pytest.raises(Rejected, match=re.escape("fails http://wis.wmo.int/spec/wnm/1/conf/core/temporal")):
        validate_notification(bad)


# In a fresh interpreter, as the agent starts: its module, its checks on one good and one bad message.
AGENT_CHECKS = """
import datetime, json, sys
import wis2node.node.agent as agent
from wis2node.node.notification import build_notification
from wis2node.node.rules import Rejected
good = build_notification(data_id="aq-examplemet-test/x", href="https://node.example.org/x", content=b"x",
                          media_type="application/bufr",
                          observed=datetime.datetime(2026, 11, 24, 6, tzinfo=datetime.timezone.utc))
agent.validate_notification(good)
bad = dict(good, id="not a uuid")
try:
    agent.validate_notification(bad)
    rejected = None
except Rejected as err:
    rejected = str(err)
agent.topic_validator("aq-examplemet-test")("origin/a/wis2/aq-examplemet-test/data/core/weather/surface-based-observations/synop")
heavy = sorted(name for name in ("numpy", "shapely", "pywis_pubsub.subscribe") if name in sys.modules)
print(json.dumps({"heavy": heavy, "rejected": rejected}))
"""

# Then the rest of pywis-pubsub, asked for in the same process, is what an ordinary import makes.
REST_OF_PACKAGE = """
import pywis_pubsub
from importlib.metadata import version
assert pywis_pubsub.__version__ == version("pywis-pubsub"), pywis_pubsub.__version__
try:
    from pywis_pubsub.verification import data_verified  # 0.12
except ModuleNotFoundError:
    from pywis_pubsub.wnm.verification import data_verified  # 0.13
assert callable(data_verified)
assert pywis_pubsub.cli.name == "cli" and "subscribe" in pywis_pubsub.cli.commands
assert not hasattr(pywis_pubsub, "__getattr__")
print("whole package")
"""


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_agent_checks_messages_without_importing_numpy_or_shapely():
    run = run_python(AGENT_CHECKS)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["heavy"] == [], f"the agent's checks imported {result['heavy']}"
    assert result["rejected"] and "conf/core/id" in result["rejected"], result


def test_the_rest_of_pywis_pubsub_still_imports_in_the_agents_process():
    run = run_python(AGENT_CHECKS + REST_OF_PACKAGE)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "whole package"
