"""Datasets by topic: the records' channels, one record per topic, and the optional GTS headers."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.wmo import ets_validate
from wis2node import metadata as metadata_module
from wis2node.check import check_stacks
from wis2node.metadata import metadata_dir
from wis2node.node.datasets import DatasetError, conflicts, gts_for, parse_gts_mapping, record_topics
from wis2node.node.notification import build_notification
from wis2node.node.wmo_checks import validate_notification
from wis2node.stackfile import find_stack

STACK = find_stack("aq-examplemet-test")
SYNOP = metadata_dir(STACK.stack) / "surface-based-observations-synop.json"
MAPPING = SYNOP.with_suffix("") / "gts_headers_mapping.csv"


def test_topics_are_the_origin_channels_of_mqtt_links():
    record = {
        "links": [
            {"href": "mqtts://broker:8883", "channel": "origin/a/wis2/c/data/core/weather/x"},
            {"href": "mqtts://gb.example", "channel": "cache/a/wis2/c/data/core/weather/x"},  # a GB's, not ours
            {"href": "mqtt://broker", "wmo:topic": "origin/a/wis2/c/data/core/weather/y"},  # WCMP2 drafts' name
            {"href": "https://node/data/", "channel": "origin/a/wis2/c/data/core/weather/z"},  # not MQTT
            "not a link",
        ]
    }
    assert record_topics(record) == ["origin/a/wis2/c/data/core/weather/x", "origin/a/wis2/c/data/core/weather/y"]


def test_two_records_claiming_one_topic_are_named():
    link = {"href": "mqtts://b", "channel": "origin/a/wis2/c/data/core/weather/x"}
    found = conflicts({"one.json": {"links": [link]}, "two.json": {"links": [link]}, "three.json": {}})
    assert found == [
        "topic origin/a/wis2/c/data/core/weather/x is declared by one.json and two.json: a Global "
        "Broker could not tell which dataset its data belongs to; expected one record per topic"
    ]


def test_check_refuses_two_records_claiming_one_topic(tmp_path, monkeypatch):
    folder = tmp_path / STACK.stack / "metadata"
    shutil.copytree(metadata_dir(STACK.stack), folder)
    record = json.loads(SYNOP.read_text())
    record["id"] += "-again"
    (folder / "synop-again.json").write_text(json.dumps(record))
    monkeypatch.setattr(metadata_module, "metadata_dir", lambda name, stacks=tmp_path: stacks / name / "metadata")
    result = check_stacks([STACK])
    assert not result.ok
    assert any(
        "surface-based-observations-synop.json and stacks/aq-examplemet-test/metadata/synop-again.json" in p
        for p in result.problems
    ), result.problems


@pytest.mark.parametrize(
    "text,expected",
    [
        (
            "TTAAii,CCCC\nSMAQ01,EXMP\n",
            "line 1 is ['TTAAii', 'CCCC']: expected the header string_in_filepath,TTAAii,CCCC",
        ),
        ("string_in_filepath,TTAAii,CCCC\nA,SMAQ01\n", "line 2 has 2 columns"),
        ("string_in_filepath,TTAAii,CCCC\nA B,SMAQ01,EXMP\n", "line 2: string_in_filepath='A B'"),
        ("string_in_filepath,TTAAii,CCCC\nA,smaq01,EXMP\n", "line 2: TTAAii='smaq01'"),
        ("string_in_filepath,TTAAii,CCCC\nA,SMAQ01,EXMP\nB,SMAQ02,EXM\n", "line 3: CCCC='EXM': expected four capital"),
    ],
)
def test_a_bad_gts_mapping_is_refused_naming_line_and_value(text, expected):
    with pytest.raises(DatasetError, match="") as refused:
        parse_gts_mapping(text.encode())
    assert expected in str(refused.value)


def test_the_first_matching_row_gives_the_headers():
    headers = parse_gts_mapping(MAPPING.read_bytes())
    assert gts_for(headers, "A_SMAQ01EXMP241200.bufr4") == {"ttaaii": "SMAQ01", "cccc": "EXMP"}
    assert gts_for(headers, "A_SMAQ02EXMP241200.bufr4") == {"ttaaii": "SMAQ02", "cccc": "EXMP"}
    assert gts_for(headers, "other.bufr4") is None


def test_a_notification_with_gts_headers_passes_pywis_pubsub(tmp_path):
    message = build_notification(
        data_id=f"{json.loads(SYNOP.read_text())['id']}/data/x/A_SMAQ01EXMP241200.bufr4",
        href="https://node.example/data/x/A_SMAQ01EXMP241200.bufr4",
        content=b"BUFR",
        media_type="application/bufr",
        metadata_id=json.loads(SYNOP.read_text())["id"],
        gts={"ttaaii": "SMAQ01", "cccc": "EXMP"},
    )
    assert ets_validate(message, tmp_path)["summary"]["FAILED"] == 0  # the command line's suite
    assert json.loads(validate_notification(message))["properties"]["gts"] == {"ttaaii": "SMAQ01", "cccc": "EXMP"}
