"""The node's public endpoints and what WMO asks for when a node is registered."""

from __future__ import annotations

from wis2node.node.accounts import PUBLISHER_USER, READ_ONLY_PASSWORD, READ_ONLY_USER  # noqa: F401 (re-exported)
from wis2node.node.rules import topic_root
from wis2node.settings import HTTPS_PORT, MQTTS_PORT, NodeSettings


def endpoints(settings: NodeSettings) -> dict[str, str]:
    """The URLs subscribers and downloaders use."""
    return {
        "mqtts": f"mqtts://{READ_ONLY_USER}:{READ_ONLY_PASSWORD}@{settings.fqdn}:{MQTTS_PORT}",
        "wss": f"wss://{settings.fqdn}/mqtt",
        "https": f"https://{settings.fqdn}/",
    }


def wmo_registration(settings: NodeSettings) -> dict[str, object]:
    """What the WIS National Focal Point gives the WMO Secretariat to register the node."""
    urls = endpoints(settings)
    return {
        "centre_id": settings.centre_id,
        "centre_name": settings.centre_name or None,
        "contact_email": settings.contact_email or None,
        # what the stack must still say before the registration can be sent
        "missing": [
            key
            for key, value in (
                ("wis2-node:centreName", settings.centre_name),
                ("wis2-node:contactEmail", settings.contact_email),
            )
            if not value
        ],
        "test_node": not settings.is_production,
        "mqtt_broker_url": urls["mqtts"],
        "mqtt_websocket_url": urls["wss"],
        "mqtt_username": READ_ONLY_USER,
        "mqtt_password": READ_ONLY_PASSWORD,
        "subscription_topics": [f"{topic_root(settings.centre_id)}/#"],
        "http_endpoint": urls["https"],
        "ports": [MQTTS_PORT, HTTPS_PORT],
    }
