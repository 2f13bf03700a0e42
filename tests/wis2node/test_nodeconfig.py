"""node.json is the contract between the renderer and the node's tools: one typed definition."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.wis2node.nodejson import rendered_node_json
from wis2node.node.nodeconfig import ConfigError, NodeConfig, load, parse
from wis2node.stackfile import stack_files


def _rendered(stack_file) -> dict:
    return rendered_node_json(stack_file.stack)


EXAMPLES = [f for f in stack_files() if f.is_example]


@pytest.mark.parametrize("stack_file", EXAMPLES, ids=lambda f: f.stack)
def test_each_example_stacks_node_json_loads_into_the_typed_definition(stack_file):
    document = _rendered(stack_file)
    config = parse(document)
    assert config.stack == stack_file.stack
    # every key rendered is a field, every required field was rendered, and values come through
    for section in dataclasses.fields(NodeConfig):
        value = getattr(config, section.name)
        if dataclasses.is_dataclass(value):
            for key, rendered in document[section.name].items():
                assert getattr(value, key) == rendered, f"{section.name}.{key}"
        else:
            assert value == document[section.name]


def test_there_are_example_stacks():
    assert len(EXAMPLES) >= 2


def test_a_missing_key_is_named():
    document = _rendered(EXAMPLES[0])
    del document["publishing"]["queue"]
    with pytest.raises(ConfigError, match=r"node.json: publishing.queue: missing"):
        parse(document)


def test_an_unknown_key_is_named():
    document = _rendered(EXAMPLES[0])
    document["broker"]["local_prot"] = 1883
    with pytest.raises(ConfigError, match=r"broker.local_prot: unknown key"):
        parse(document)


def test_a_value_of_the_wrong_type_is_named():
    document = _rendered(EXAMPLES[0])
    document["broker"]["local_port"] = "1883"
    with pytest.raises(ConfigError, match=r"broker.local_port: '1883' is not a int"):
        parse(document)
    document = _rendered(EXAMPLES[0])
    document["monitoring"] = []
    with pytest.raises(ConfigError, match=r"monitoring: expected a JSON object"):
        parse(document)


def test_the_tools_loader_refuses_a_broken_file_naming_file_and_key(tmp_path):
    document = _rendered(EXAMPLES[0])
    document["runtime"]["fil"] = document["runtime"].pop("file")
    path = tmp_path / "node.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match=rf"{path}: runtime.fil: unknown key"):
        load(str(path), needs=())


def test_the_runtime_keys_complete_the_typed_definition(tmp_path):
    document = _rendered(EXAMPLES[0])
    runtime = tmp_path / "runtime.json"
    runtime.write_text(json.dumps({"publishing": {"retention_days": 7}}))
    document["runtime"]["file"] = str(runtime)
    path = tmp_path / "node.json"
    path.write_text(json.dumps(document))
    assert load(str(path), needs=(("publishing", "retention_days"),))["publishing"]["retention_days"] == 7
    runtime.write_text(json.dumps({"publishing": {"retention_days": "7"}}))
    with pytest.raises(ConfigError, match=r"publishing.retention_days: '7' is not a int"):
        load(str(path), needs=(("publishing", "retention_days"),))


def test_every_node_tool_reads_the_typed_definition():
    """No node module but nodeconfig itself takes the untyped document (nodeconfig.load): each tool
    loads the NodeConfig once (load_config) and passes it on, so mypy checks every key it reads."""
    import ast
    from pathlib import Path

    import wis2node.node

    folder = Path(wis2node.node.__file__).parent
    untyped = []
    for path in sorted(folder.glob("*.py")):
        if path.name == "nodeconfig.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module == "wis2node.node.nodeconfig":
                untyped += [f"{path.name}: imports {a.name}" for a in node.names if a.name == "load"]
    assert untyped == []
    assert any("load_config" in path.read_text() for path in folder.glob("*.py") if path.name != "nodeconfig.py"), (
        "the tools load the typed definition"
    )
