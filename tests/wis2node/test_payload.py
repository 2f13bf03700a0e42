"""The rendered payload: deterministic, valid for cloud-init, under EC2's size limit."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from tests.pulumi_harness import ACCOUNT, Deployment, mock_certificate, run_program, user_data_files
from wis2node.payload import USER_DATA_LIMIT, DeployFacts, node_package, pack_user_data, render_files, render_user_data
from wis2node.stackfile import find_stack

INSTANCE = "aws:ec2/instance:Instance"


def cloud_init_schema(tmp_path, document: str) -> subprocess.CompletedProcess:
    path = tmp_path / "user-data"
    path.write_text(document)
    return subprocess.run(["cloud-init", "schema", "-c", str(path)], capture_output=True, text=True)


def test_user_data_passes_cloud_init_schema_and_fits(deployment: Deployment, tmp_path):
    user_data = deployment.one(INSTANCE).user_data
    checked = cloud_init_schema(tmp_path, user_data)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert packed_size(deployment.one(INSTANCE)) < USER_DATA_LIMIT


@pytest.mark.parametrize("mode", ["self-signed", "provided"])
def test_user_data_with_a_certificate_passes_and_fits(mode, tmp_path):
    stack = find_stack("aq-examplemet-test")
    fqdn = stack.config["wis2-node:fqdn"]
    extra = {"wis2-node:tlsMode": mode}
    if mode == "provided":
        ca_key = ec.generate_private_key(ec.SECP256R1())
        extra.update(
            {
                "wis2-node:certificateAuthority": "digicert.com",
                "wis2-node:certificate": mock_certificate(fqdn, issuer_key=ca_key)
                + mock_certificate("Example CA", key=ca_key),
            }
        )
    instance = run_program(stack.stack, {**stack.config, **extra}).one(INSTANCE)
    user_data = instance.user_data
    assert json.loads(user_data_files(user_data)["/etc/wis2/node.json"])["tls"]["certificate_parameter"]
    checked = cloud_init_schema(tmp_path, user_data)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert packed_size(instance) < USER_DATA_LIMIT


def packed_size(instance) -> int:
    """What EC2 counts against its limit: the user data before base64 (here, the gzipped document)."""
    return len(base64.b64decode(instance.inputs["userDataBase64"]))


def test_user_data_over_the_limit_is_refused_before_anything_is_declared():
    noise = base64.b64encode(os.urandom(USER_DATA_LIMIT)).decode()  # incompressible
    with pytest.raises(ValueError, match="over EC2's limit"):
        pack_user_data("#cloud-config\n# " + noise + "\n")


def test_the_schema_check_catches_a_broken_document(tmp_path):
    checked = cloud_init_schema(tmp_path, "#cloud-config\npackages: 5\nruncmd: {a: 1}\n")
    assert checked.returncode != 0


def test_rendering_is_deterministic(stack_file):
    settings = stack_file.settings()
    facts = DeployFacts(data_volume_id="vol-0123456789abcdef0")
    assert render_user_data(settings, facts) == render_user_data(settings, facts)
    other = render_user_data(settings, DeployFacts(data_volume_id="vol-0fedcba9876543210"))
    assert other != render_user_data(settings, facts)


def test_user_data_carries_every_rendered_file(deployment: Deployment, stack_file):
    files = user_data_files(deployment.one(INSTANCE).user_data)
    settings = stack_file.settings()
    rendered = render_files(
        settings,
        DeployFacts(
            data_volume_id="vol-0123456789abcdef0",
            bucket=settings.ingest_bucket(ACCOUNT),
            package_sha256=node_package().sha256,
        ),
    )
    assert files == {f.path: f.content for f in rendered}


def test_broker_config_follows_the_wis2_guide(stack_file):
    files = {f.path: f.content.decode() for f in render_files(stack_file.settings(), DeployFacts("vol-1"))}
    broker = files["/etc/mosquitto/mosquitto.conf"].splitlines()
    for line in (
        "allow_anonymous false",
        "persistence true",
        "max_queued_messages 2000",
        "persistence_location /srv/wis2/mosquitto/",
        "tls_version tlsv1.2",
        "listener 8883",
    ):
        assert line in broker, line
    acl = files["/etc/mosquitto/acl"]
    centre = stack_file.config["wis2-node:centreId"]
    assert f"topic read origin/a/wis2/{centre}/#" in acl and "topic write" not in acl


def test_node_scripts_parse_in_their_language(stack_file, tmp_path):
    checkers = {b"#!/bin/bash": ["bash", "-n"], b"#!/usr/bin/python3": [sys.executable, "-m", "py_compile"]}
    scripts = [f for f in render_files(stack_file.settings(), DeployFacts("vol-1")) if "/sbin/" in f.path]
    assert len(scripts) >= 3
    for file in scripts:
        script = tmp_path / file.path.rsplit("/", 1)[1]
        script.write_bytes(file.content)
        checked = subprocess.run(
            [*checkers[file.content.split(b"\n", 1)[0]], str(script)], capture_output=True, text=True
        )
        assert checked.returncode == 0, (file.path, checked.stderr)
        assert file.mode == "0755"


def test_node_json_is_json_with_the_stack_facts(stack_file):
    files = {f.path: f.content for f in render_files(stack_file.settings(), DeployFacts("vol-1"))}
    node = json.loads(files["/etc/wis2/node.json"])
    assert node["fqdn"] == stack_file.config["wis2-node:fqdn"]
    assert node["broker"]["password_parameter"] == f"/wis2-node/{stack_file.stack}/publisher-password"


@pytest.mark.parametrize("mode", ["letsencrypt", "self-signed", "provided"])
def test_certbot_renews_only_on_a_letsencrypt_node(mode):
    """A node that used Let's Encrypt keeps certbot's renewal settings on its data volume: after a
    change of tlsMode (a new VM on the same volume), certbot's timer must not retry them daily."""
    stack = find_stack("aq-examplemet-test")
    extra: dict[str, str] = {"wis2-node:tlsMode": mode}
    if mode == "provided":
        ca_key = ec.generate_private_key(ec.SECP256R1())
        fqdn = stack.config["wis2-node:fqdn"]
        extra["wis2-node:certificateAuthority"] = "digicert.com"
        extra["wis2-node:certificate"] = mock_certificate(fqdn, issuer_key=ca_key) + mock_certificate(
            "Example CA", key=ca_key
        )
    user_data = run_program(stack.stack, {**stack.config, **extra}).one(INSTANCE).user_data
    runcmd = yaml.safe_load(user_data)["runcmd"]
    disabled = [command for command in runcmd if "certbot.timer" in command]
    if mode == "letsencrypt":
        assert not disabled, runcmd
    else:
        assert disabled == ["systemctl disable --now --no-block certbot.timer"], runcmd
