"""Discovery metadata kept beside each stack (stacks/<stack>/metadata/*.json), checked with pywcmp.

A dataset changes through a pull request like any code: the records are validated at preview
(an invalid record refuses the stack, naming the file and the rule), uploaded under metadata/
by Pulumi, and announced by the node's agent before any data of the dataset.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from wis2node.node.datasets import GTS_MAPPING, DatasetError, conflicts, gts_key, parse_gts_mapping
from wis2node.node.rules import topic_root
from wis2node.settings import NodeSettings, SettingsError
from wis2node.stackfile import STACKS


@dataclass(frozen=True)
class MetadataRecord:
    """One WCMP2 record: where it comes from, its identifier and its exact bytes."""

    path: Path
    id: str
    content: bytes
    gts_mapping: bytes | None = None  # the dataset's GTS headers (wis2node.node.datasets), checked

    @property
    def gts_key(self) -> str:
        """Where its GTS mapping goes in the ingest bucket (the agent reads it there)."""
        return gts_key(self.key)

    @property
    def key(self) -> str:
        """Its object key in the ingest bucket (and path under https://<fqdn>/)."""
        return f"metadata/{self.path.name}"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def metadata_dir(stack: str, stacks: Path = STACKS) -> Path:
    return stacks / stack / "metadata"


def load_records(
    settings: NodeSettings, directory: Path | None = None, warnings: list[str] | None = None
) -> list[MetadataRecord]:
    """Every record of the stack, validated; SettingsError names the file and the failed rule.

    A centre-id that WMO has not registered yet (a new centre sets up its node before it is
    registered) makes pywcmp fail its identifier and links rules; those failures become warnings.
    """
    directory = directory or metadata_dir(settings.stack)
    missing = bundles_missing()
    if missing:
        raise SettingsError(
            f"the WMO validators' bundles are missing ({', '.join(missing)}): run "
            "`venv/bin/pywcmp bundle sync` once (it needs internet), then check again"
        )
    registered = centre_registered(settings.centre_id)
    records, documents, problems = [], {}, []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        name = f"stacks/{directory.parent.name}/metadata/{path.name}"
        try:  # every record's problems at once, not one record per run
            record = _load_record(path, name, settings.centre_id, registered, warnings)
            records.append(
                MetadataRecord(
                    path=path, id=record["id"], content=path.read_bytes(), gts_mapping=_gts_mapping(path, name)
                )
            )
        except SettingsError as err:
            problems.append(str(err))
            continue
        documents[name] = record
    if problems:
        raise SettingsError("\n".join(problems))
    problems = conflicts(documents)
    if problems:
        raise SettingsError("\n".join(problems))
    ids = [r.id for r in records]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise SettingsError(f"{directory}: the same record id in more than one file: {', '.join(duplicates)}")
    return records


def _load_record(path: Path, name: str, centre_id: str, registered: bool, warnings: list[str] | None) -> dict:
    """One record, parsed and validated; SettingsError names the file and what is wrong."""
    try:
        record = json.loads(path.read_bytes())
    except json.JSONDecodeError as err:
        raise SettingsError(f"{name}: not JSON ({err})") from None
    if not isinstance(record, dict):
        raise SettingsError(f"{name}: expected a WCMP2 record (a JSON object)")
    _check_centre_id(name, record, centre_id)
    failures = validate_record(record)
    if not registered:
        pending = [f for f in failures if "centre_id" in f or "centre-id" in f]
        failures = [f for f in failures if f not in pending]
        if warnings is not None:
            warnings.extend(f"{name}: {f} (expected until WMO registers {centre_id})" for f in pending)
    if failures:
        raise SettingsError(f"{name}: invalid WCMP2 record:\n  " + "\n  ".join(failures))
    return record


def _gts_mapping(path: Path, name: str) -> bytes | None:
    """The dataset's GTS mapping (its folder beside the record, named as the record without .json), checked."""
    mapping = path.with_suffix("") / GTS_MAPPING
    if not mapping.is_file():
        return None
    content = mapping.read_bytes()
    try:
        parse_gts_mapping(content, f"{name.rsplit('.', 1)[0]}/{GTS_MAPPING}")
    except DatasetError as err:
        raise SettingsError(str(err)) from None
    return content


def _check_centre_id(name: str, record: dict, centre_id: str) -> None:
    """The record's id and its links' channels name the stack's centre (before pywcmp, whose own
    message for a mismatch swaps its labels)."""
    prefix = f"urn:wmo:md:{centre_id}:"
    if not str(record.get("id", "")).startswith(prefix):
        raise SettingsError(f"{name}: id {record.get('id')!r} must start with {prefix} (the stack's centre-id)")
    for link in record.get("links") or []:
        channel = str(link.get("channel", "")) if isinstance(link, dict) else ""
        parts = channel.split("/")
        if channel and (len(parts) < 4 or parts[3] != centre_id):
            raise SettingsError(
                f"{name}: link {link.get('href')!r} has channel {channel!r}, expected a topic "
                f"of this centre: {topic_root(centre_id)}/..."
            )


def bundles_missing() -> list[str]:
    """The WMO validators' bundles pywcmp needs and cannot find (it reads them from ~/.pywcmp)."""
    from pywcmp.bundle import WCMP2_FILES, WIS2_TOPIC_HIERARCHY_DIR

    needed = [WCMP2_FILES / "wcmp2-bundled.json", WCMP2_FILES / "codelists", WIS2_TOPIC_HIERARCHY_DIR]
    return [str(path) for path in needed if not path.exists()]


def centre_registered(centre_id: str) -> bool:
    """Whether the centre-id is in WMO's list (the copy pywcmp keeps); test centre-ids count as such."""
    from pywcmp.bundle import WIS2_TOPIC_HIERARCHY_DIR

    listed = WIS2_TOPIC_HIERARCHY_DIR / "centre-id.csv"
    if centre_id.endswith("-test") or not listed.exists():
        return True
    return any(line.split(",", 1)[0] == centre_id for line in listed.read_text(encoding="utf-8").splitlines())


def validate_record(record: dict) -> list[str]:
    """pywcmp's executable test suite; returns 'rule: message' for every failed requirement."""
    from pywcmp.wcmp2.ets import WMOCoreMetadataProfileTestSuite2

    try:
        report = WMOCoreMetadataProfileTestSuite2(record).run_tests(fail_on_schema_validation=True)
    except ValueError as err:  # the suite stops at the schema and says where
        return [f"schema (http://wis.wmo.int/spec/wcmp/2/conf/core/conformance): {err}"]
    except Exception as err:  # a record so broken the suite cannot run (e.g. no id)
        return [f"record could not be tested: {err!r}"]
    return [f"{test['id']}: {test.get('message', 'failed')}" for test in report["tests"] if test["code"] == "FAILED"]
