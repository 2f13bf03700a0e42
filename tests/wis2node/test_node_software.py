"""The node's own tools run with only requirements-node.txt installed (what the VM's venv has)."""

from __future__ import annotations

import ast
import io
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

from tests.wis2node.nodejson import write_node_json
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


def run_without_project_only_packages(
    code: str, cwd=ROOT, pythonpath: str | None = None
) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter where neither the operator's packages nor any module of
    wis2node outside wis2node.node (the node's boundary) can be imported."""
    blocker = textwrap.dedent(f"""
        import sys
        class NotOnTheNode:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {NOT_ON_THE_NODE!r}:
                    raise ImportError(f"{{name}} is not installed on the node (requirements-node.txt)")
                parts = name.split(".")
                if parts[0] == "wis2node" and len(parts) > 1 and parts[1] != "node":
                    raise ImportError(f"{{name}} is outside the node package (wis2node.node)")
        sys.meta_path.insert(0, NotOnTheNode())
    """)
    env = None
    if pythonpath is not None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": pythonpath}
    return subprocess.run(
        [sys.executable, "-c", blocker + textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_requirements_node_names_what_the_tools_import():
    names = {
        line.split("==")[0].split(";")[0].strip().lower()
        for line in (ROOT / "requirements-node.txt").read_text().splitlines()
        if line and line[0] != "#"
    }
    assert names == {"boto3", "paho-mqtt", "cryptography", "pywis-pubsub", "pywis-topics"}


NODE_DIR = ROOT / "wis2node" / "node"
# Every module of the node package: what the node's units run (python -m wis2node.node <tool>) and
# what those import.
NODE_MODULES = sorted(
    "wis2node.node" + ("" if path.stem == "__init__" else "." + path.stem) for path in NODE_DIR.glob("*.py")
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
            for word in f.content.decode().split("-m wis2node.node ")[1:]
        }
    )


def test_every_node_tool_imports_with_the_node_requirements_only():
    tools = _unit_tools()
    assert "watcher" in tools and "cloudwatch-agent" in tools
    run = run_without_project_only_packages(f"""
        import importlib
        for module in {NODE_MODULES!r}:
            importlib.import_module(module)
        from wis2node.node.__main__ import main
        for tool in {tools!r}:
            try:
                main([tool, "--help"])
            except SystemExit as done:
                assert done.code == 0, tool
    """)
    assert run.returncode == 0, run.stderr


def test_the_units_run_the_node_package_and_nothing_else():
    from wis2node.payload import DeployFacts, render_files
    from wis2node.stackfile import find_stack

    files = render_files(find_stack("aq-examplemet-test").settings(), DeployFacts(data_volume_id="vol-0"))
    commands = [
        line
        for f in files
        if f.path.endswith(".service")
        for line in f.content.decode().splitlines()
        if " -m wis2node" in line
    ]
    assert commands and all(" -m wis2node.node " in line for line in commands), commands


def _imports_outside_the_node(path: Path) -> list[str]:
    """wis2node modules a file of the node package imports (at the top or inside a function)
    that are not in wis2node.node."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "wis2node" else [f"wis2node.{a.name}" for a in node.names]
        found += [
            name
            for name in names
            if name.split(".")[0] == "wis2node"
            and name.split(".")[:2] != ["wis2node", "node"]
            and name != "wis2node.__version__"
        ]
    return found


def test_no_module_of_the_node_imports_from_outside_it():
    crossings = {
        str(path.relative_to(ROOT)): names
        for path in sorted(NODE_DIR.rglob("*.py"))
        if (names := _imports_outside_the_node(path))
    }
    assert crossings == {}


def test_the_boundary_check_catches_a_crossing(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from wis2node.settings import NodeSettings\n    from wis2node import payload\n")
    assert _imports_outside_the_node(bad) == ["wis2node.settings", "wis2node.payload"]


def test_the_node_package_is_the_node_subpackage():
    from wis2node.payload import node_package

    with zipfile.ZipFile(io.BytesIO(node_package().archive)) as archive:
        names = set(archive.namelist())
    expected = {
        str(path.relative_to(ROOT))
        for path in NODE_DIR.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    assert names == expected | {"requirements-node.txt", "requirements-node.lock", "wis2node/__init__.py"}


def test_retention_runs_for_real_from_the_unpacked_node_package(tmp_path):
    """What the VM does: the node package unpacked in a folder of its own, on PYTHONPATH."""
    from wis2node.payload import node_package

    src = tmp_path / "src"
    with zipfile.ZipFile(io.BytesIO(node_package().archive)) as archive:
        archive.extractall(src)
    (tmp_path / "public" / "data").mkdir(parents=True)
    config = write_node_json(
        tmp_path / "node.json",
        publishing={
            "public_dir": str(tmp_path / "public"),
            "retention_days": 7,
            "state_db": str(tmp_path / "state.sqlite"),
        },
    )
    (tmp_path / "state.sqlite").touch()
    run = run_without_project_only_packages(
        f"""
        import wis2node.node
        assert wis2node.node.__file__.startswith({str(src)!r}), wis2node.node.__file__
        from wis2node.node.__main__ import main
        raise SystemExit(main(["retention", {str(config)!r}]))
        """,
        cwd=tmp_path,
        pythonpath=str(src),
    )
    assert run.returncode == 0, run.stderr


def test_the_blocker_really_blocks():
    run = run_without_project_only_packages("import pydantic")
    assert run.returncode != 0 and "pydantic is not installed on the node" in run.stderr
    run = run_without_project_only_packages("import wis2node.settings")
    assert run.returncode != 0 and "wis2node.settings is outside the node package" in run.stderr
