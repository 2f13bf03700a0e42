"""The media types the node announces and serves: one table for the links the agent writes and nginx's `types`.

A notification's link says what the file is; the server must say the same when the file is
downloaded. So the agent's link type and nginx's Content-Type both come from this table, by the
file name's extension (lowercased, as nginx does), never from what an uploader declared.
"""

from __future__ import annotations

from pathlib import PurePosixPath

# WMO's data formats and the common ones; anything else is announced and served as octet-stream.
MEDIA_TYPES = {
    ".bufr": "application/bufr",
    ".bufr4": "application/bufr",
    ".bin": "application/octet-stream",
    ".grib": "application/grib",
    ".grib2": "application/grib",
    ".grb2": "application/grib",
    ".nc": "application/netcdf",
    ".h5": "application/x-hdf5",
    ".hdf5": "application/x-hdf5",
    ".csv": "text/csv",
    ".txt": "text/plain",
    ".json": "application/json",
    ".geojson": "application/geo+json",
    ".xml": "application/xml",
    ".cap": "application/cap+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".pdf": "application/pdf",
    ".zip": "application/zip",
    ".gz": "application/gzip",
    ".bz2": "application/x-bzip2",
    ".zst": "application/zstd",
    ".tar": "application/x-tar",
}
DEFAULT_MEDIA_TYPE = "application/octet-stream"
# Everything under metadata/ is a WCMP2 record (GeoJSON), whatever its name.
METADATA_TYPE = "application/geo+json"


def media_type(key: str) -> str:
    """The type a key's link announces and its download is served with."""
    if key.startswith("metadata/"):
        return METADATA_TYPE
    return MEDIA_TYPES.get(PurePosixPath(key).suffix.lower(), DEFAULT_MEDIA_TYPE)


def nginx_types() -> dict[str, list[str]]:
    """The table as nginx's `types` block wants it: each type with its extensions (without the dot)."""
    types: dict[str, list[str]] = {}
    for suffix, media in MEDIA_TYPES.items():
        if media != DEFAULT_MEDIA_TYPE:  # the default_type already
            types.setdefault(media, []).append(suffix[1:])
    return types
