"""wis2-node: the software and tools of a WIS2 Node; never imports pulumi."""

__version__ = "0.2.0"
