"""WMO's own validators, the second check after the node's rules: pywis-topics and pywis-pubsub's WNM suite."""

from __future__ import annotations

import logging
from typing import Callable

from wis2node.rules import Rejected, to_json

LOG = logging.getLogger("wis2node.agent")
MESSAGE_MAX = 8192  # WNM 1.0


def topic_validator(centre_id: str) -> Callable[[str], bool]:
    """pywis-topics' check; strict about the centre-id only once WMO has registered it."""
    from pywis_topics.topics import TopicHierarchy

    hierarchy = TopicHierarchy()
    strict = centre_id.endswith("-test") or centre_id in hierarchy.topics[3]
    if not strict:
        LOG.warning("%s is not in WMO's registered centre-ids yet: topics are checked without it", centre_id)
    return lambda topic: hierarchy.validate(topic, strict=strict, publication=True)


def validate_notification(message: dict) -> str:
    """The message as it goes on the wire, once it passes the WNM test suite and the size limit."""
    try:  # pywis-pubsub 0.13 (Python 3.12+, the VM's) moved the suite under wnm/
        from pywis_pubsub.wnm.ets import WNMTestSuite
    except ModuleNotFoundError:  # 0.12, the last release for Python 3.11
        from pywis_pubsub.ets import WNMTestSuite

    payload = to_json(message)
    try:
        report = WNMTestSuite(message).run_tests(fail_on_schema_validation=True)["ets-report"]
    except ValueError as err:
        raise Rejected(f"notification fails the WNM schema: {err}") from None
    failed = [test["id"] for test in report["tests"] if test["code"] == "FAILED"]
    if failed:
        raise Rejected(f"notification fails {', '.join(failed)}")
    if len(payload) > MESSAGE_MAX:
        raise Rejected(f"notification over {MESSAGE_MAX} bytes")
    return payload
