"""The software that runs on the node (the VM): its tools, their modules and the data they read.

This package is the node package (wis2node.payload.node_package) and needs only
requirements-node.txt: it imports nothing from the rest of wis2node (settings, payload, check,
verify, local, ...), which is the operator's side. tests/wis2node/test_node_software.py holds the line.
"""
