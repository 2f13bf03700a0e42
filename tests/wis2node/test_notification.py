"""WIS2 Notification Messages built by the node pass WMO's own test suite."""

from __future__ import annotations

import datetime

import pytest

from tests.wmo import ets_validate
from wis2node.node.notification import INLINE_LIMIT, build_notification, verify_integrity

HREF = "https://wis2node-test.examplemet.example.org/data/core/weather/surface-based-observations/synop/x.bufr4"


# 3072 bytes are 4096 in base64: the largest file that travels inline
@pytest.mark.parametrize("size", [10, 3072, 3073, 100_000])
def test_messages_pass_the_wnm_test_suite(tmp_path, size):
    content = bytes(range(256)) * (size // 256) + bytes(size % 256)
    message = build_notification(
        data_id="aq-examplemet-test/synop/x.bufr4",
        href=HREF,
        content=content,
        media_type="application/bufr",
        metadata_id="urn:wmo:md:aq-examplemet-test:synop",
        observed=datetime.datetime(2026, 11, 24, 6, tzinfo=datetime.UTC),
    )
    report = ets_validate(message, tmp_path)
    assert report["summary"]["FAILED"] == 0, report
    assert ("content" in message["properties"]) is (size <= INLINE_LIMIT * 3 // 4)
    assert message["links"][0]["length"] == size and verify_integrity(message, content)
    assert not verify_integrity(message, content + b"x")


def test_the_suite_catches_a_broken_message(tmp_path):
    message = build_notification(data_id="x", href=HREF, content=b"x", media_type="application/bufr")
    del message["properties"]["pubtime"]
    assert ets_validate(message, tmp_path)["summary"]["FAILED"] > 0
