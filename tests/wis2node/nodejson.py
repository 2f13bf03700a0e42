"""A node.json as the renderer writes it for an example stack, with chosen keys changed (tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wis2node.node.nodeconfig import CONFIG_PATH
from wis2node.payload import DeployFacts, render_files
from wis2node.stackfile import find_stack


def rendered_node_json(stack: str = "aq-examplemet-test") -> dict[str, Any]:
    files = render_files(find_stack(stack).settings(), DeployFacts(data_volume_id="vol-0"))
    return json.loads(next(f.content for f in files if f.path == CONFIG_PATH))


def write_node_json(path: Path, **sections: dict[str, Any]) -> Path:
    """The rendered node.json at path, each section given updated with its keys."""
    document = rendered_node_json()
    for name, keys in sections.items():
        document[name].update(keys)
    path.write_text(json.dumps(document))
    return path
