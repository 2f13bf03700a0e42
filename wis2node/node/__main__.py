"""python -m wis2node.node <tool> [node.json]: the tools the node's systemd units run.

The operator's `python -m wis2node` offers the same tools (it imports TOOLS from here); on the
node only this package is installed, with requirements-node.txt.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from wis2node.node.nodeconfig import CONFIG_PATH

# (command, module of wis2node.node with a main(config_path), what it does)
TOOLS: tuple[tuple[str, str, str], ...] = (
    ("agent", "agent", "run the node agent"),
    ("certificate", "certificate", "get and install the TLS certificate"),
    ("publisher-credential", "credential", "set the publisher account from SSM"),
    ("retention", "retention", "remove published files past retention"),
    ("reporter", "reporter", "report certificate days left and a heartbeat"),
    ("cloudwatch-agent", "cloudwatch_agent", "install Amazon's CloudWatch agent, signature checked, and configure it"),
    ("apply-config", "runtime", "apply a changed runtime configuration or password"),
    ("ship-logs", "journal", "ship the services' journal to CloudWatch Logs"),
    ("watcher", "watcher", "turn what WIS2 says about the node into alerts"),
    ("republish", "republish", "announce every discovery record again"),
    ("gdc-check", "gdc", "compare the GDCs' records of the centre with the node's"),
)


def run_tool(module: str, config: str) -> int:
    """Run one tool of the node on its configuration file."""
    return int(importlib.import_module(f"wis2node.node.{module}").main(config))


def add_tools(commands: argparse._SubParsersAction) -> None:
    """One subcommand per tool, each taking the node's configuration file."""
    for name, module, summary in TOOLS:
        tool = commands.add_parser(name, help=f"{summary} (on the node)")
        tool.add_argument(
            "config", nargs="?", default=CONFIG_PATH, help=f"the node's configuration (default {CONFIG_PATH})"
        )
        tool.set_defaults(func=lambda args, module=module: run_tool(module, args.config))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wis2node.node", description=__doc__)
    add_tools(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
