"""The everyday verbs against moto (server mode) and the real local node: rotate-publisher-password
with the node's apply-config, the runtime configuration applied in place, logs shipped from a
journal and read back, status, and the CLI's consistency (--stack, help, --version)."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys

import pytest

from tests.wis2node.mqtt_clients import Client
from wis2node.__main__ import main as cli_main
from wis2node.endpoints import PUBLISHER_USER
from wis2node.local import LocalNode
from wis2node.localcloud import client, moto_server, run_environment
from wis2node.node import journal, runtime
from wis2node.node.nodeconfig import load_config, parse
from wis2node.payload import RUNTIME_PARAMETER, DeployFacts, render_files, runtime_config
from wis2node.stackfile import ROOT, find_stack

# Starts the node's daemons: not in the quick loop, `pytest -m "not slow"` (docs/DEVELOPING.md).
pytestmark = pytest.mark.slow

SETTINGS = find_stack("aq-examplemet-test").settings()
PASSWORD = SETTINGS.parameter_name("publisher-password")
RUNTIME = SETTINGS.parameter_name(RUNTIME_PARAMETER)


def wis2node(environment: dict, *arguments: str) -> subprocess.CompletedProcess:
    run = subprocess.run(
        [sys.executable, "-m", "wis2node", *arguments],
        cwd=ROOT,
        env=run_environment(environment),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in run.stderr, run.stderr
    return run


@pytest.fixture(scope="module")
def aws():
    with moto_server(SETTINGS.region) as environment:
        yield environment


@pytest.fixture
def node(tmp_path, aws):
    with LocalNode(SETTINGS, tmp_path / "node") as running:
        ssm = client("ssm", aws)
        ssm.put_parameter(Name=PASSWORD, Type="SecureString", Value=running.publisher_password, Overwrite=True)
        ssm.put_parameter(Name=RUNTIME, Type="String", Value=json.dumps(runtime_config(SETTINGS)), Overwrite=True)
        yield running


def logs_in(node: LocalNode, password: str) -> bool:
    session = Client(node, PUBLISHER_USER, password, transport="mqtt")
    try:
        return session.ok
    finally:
        session.close()


def test_a_rotated_password_reaches_the_broker_and_the_old_one_is_refused(node, aws):
    config = str(node.path("/etc/wis2/node.json"))
    first = wis2node(aws, "apply-config", config)  # the node at boot: version 1 applied
    assert first.returncode == 0 and "publisher password version 1 set" in first.stdout
    old = node.publisher_password
    assert logs_in(node, old)

    rotated = wis2node(aws, "rotate-publisher-password", "--stack", SETTINGS.stack)
    assert rotated.returncode == 0, rotated.stderr
    assert "version 2" in rotated.stdout and old not in rotated.stdout
    new = client("ssm", aws).get_parameter(Name=PASSWORD, WithDecryption=True)["Parameter"]["Value"]
    assert new != old and new not in rotated.stdout, "the password is never printed"
    assert logs_in(node, old), "nothing changes on the node before it applies the new version"

    applied = wis2node(aws, "apply-config", config)
    assert "publisher password version 2 set" in applied.stdout, applied.stdout + applied.stderr
    assert logs_in(node, new) and not logs_in(node, old)
    again = wis2node(aws, "apply-config", config)
    assert "nothing changed" in again.stdout, "an applied version is not applied twice"


def test_rotation_refuses_a_stack_never_deployed(aws):
    client("ssm", aws).delete_parameter(Name=PASSWORD) if _exists(aws, PASSWORD) else None
    run = wis2node(aws, "rotate-publisher-password", "--stack", SETTINGS.stack)
    assert run.returncode == 2 and "the node makes it at its first boot" in run.stderr


def _exists(aws, name: str) -> bool:
    ssm = client("ssm", aws)
    try:
        ssm.get_parameter(Name=name)
        return True
    except ssm.exceptions.ParameterNotFound:
        return False


def test_a_changed_retention_reaches_the_node_and_reloads_nothing(node, aws):
    config = str(node.path("/etc/wis2/node.json"))
    ssm = client("ssm", aws)
    changed = runtime_config(SETTINGS)
    changed["publishing"]["retention_days"] = 7
    ssm.put_parameter(Name=RUNTIME, Type="String", Value=json.dumps(changed), Overwrite=True)
    actions = []
    done = runtime.apply(load_config(config, needs=()), _boto_ssm(aws), act=lambda action, _: actions.append(action))
    assert any("publishing.retention_days 30 -> 7" in line for line in done), done
    assert actions == [], "the retention timer reads it at its next run: nothing to reload"
    from wis2node.node.nodeconfig import load

    assert load(config)["publishing"]["retention_days"] == 7
    # the retention tool, as its timer runs it, uses the new value
    run = wis2node(aws, "retention", config)
    assert "older than 7 days" in run.stderr + run.stdout

    changed["publishing"]["max_file_bytes"] = 1024
    changed["tls"]["letsencrypt_email"] = "new-ops@examplemet.example.org"
    ssm.put_parameter(Name=RUNTIME, Type="String", Value=json.dumps(changed), Overwrite=True)
    runtime.apply(load_config(config, needs=()), _boto_ssm(aws), act=lambda action, _: actions.append(action))
    assert actions == ["restart-agent", "certbot-account"]


def test_a_bad_runtime_document_is_refused_and_the_old_file_kept(node, aws):
    config = str(node.path("/etc/wis2/node.json"))
    before = node.path("/etc/wis2/runtime.json").read_text()
    for bad in (
        {"publishing": {"retention_days": "30", "max_file_bytes": 1}, "tls": {"letsencrypt_email": None}},
        {**runtime_config(SETTINGS), "shell": {"command": "rm -rf /"}},
    ):
        client("ssm", aws).put_parameter(Name=RUNTIME, Type="String", Value=json.dumps(bad), Overwrite=True)
        run = wis2node(aws, "apply-config", config)
        assert run.returncode != 0 and "refused, keeping" in run.stderr, run.stderr
        assert node.path("/etc/wis2/runtime.json").read_text() == before


def apt_reboot_settings(parts) -> dict[str, str]:
    """What apt itself reads from a apt.conf.d folder: unattended-upgrades' reboot settings."""
    main = parts.parent / "apt.conf"
    main.write_text(f'Dir::Etc::parts "{parts}/";\n')
    dump = subprocess.run(
        ["apt-config", "dump"], env={**os.environ, "APT_CONFIG": str(main)}, capture_output=True, text=True, check=True
    ).stdout
    found = re.findall(r'^Unattended-Upgrade::(Automatic-Reboot[A-Za-z-]*) "([^"]*)";$', dump, re.MULTILINE)
    return dict(found)


def test_a_new_reboot_time_reaches_apt_without_a_new_machine(node, aws):
    """rebootTime travels in the runtime parameter: apply-config writes unattended-upgrades' reboot
    time where apt reads it (apt-config, the real parser), at the first boot and at each change."""
    config = str(node.path("/etc/wis2/node.json"))
    parts = node.path("/etc/apt/apt.conf.d")
    parts.mkdir(parents=True)
    rendered = {f.path: f.content for f in render_files(SETTINGS, DeployFacts(data_volume_id="vol-0"))}
    upgrades = "/etc/apt/apt.conf.d/52wis2-unattended-upgrades"
    (parts / upgrades.rsplit("/", 1)[1]).write_bytes(rendered[upgrades])  # as cloud-init writes it
    assert apt_reboot_settings(parts) == {"Automatic-Reboot": "false"}, "no reboot before the stack's time is known"

    node.path("/etc/wis2/runtime.json").unlink()  # a machine's first boot: nothing applied yet
    actions = []
    done = runtime.apply(load_config(config, needs=()), _boto_ssm(aws), act=lambda action, _: actions.append(action))
    assert apt_reboot_settings(parts) == {
        "Automatic-Reboot": "true",
        "Automatic-Reboot-WithUsers": "true",
        "Automatic-Reboot-Time": SETTINGS.reboot_time,
    }, done

    changed = runtime_config(SETTINGS)
    changed["upgrades"]["reboot_time"] = "05:45"
    client("ssm", aws).put_parameter(Name=RUNTIME, Type="String", Value=json.dumps(changed), Overwrite=True)
    run = wis2node(aws, "apply-config", config)
    assert run.returncode == 0, run.stderr
    assert f"upgrades.reboot_time '{SETTINGS.reboot_time}' -> '05:45'" in run.stdout
    assert "53wis2-reboot-time: automatic reboots at 05:45 UTC" in run.stdout
    assert apt_reboot_settings(parts)["Automatic-Reboot-Time"] == "05:45"
    runtime.apply(load_config(config, needs=()), _boto_ssm(aws), act=lambda action, _: actions.append(action))
    assert actions == [], "unattended-upgrades reads it at its next run: nothing to reload"

    (parts / "53wis2-reboot-time").write_text('Unattended-Upgrade::Automatic-Reboot-Time "now";\n')
    assert "automatic reboots at 05:45" in wis2node(aws, "apply-config", config).stdout, "a hand edit is undone"
    assert apt_reboot_settings(parts)["Automatic-Reboot-Time"] == "05:45"

    for bad in ("25:00", '05:45";\nAPT::Update::Pre-Invoke { "touch /tmp/owned"; };//', 545):
        client("ssm", aws).put_parameter(
            Name=RUNTIME, Type="String", Overwrite=True, Value=json.dumps({**changed, "upgrades": {"reboot_time": bad}})
        )
        refused = wis2node(aws, "apply-config", config)
        assert refused.returncode != 0 and "upgrades.reboot_time" in refused.stderr, refused.stderr
        assert apt_reboot_settings(parts)["Automatic-Reboot-Time"] == "05:45"


def _boto_ssm(aws):
    return client("ssm", aws)


# -- logs ----------------------------------------------------------------------------------------


def journal_line(unit: str, message, when: datetime.datetime, cursor: str) -> str:
    return json.dumps(
        {
            "_SYSTEMD_UNIT": unit,
            "MESSAGE": message,
            "__CURSOR": cursor,
            "__REALTIME_TIMESTAMP": str(int(when.timestamp() * 1_000_000)),
        }
    )


def test_journal_lines_are_shipped_per_service_and_read_back(aws, tmp_path):
    logs = client("logs", aws)
    for group in journal.log_groups(SETTINGS.stack).values():
        logs.create_log_group(logGroupName=group)
    now = datetime.datetime.now(datetime.UTC)
    lines = [
        journal_line("wis2-agent.service", "published data/core/x.bufr4", now - datetime.timedelta(minutes=30), "c1"),
        journal_line("mosquitto.service", "New client connected", now - datetime.timedelta(minutes=20), "c2"),
        journal_line("sshd.service", "not ours", now - datetime.timedelta(minutes=15), "c3"),
        journal_line("nginx.service", list("bad \xff".encode("latin-1")), now - datetime.timedelta(minutes=10), "c4"),
        json.dumps(
            {
                "UNIT": "wis2-agent.service",
                "_SYSTEMD_UNIT": "init.scope",
                "MESSAGE": "Started agent",
                "__CURSOR": "c5",
                "__REALTIME_TIMESTAMP": str(int((now - datetime.timedelta(minutes=5)).timestamp() * 1e6)),
            }
        ),
        journal_line("wis2-agent.service", "old line", now - datetime.timedelta(hours=3), "c6"),
    ]
    config = parse(json.loads(_rendered_node_json()))
    sent, state = journal.ship(config.logs, logs, lines, "i-0123456789abcdef0", {}, "machine-a")
    assert sent == {"agent": 3, "broker": 1, "web": 1}
    assert state == {"machine_id": "machine-a", "cursor": "c6"}, "the cursor of the last entry read"

    agent = wis2node(aws, "logs", "--stack", SETTINGS.stack, "--service", "agent", "--since", "1h")
    assert agent.returncode == 0, agent.stderr
    assert [line.split(" ", 3)[3] for line in agent.stdout.splitlines()] == [
        "published data/core/x.bufr4",
        "Started agent",
    ], "the last hour only, oldest first"
    everything = wis2node(aws, "logs", "--stack", SETTINGS.stack, "--since", "4h").stdout.splitlines()
    assert [line.split()[2] for line in everything] == ["agent", "agent", "broker", "web", "agent"]
    assert "bad \ufffd" in everything[3], "a non-UTF-8 message arrives, replaced, not dropped"


def test_logs_explains_bad_input(aws):
    run = wis2node(aws, "logs", "--stack", SETTINGS.stack, "--since", "yesterday")
    assert run.returncode == 2 and "--since 'yesterday'" in run.stderr
    run = wis2node(aws, "logs", "--stack", SETTINGS.stack, "--service", "nosuch")
    assert run.returncode == 2 and "invalid choice" in run.stderr


def test_batches_respect_cloudwatch_limits():
    start = 1_700_000_000_000
    many = [{"timestamp": start + i, "message": "x"} for i in range(25_000)]
    assert [len(b) for b in journal.batches(many)] == [10_000, 10_000, 5_000]
    big = [{"timestamp": start + i, "message": "y" * 200_000} for i in range(12)]
    assert all(sum(len(e["message"]) + 26 for e in b) <= journal.MAX_BATCH_BYTES for b in journal.batches(big))
    spread = [{"timestamp": start, "message": "a"}, {"timestamp": start + 25 * 3600 * 1000, "message": "b"}]
    assert len(list(journal.batches(spread))) == 2, "a call spans at most 24 hours"


def test_the_journal_is_read_after_the_saved_cursor_of_this_machine_only():
    units = journal.units()
    assert journal.journal_command("s=abc", units)[-1] == "--after-cursor=s=abc"
    assert journal.journal_command(None, units)[-1] == "--boot"
    assert {
        "wis2-agent.service",
        "mosquitto.service",
        "nginx.service",
        "wis2-certificate.service",
        "wis2-watcher.service",
    } <= set(units)


def _rendered_node_json() -> str:
    from wis2node.payload import DeployFacts, render_files

    return next(
        f.content
        for f in render_files(SETTINGS, DeployFacts(data_volume_id="vol-1"))
        if f.path == "/etc/wis2/node.json"
    )


# -- the CLI as a whole --------------------------------------------------------------------------


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    captured = {}
    original = argparse.ArgumentParser.parse_args

    def capture(self, args=None, namespace=None):
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                captured.update(action.choices)
        raise SystemExit(0)

    argparse.ArgumentParser.parse_args = capture
    try:
        with pytest.raises(SystemExit):
            cli_main(["stacks"])
    finally:
        argparse.ArgumentParser.parse_args = original
    return captured


def test_every_option_has_help_and_every_stack_verb_takes_stack():
    commands = _subcommands()
    node_tools = {
        "agent",
        "certificate",
        "publisher-credential",
        "retention",
        "reporter",
        "apply-config",
        "ship-logs",
        "cloudwatch-agent",
        "watcher",
        "republish",
        "gdc-check",
    }
    for name, parser in commands.items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.option_strings or action.dest}: no help text"
        options = {o for a in parser._actions for o in a.option_strings}
        if name not in node_tools | {"stacks"}:
            assert "--stack" in options, f"{name} has no --stack"


def test_version():
    run = subprocess.run([sys.executable, "-m", "wis2node", "--version"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("wis2node ") and "node package sha256" in run.stdout


def test_check_takes_stack_too():
    run = subprocess.run(
        [sys.executable, "-m", "wis2node", "check", "--stack", "aq-examplemet-test"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "1 stacks checked" in run.stdout, run.stdout + run.stderr


# -- status --------------------------------------------------------------------------------------


def test_status_is_one_screen_naming_what_fails(aws, node):
    ssm = client("ssm", aws)
    sqs = client("sqs", aws)
    sqs.create_queue(QueueName=SETTINGS.ingest_queue)
    dead = sqs.create_queue(QueueName=SETTINGS.dead_letter_queue)["QueueUrl"]
    sqs.send_message(QueueUrl=dead, MessageBody="{}")
    assert ssm.get_parameter(Name=PASSWORD)
    run = wis2node(
        aws,
        "status",
        "--stack",
        SETTINGS.stack,
        "--host",
        "127.0.0.1",
        "--https-port",
        str(node.ports.https),
        "--mqtts-port",
        str(node.ports.mqtts),
        "--ca-file",
        str(node.ca_file),
    )
    screen = run.stdout.splitlines()
    assert run.returncode == 1, "nothing deployed in moto: the instance check fails"
    assert screen[0].startswith(f"{SETTINGS.stack}: {SETTINGS.fqdn}")
    assert len(screen) <= 24
    text = run.stdout
    assert "0 events waiting or in progress, 1 refused (python -m wis2node dead-letters list" in text
    assert "certificate-https" in text and "days left" in text
    assert "FAIL instance: no instance tagged" in text
    assert "password version" in text and "snapshots" in text
