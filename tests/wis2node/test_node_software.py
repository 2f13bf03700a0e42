"""The node's own tools run with only requirements-node.txt installed (what the VM's venv has)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from wis2node.stackfile import ROOT

# Installed here for the Pulumi program, the tests or the demo, but not on the node.
NOT_ON_THE_NODE = (
    "pydantic",
    "jinja2",
    "yaml",
    "pulumi",
    "pulumi_aws",
    "pulumi_tls",
    "pulumi_policy",
    "moto",
    "pywcmp",
)


def run_without_project_only_packages(code: str) -> subprocess.CompletedProcess:
    blocker = textwrap.dedent(f"""
        import sys
        class NotOnTheNode:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {NOT_ON_THE_NODE!r}:
                    raise ImportError(f"{{name}} is not installed on the node (requirements-node.txt)")
        sys.meta_path.insert(0, NotOnTheNode())
    """)
    return subprocess.run(
        [sys.executable, "-c", blocker + textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_requirements_node_names_what_the_tools_import():
    names = {
        line.split("==")[0].split(";")[0].strip().lower()
        for line in (ROOT / "requirements-node.txt").read_text().splitlines()
        if line and line[0] != "#"
    }
    assert names == {"boto3", "paho-mqtt", "cryptography", "pywis-pubsub", "pywis-topics"}


# The modules behind the tools the node's units run (python -m wis2node <tool>).
NODE_MODULES = (
    "agent",
    "certificate",
    "credential",
    "reporter",
    "retention",
    "cloudwatch_agent",
    "watcher",
    "republish",
    "gdc",
    "runtime",
    "journal",
    "__main__",
)


def _unit_tools() -> list[str]:
    from wis2node.payload import DeployFacts, render_files
    from wis2node.stackfile import find_stack

    files = render_files(find_stack("aq-examplemet-test").settings(), DeployFacts(data_volume_id="vol-0"))
    return sorted(
        {
            word.split()[0]
            for f in files
            if f.path.endswith(".service")
            for word in f.content.decode().split("-m wis2node ")[1:]
        }
    )


def test_every_node_tool_imports_with_the_node_requirements_only():
    tools = _unit_tools()
    assert "watcher" in tools and "cloudwatch-agent" in tools
    run = run_without_project_only_packages(f"""
        import importlib
        for module in {NODE_MODULES!r}:
            importlib.import_module(f"wis2node.{{module}}")
        from wis2node.__main__ import main
        for tool in {tools!r}:
            try:
                main([tool, "--help"])
            except SystemExit as done:
                assert done.code == 0, tool
    """)
    assert run.returncode == 0, run.stderr


def test_retention_runs_for_real_with_the_node_requirements_only(tmp_path):
    (tmp_path / "public" / "data").mkdir(parents=True)
    config = tmp_path / "node.json"
    config.write_text(
        json.dumps(
            {
                "publishing": {
                    "public_dir": str(tmp_path / "public"),
                    "retention_days": 7,
                    "state_db": str(tmp_path / "state.sqlite"),
                }
            }
        )
    )
    (tmp_path / "state.sqlite").touch()
    run = run_without_project_only_packages(f"""
        from wis2node.__main__ import main
        raise SystemExit(main(["retention", {str(config)!r}]))
    """)
    assert run.returncode == 0, run.stderr


def test_the_blocker_really_blocks():
    run = run_without_project_only_packages("import wis2node.settings")
    assert run.returncode != 0 and "pydantic is not installed on the node" in run.stderr
