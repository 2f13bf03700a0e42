"""Shellcheck every shell script the node runs, as the renderer writes it for each example stack.

The templates are Jinja: only the rendered files are shell, so this renders each example stack's
files into a temporary folder (their paths on the VM) and runs shellcheck on those that start with
a shell's #! line. `make lint` runs it; exit status is shellcheck's (0: every script clean).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from wis2node.payload import DeployFacts, render_files
from wis2node.stackfile import stack_files

SHELLS = (b"#!/bin/bash", b"#!/bin/sh", b"#!/usr/bin/env bash", b"#!/usr/bin/env sh")
FACTS = DeployFacts(data_volume_id="vol-0123456789abcdef0", bucket="example-ingest", package_sha256="0" * 64)


def main() -> int:
    stacks = [f for f in stack_files() if f.is_example]
    with tempfile.TemporaryDirectory(prefix="wis2-shellcheck-") as tmp:
        scripts: list[Path] = []
        for stack in stacks:
            for node_file in render_files(stack.settings(), FACTS):
                if node_file.content.split(b"\n", 1)[0].strip() not in SHELLS:
                    continue
                path = Path(tmp, stack.stack, node_file.path.lstrip("/"))
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(node_file.content)
                scripts.append(path)
        if not scripts:
            print("shellcheck: no shell script rendered; expected wis2-setup and others", file=sys.stderr)
            return 1
        # Paths shown relative to the folder: <stack>/<path on the VM>.
        run = subprocess.run(["shellcheck", "--external-sources", *(str(p.relative_to(tmp)) for p in scripts)], cwd=tmp)
        names = sorted({p.name for p in scripts})
        print(f"shellcheck: {len(names)} scripts ({', '.join(names)}) x {len(stacks)} example stacks", end="")
        print(": clean" if run.returncode == 0 else ": FAILED")
        return run.returncode


if __name__ == "__main__":
    sys.exit(main())
