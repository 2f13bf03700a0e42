"""What the HTTPS server says about a file matches what its notification says (issue 13, item 5).

Real nginx with the rendered configuration (the local node): each file is served with the media
type its link announces (wis2node/node/media_types.py), and browsers may read data and metadata from
any origin (CORS), while the server stays read-only.
"""

from __future__ import annotations

import http.client
import socket
import ssl

import pytest

from wis2node.local import LocalNode
from wis2node.node.media_types import DEFAULT_MEDIA_TYPE, MEDIA_TYPES, METADATA_TYPE, media_type
from wis2node.stackfile import find_stack

# Starts the node's daemons: not in the quick loop, `pytest -m "not slow"` (docs/DEVELOPING.md).
pytestmark = pytest.mark.slow

SETTINGS = find_stack("aq-examplemet-test").settings()
FOLDER = "data/core/weather/surface-based-observations/synop"
ORIGIN = "https://tools.example.int"


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with LocalNode(SETTINGS, tmp_path_factory.mktemp("served")) as running:
        yield running


def request(
    node: LocalNode, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One HTTPS request to the node's nginx, as a browser on another site would send it."""
    context = ssl.create_default_context(cafile=str(node.ca_file))
    connection = http.client.HTTPSConnection(SETTINGS.fqdn, node.ports.https, context=context, timeout=10)
    connection.sock = context.wrap_socket(
        socket.create_connection(("127.0.0.1", node.ports.https), timeout=10), server_hostname=SETTINGS.fqdn
    )
    try:
        connection.request(method, path, body=body, headers={"Host": SETTINGS.fqdn, **(headers or {})})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def publish(node: LocalNode, key: str, content: bytes = b"\x00payload\x00") -> str:
    """A file where the agent would put it; returns its path on the server."""
    target = node.public_dir / key
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
    return f"/{key}"


# Every extension of the table, upper case too (the agent and nginx both lower it), names the
# table does not know (octet-stream), and a WCMP2 record under metadata/ whatever its name.
KEYS = [f"{FOLDER}/sample{suffix}" for suffix in MEDIA_TYPES] + [
    f"{FOLDER}/A_SMAQ01EXMP241200.BUFR4",
    f"{FOLDER}/model.GRIB2",
    f"{FOLDER}/archive.tar.gz",
    f"{FOLDER}/page.html",
    f"{FOLDER}/script.js",
    f"{FOLDER}/image.svg",
    f"{FOLDER}/noextension",
    f"{FOLDER}/trailing.",
    "metadata/urn-wmo-md-aq-examplemet-test-synop.json",
    "metadata/record.geojson",
    "metadata/record",
]


@pytest.mark.parametrize("key", KEYS)
def test_each_file_is_served_with_the_type_its_link_announces(node, key):
    status, headers, body = request(node, "GET", publish(node, key))
    assert status == 200 and body == b"\x00payload\x00"
    assert headers["Content-Type"] == media_type(key), key


def test_the_table_covers_what_the_issue_names():
    """WMO's formats and the WCMP2 records are announced with their registered types."""
    for name, expected in {
        "a.bufr4": "application/bufr",
        "a.bufr": "application/bufr",
        "a.grib2": "application/grib",
        "a.grib": "application/grib",
        "a.nc": "application/netcdf",
        "a.html": DEFAULT_MEDIA_TYPE,
    }.items():
        assert media_type(f"{FOLDER}/{name}") == expected
    assert media_type("metadata/x.json") == METADATA_TYPE == "application/geo+json"


@pytest.mark.parametrize("path", [f"/{FOLDER}/obs.bufr4", "/metadata/record.json"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_data_and_metadata_answer_cross_origin_reads(node, path, method):
    publish(node, path.lstrip("/"))
    status, headers, _ = request(node, method, path, {"Origin": ORIGIN})
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "*"
    # No credentials are ever allowed, and the node's own security headers stay.
    assert "Access-Control-Allow-Credentials" not in headers
    assert headers["Strict-Transport-Security"] and headers["X-Content-Type-Options"] == "nosniff"
    # A missing file says so to the page too (it can tell "not yet" from "blocked").
    status, headers, _ = request(node, method, path + ".missing", {"Origin": ORIGIN})
    assert status == 404 and headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("path", [f"/{FOLDER}/obs.bufr4", "/metadata/record.json"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_the_preflight_of_a_read_is_answered(node, path, method):
    publish(node, path.lstrip("/"))
    status, headers, body = request(
        node,
        "OPTIONS",
        path,
        {
            "Origin": ORIGIN,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "range,if-none-match",
        },
    )
    assert (status, body) == (204, b"")
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Access-Control-Allow-Methods"] == "GET, HEAD"
    assert headers["Access-Control-Allow-Headers"] == "range,if-none-match"
    assert headers["Strict-Transport-Security"]


@pytest.mark.parametrize(
    "method, headers",
    [
        ("PUT", {}),
        ("POST", {}),
        ("DELETE", {}),
        ("PATCH", {}),
        ("PROPFIND", {}),
        ("TRACE", {}),
        ("OPTIONS", {}),  # not a preflight
        ("OPTIONS", {"Access-Control-Request-Method": "PUT"}),
        ("OPTIONS", {"Access-Control-Request-Method": "DELETE"}),
        ("OPTIONS", {"Access-Control-Request-Method": "GET, DELETE"}),
        ("OPTIONS", {"Access-Control-Request-Method": "get"}),
    ],
)
def test_anything_but_reading_is_still_refused(node, method, headers):
    path = publish(node, f"{FOLDER}/kept.bufr4", b"original")
    status, answer, _ = request(node, method, path, {"Origin": ORIGIN, **headers}, body=b"overwritten")
    assert status == 405, (method, headers)
    assert "Access-Control-Allow-Methods" not in answer
    assert (node.public_dir / path.lstrip("/")).read_bytes() == b"original"
