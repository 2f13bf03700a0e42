"""pulumi up -s <stack>: one validated settings object -> one Wis2Node -> the stack's outputs."""

import pulumi

from components.node import Wis2Node, Wis2NodeArgs
from components.settings import load_metadata, load_settings, look_up_platform

settings = load_settings()
node = Wis2Node(
    "wis2-node", Wis2NodeArgs(settings=settings, platform=look_up_platform(settings), metadata=load_metadata(settings))
)
for name, value in node.exports.items():
    pulumi.export(name, value)
