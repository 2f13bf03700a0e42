"""Errors the node's tools share; no third-party imports, so they load with requirements-node.txt."""


class SettingsError(ValueError):
    """A stack configuration that cannot be deployed; the message names each key and the fix."""
