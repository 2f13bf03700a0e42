"""The rules that decide what an S3 event may become: one test per rule and per reason to refuse."""

from __future__ import annotations

import datetime
import json
import math

import pytest

from wis2node.node import rules
from wis2node.node.rules import Event, Rejected

CENTRE = "aq-examplemet-test"
BUCKET = "wis2-ingest-example"
SYNOP = "data/core/weather/surface-based-observations/synop"
UTC = datetime.UTC


def record(
    key: str = f"{SYNOP}/A.bufr4",
    *,
    source: object = "aws:s3",
    bucket: object = BUCKET,
    name: object = "ObjectCreated:Put",
    size: object = 3,
) -> dict:
    """An S3 event record as S3 sends it (keys URL-encoded, + for a space)."""
    return {
        "eventSource": source,
        "eventName": name,
        "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": size}},
    }


def refused(rule, *args) -> str:
    with pytest.raises(Rejected) as caught:
        rule(*args)
    return str(caught.value)


# -- which events are taken ------------------------------------------------------------------


def test_an_s3_event_of_the_nodes_bucket_is_taken_with_its_decoded_key():
    assert rules.accept_record(record(f"{SYNOP}/A+B%2B.bufr4", size=12), BUCKET) == Event(
        key=f"{SYNOP}/A B+.bufr4", deleted=False, size=12
    )
    assert rules.accept_record(record(name="ObjectRemoved:Delete", size=None), BUCKET).deleted


@pytest.mark.parametrize("source", ["aws:sqs", "aws:s3 ", None, ["aws:s3"]])
def test_an_event_from_another_source_is_refused(source):
    assert "only S3 events (aws:s3)" in refused(rules.accept_record, record(source=source), BUCKET)


@pytest.mark.parametrize("bucket", ["someone-elses-bucket", None, {"name": BUCKET}])
def test_an_event_of_another_bucket_is_refused(bucket):
    assert f"only events of the node's bucket '{BUCKET}'" in refused(rules.accept_record, record(bucket=bucket), BUCKET)


def test_an_event_without_a_bucket_is_refused():
    bare = record()
    del bare["s3"]["bucket"]
    assert "bucket=None" in refused(rules.accept_record, bare, BUCKET)


@pytest.mark.parametrize("name", ["ObjectRestore:Completed", "s3:TestEvent", None])
def test_an_event_other_than_created_or_removed_is_refused(name):
    assert "expected ObjectCreated:* or ObjectRemoved:*" in refused(rules.accept_record, record(name=name), BUCKET)


@pytest.mark.parametrize("key", ["", None, 7])
def test_an_event_without_a_key_is_refused(key):
    assert "expected the object's key" in refused(rules.accept_record, record(key=key), BUCKET)


def test_a_key_over_s3s_limit_is_refused():
    assert "over S3's 1024 bytes" in refused(rules.accept_record, record("data/" + "x" * 1020), BUCKET)


@pytest.mark.parametrize("size", [-1, "3", True, 1.5])
def test_a_created_event_with_a_bad_size_is_refused(size):
    assert "expected a number of bytes" in refused(rules.accept_record, record(size=size), BUCKET)


@pytest.mark.parametrize("value", ["a string", 3, None])
def test_a_record_that_is_not_an_object_is_refused(value):
    assert "expected an S3 event record" in refused(rules.accept_record, value, BUCKET)


# -- key -> topic ----------------------------------------------------------------------------


def test_a_data_key_gives_the_topic_below_the_centre_id():
    assert rules.topic_for(f"{SYNOP}/A_SMAQ01EXMP241200.bufr4", CENTRE) == f"origin/a/wis2/{CENTRE}/{SYNOP}"
    assert (
        rules.topic_for("data/core/hydrology/experimental/water_level-2/x.csv", CENTRE)
        == f"origin/a/wis2/{CENTRE}/data/core/hydrology/experimental/water_level-2"
    )


def test_a_metadata_key_gives_the_metadata_topic():
    assert rules.topic_for("metadata/record.json", CENTRE) == f"origin/a/wis2/{CENTRE}/metadata"


@pytest.mark.parametrize("key", ["other/x.bufr4", "x.bufr4", "data", "Data/core/x"])
def test_a_key_outside_data_and_metadata_is_refused(key):
    assert "expected data/<topic below the centre-id>/<file>" in refused(rules.topic_for, key, CENTRE)


def test_metadata_below_metadata_is_refused():
    assert "directly under metadata/" in refused(rules.topic_for, "metadata/sub/record.json", CENTRE)


@pytest.mark.parametrize(
    "key, level",
    [
        ("data/core/weather/experimental/../../../../../../../../etc/cron.d/x", ".."),
        ("data/core/weather/experimental/../../../../metadata/record.json", ".."),
        ("data/core/weather/./synop/x.bufr4", "."),
        ("data/core//weather/x.bufr4", ""),
        ("data/core/weather/experimental/Été Ñ/x.bufr4", "Été Ñ"),
        ("data/core/weather/experimental/Synop/x.bufr4", "Synop"),
        ("data/core/weather/experimental/synop.v2/x.bufr4", "synop.v2"),
        ("data/core/weather/experimental/-synop/x.bufr4", "-synop"),
        ("data/core/weather/experimental/synop-/x.bufr4", "synop-"),
        ("data/core/weather/experimental/a+b/x.bufr4", "a+b"),
        ("data/core/weather/experimental/#/x.bufr4", "#"),
    ],
)
def test_a_topic_level_outside_the_pattern_is_refused(key, level):
    reason = refused(rules.topic_for, key, CENTRE)
    assert f"topic level {level!r} is not allowed" in reason


@pytest.mark.parametrize(
    "name", ["", ".", "..", ".hidden", ".x.partial", "a b.bufr4", "é.bufr4", "a:b", "a\\b", "a\x00b"]
)
def test_a_file_name_outside_the_pattern_is_refused(name):
    assert f"file name {name!r} is not allowed" in refused(rules.topic_for, f"{SYNOP}/{name}", CENTRE)


def test_a_file_name_too_long_for_the_filesystem_is_refused():
    assert "over 255" in refused(rules.topic_for, f"{SYNOP}/{'n' * 256}", CENTRE)


def test_file_names_keep_wmo_upper_case_and_dots():
    rules.check_file_name("A_SMAQ01EXMP241200.bufr4")
    rules.check_file_name("climat-2026-11.csv.gz")


# -- key -> path -----------------------------------------------------------------------------


def test_a_key_is_served_from_its_own_path_in_the_public_folder(tmp_path):
    assert rules.public_path(tmp_path, f"{SYNOP}/x.bufr4") == tmp_path.resolve() / SYNOP / "x.bufr4"


@pytest.mark.parametrize("key", ["data/../../etc/passwd", "../x", "/etc/passwd", "data/.", "."])
def test_a_path_leaving_the_public_folder_or_not_its_own_is_refused(tmp_path, key):
    assert "not a file of its own inside the public folder" in refused(rules.public_path, tmp_path, key)


def test_a_path_through_a_symbolic_link_out_of_the_public_folder_is_refused(tmp_path):
    public, outside = tmp_path / "public", tmp_path / "outside"
    (public / "data").mkdir(parents=True)
    outside.mkdir()
    (public / "data" / "core").symlink_to(outside)
    assert "not a file of its own inside the public folder" in refused(rules.public_path, public, "data/core/x.bufr4")


# -- media type ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, expected",
    [
        (f"{SYNOP}/A.bufr4", "application/bufr"),
        (f"{SYNOP}/A.BUFR", "application/bufr"),
        ("data/core/weather/prediction/x.grib2", "application/grib"),
        ("data/x/y/z.csv", "text/csv"),
        ("data/x/y/z.nc", "application/netcdf"),
        ("metadata/record.json", "application/geo+json"),
    ],
)
def test_the_media_type_comes_from_the_file_name(key, expected):
    assert rules.media_type(key) == expected


@pytest.mark.parametrize("name", ["page.html", "page.htm", "x.svg", "x.js", "noextension", "x.exe"])
def test_a_name_off_the_allowlist_is_announced_as_octet_stream(name):
    assert rules.media_type(f"{SYNOP}/{name}") == "application/octet-stream"


# -- time ------------------------------------------------------------------------------------


def test_a_datetime_is_read_as_rfc3339_in_utc():
    assert rules.observation_time({"datetime": "2026-11-24T12:00:00Z"}) == {
        "observed": datetime.datetime(2026, 11, 24, 12, tzinfo=UTC)
    }
    assert rules.observation_time({"datetime": "2026-11-24T13:30:00+01:30"}) == {
        "observed": datetime.datetime(2026, 11, 24, 12, tzinfo=UTC)
    }
    assert rules.observation_time({"datetime": "2026-11-24T12:00:00.123456789"})["observed"].tzinfo == UTC


def test_no_time_is_a_null_datetime():
    assert rules.observation_time({}) == {"observed": None}


def test_a_period_is_read_in_utc():
    period = rules.observation_time(
        {"start-datetime": "2026-11-24T11:00:00Z", "end-datetime": "2026-11-24T13:00:00+01:00"}
    )
    assert period == {
        "period": (datetime.datetime(2026, 11, 24, 11, tzinfo=UTC), datetime.datetime(2026, 11, 24, 12, tzinfo=UTC))
    }


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2026-11-24",
        "20261124T120000Z",
        "2026-11-24T12:00:00 Z",
        "2026-13-01T00:00:00Z",
        "2026-11-24T12:00:00+2400",
        "٢٠٢٦-11-24T12:00:00Z",
    ],
)
def test_a_time_that_is_not_rfc3339_is_refused(value):
    assert "expected an RFC 3339 time" in refused(rules.observation_time, {"datetime": value})


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00"])
def test_a_time_that_overflows_in_utc_is_refused(value):
    assert "within years 1 to 9999 in UTC" in refused(rules.observation_time, {"datetime": value})


def test_half_a_period_is_refused():
    assert "go together" in refused(rules.observation_time, {"start-datetime": "2026-11-24T11:00:00Z"})


def test_a_period_ending_before_it_starts_is_refused():
    assert "is after end-datetime" in refused(
        rules.observation_time, {"start-datetime": "2026-11-24T13:00:00Z", "end-datetime": "2026-11-24T12:00:00Z"}
    )


# -- place -----------------------------------------------------------------------------------


def test_a_geometry_is_a_point():
    assert rules.point("-62.5,-64.8,10") == {"type": "Point", "coordinates": [-62.5, -64.8, 10.0]}
    assert rules.point(" 10 , 20 ") == {"type": "Point", "coordinates": [10.0, 20.0]}


@pytest.mark.parametrize("value", ["10,20,nan", "1e999,0", "10,inf", "NaN,0", "10,-Infinity", "0,0,1e400"])
def test_a_geometry_that_is_not_finite_is_refused(value):
    assert "finite decimal numbers" in refused(rules.point, value)


@pytest.mark.parametrize("value", ["181,0", "0,-90.5", "10", "1,2,3,4", "1_0,2", "0x10,2", "a,b", ""])
def test_a_geometry_out_of_range_or_shape_is_refused(value):
    assert "expected 'longitude,latitude[,height]'" in refused(rules.point, value)


# -- the other attributes --------------------------------------------------------------------


def test_cache_false_and_the_default():
    assert rules.cache_flag({"cache": "FALSE"}) is False
    assert rules.cache_flag({"cache": "true"}) is None
    assert rules.cache_flag({}) is None


def test_a_cache_value_other_than_true_or_false_is_refused():
    assert "expected true or false" in refused(rules.cache_flag, {"cache": "no"})


def test_a_metadata_id_is_printable_ascii():
    assert (
        rules.metadata_id({"metadata-id": "urn:wmo:md:aq-examplemet-test:synop"})
        == "urn:wmo:md:aq-examplemet-test:synop"
    )
    assert rules.metadata_id({}) is None


@pytest.mark.parametrize("value", ["urn:wmo:md:a b", "", "urn:wmo:md:é"])
def test_a_metadata_id_with_spaces_or_non_ascii_is_refused(value):
    assert "expected a WCMP2 identifier" in refused(rules.metadata_id, {"metadata-id": value})


def test_a_records_id_is_read_from_its_json():
    assert rules.record_id(b'{"id": "urn:wmo:md:aq-examplemet-test:synop"}') == "urn:wmo:md:aq-examplemet-test:synop"


@pytest.mark.parametrize("content", [b"not json", b"[]", b'{"no": "id"}'])
def test_a_record_without_an_id_is_refused(content):
    assert "not a WCMP2 record" in refused(rules.record_id, content)


@pytest.mark.parametrize("content", [b'{"id": 7}', b'{"id": {"a": 1}}', b'{"id": "a b"}'])
def test_a_record_id_that_is_not_an_identifier_is_refused(content):
    assert "expected a WCMP2 identifier" in refused(rules.record_id, content)


# -- the wire --------------------------------------------------------------------------------


def test_messages_go_out_as_strict_json():
    assert json.loads(rules.to_json({"coordinates": [1.5, 2]})) == {"coordinates": [1.5, 2]}


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_a_message_with_nan_or_infinity_is_refused(number):
    assert "not strict JSON" in refused(rules.to_json, {"coordinates": [number, 0]})
