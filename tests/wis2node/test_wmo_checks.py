"""The agent's WMO checks: pywis-pubsub's own WNM suite, loaded without the rest of its package."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from wis2node.node import wmo_checks
from wis2node.node.notification import build_notification
from wis2node.node.rules import Rejected
from wis2node.node.wmo_checks import _cached_schema_suite, validate_notification, wnm_test_suite

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
from wis2node.node import wmo_checks
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


# The suite's schema test, its validator built once (wmo_checks.wnm_test_suite), against WMO's own
# test on the same messages: the same verdict, the same errors, word for word.
def hostile_messages() -> list[dict]:
    good = message()
    variants: list[dict] = [good]

    def variant(change) -> None:
        changed = json.loads(json.dumps(good))
        change(changed)
        variants.append(changed)

    variant(lambda m: m["properties"].pop("pubtime"))
    variant(lambda m: m.update(id=12345))
    variant(lambda m: m.update(type="FeatureCollection"))
    variant(lambda m: m.update(geometry={"type": "Point", "coordinates": "north"}))
    variant(lambda m: m.update(links=[]))
    variant(lambda m: m["links"][0].update(href=None, rel=7))
    variant(lambda m: m["properties"].update(integrity={"method": "md4", "value": 5}))
    variant(lambda m: m["properties"].update(datetime=1764000000))
    variant(lambda m: m.update(conformsTo="http://wis.wmo.int/spec/wnm/1/conf/core"))
    variant(lambda m: m.pop("properties"))
    variants.append({})
    variants.append({"id": "x" * 10_000, "links": [{"href": "\u0000"}] * 50})
    return variants


def test_the_schema_test_built_once_gives_wmos_own_verdict_and_errors():
    suite = wnm_test_suite()
    wmo = suite.__mro__[1]
    assert wmo.__name__ == "WNMTestSuite" and wmo.__module__.startswith("pywis_pubsub")
    verdicts = []
    for candidate in hostile_messages():
        ours, theirs = suite(candidate).test_requirement_validation(), wmo(candidate).test_requirement_validation()
        assert ours == theirs, candidate
        verdicts.append(ours["code"])
    assert verdicts[0] == "PASSED" and verdicts[1:] == ["FAILED"] * (len(verdicts) - 1)


def schema_global(suite: type) -> tuple[ModuleType, str]:
    module = sys.modules[suite.__module__]
    return module, "WNM_MESSAGE_SCHEMA" if hasattr(module, "WNM_MESSAGE_SCHEMA") else "MESSAGE_SCHEMA"


def test_a_schema_changed_on_disk_is_read_again(tmp_path, monkeypatch):
    wmo = wnm_test_suite().__mro__[1]
    module, name = schema_global(wmo)
    schema = json.loads(getattr(module, name).read_text())
    copy = tmp_path / "wis2-notification-message-bundled.json"
    copy.write_text(json.dumps(schema))
    monkeypatch.setattr(module, name, copy)
    suite = _cached_schema_suite(wmo)
    without_pubtime = message()
    del without_pubtime["properties"]["pubtime"]
    assert suite(without_pubtime).test_requirement_validation()["code"] == "FAILED"
    # a schema that no longer requires pubtime (a bundle sync, say): the next message is checked by it
    schema["properties"]["properties"]["required"].remove("pubtime")
    copy.write_text(json.dumps(schema, indent=1))
    assert suite(without_pubtime).test_requirement_validation() == wmo(without_pubtime).test_requirement_validation()
    assert suite(without_pubtime).test_requirement_validation()["code"] == "PASSED"


def test_without_its_schema_the_suite_says_so_as_wmos_does(tmp_path, monkeypatch):
    wmo = wnm_test_suite().__mro__[1]
    module, name = schema_global(wmo)
    monkeypatch.setattr(module, name, tmp_path / "absent.json")
    with pytest.raises(RuntimeError, match="WNM schema missing"):
        _cached_schema_suite(wmo)(message()).test_requirement_validation()


def test_a_corrupt_schema_keeps_the_event_queued_and_is_not_kept_once_mended(tmp_path, monkeypatch):
    wmo = wnm_test_suite().__mro__[1]
    module, name = schema_global(wmo)
    whole = getattr(module, name).read_text()
    copy = tmp_path / "wis2-notification-message-bundled.json"
    copy.write_text(whole[: len(whole) // 2])  # half written, as a sync cut short leaves it
    monkeypatch.setattr(module, name, copy)
    suite = _cached_schema_suite(wmo)
    monkeypatch.setattr(wmo_checks, "_SUITE", suite)
    # not Rejected (the agent would park the upload as a bad notification): the node's own fault,
    # as a missing schema is, so the event stays in the queue and comes back
    with pytest.raises(RuntimeError, match=r"WNM schema .*wis2-notification-message-bundled\.json is not JSON"):
        validate_notification(message())
    copy.write_text(whole)
    assert json.loads(validate_notification(message()))["id"]
    assert suite(message()).test_requirement_validation() == wmo(message()).test_requirement_validation()
