"""Pulumi components of a WIS2 Node: cloud resources only, one concern per file."""
