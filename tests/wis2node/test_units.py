"""The node's own services, as rendered: each runs with the least privilege it tolerates."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from wis2node.payload import DATA_ROOT, DeployFacts, render_files, render_user_data
from wis2node.stackfile import find_stack

SETTINGS = find_stack("aq-examplemet-test").settings()
FACTS = DeployFacts(data_volume_id="vol-0123456789abcdef0", bucket="wis2-ingest")
FILES = {f.path: f.content.decode() for f in render_files(SETTINGS, FACTS)}
UNITS = {
    Path(path).name: text
    for path, text in FILES.items()
    if path.startswith("/etc/systemd/system/wis2-") and path.endswith(".service")
}
# The services that keep root, each with what it needs root for.
ROOT_SERVICES = {
    "wis2-certificate.service": "its deploy hook gives the key to mosquitto's account and sends SIGHUP",
    "wis2-config.service": "it rewrites the broker's password file, signals mosquitto and restarts the agent",
}
# The boot's steps: root by nature (format and mount a volume, write /etc, install software with
# pip and dpkg, write the broker's password file), each sandboxed as far as its job allows, with
# systemd-analyze's rating (systemd 252, --offline) as the ceiling.
BOOT_STEPS = {
    "wis2-data-volume.service": 7.3,
    "wis2-setup.service": 4.4,
    "wis2-node-software.service": 2.7,
    "wis2-publisher-credential.service": 5.5,
    "wis2-cloudwatch-agent.service": 7.4,
}
# Services whose account needs a group a private user namespace would not map (the journal's).
HOST_GROUPS = {"wis2-logs.service": "systemd-journal"}
# Every service; DynamicUser= implies the first four for the reporter.
SANDBOX = {
    "ProtectSystem": "strict",
    "PrivateTmp": "yes",
    "NoNewPrivileges": "yes",
    "RestrictSUIDSGID": "yes",
    "ProtectHome": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectProc": "invisible",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
}
IMPLIED_BY_DYNAMIC_USER = ("ProtectSystem", "PrivateTmp", "NoNewPrivileges", "RestrictSUIDSGID")
# What systemd-analyze security --offline said of each unit with systemd 252 (0 safe ... 10 unsafe).
EXPOSURE = {
    "wis2-agent.service": 1.1,
    "wis2-retention.service": 0.6,
    "wis2-reporter.service": 1.5,
    "wis2-certificate.service": 2.4,
    "wis2-config.service": 2.4,
    "wis2-logs.service": 1.7,
    "wis2-watcher.service": 1.1,
    "wis2-republish.service": 1.1,
    "wis2-gdc-check.service": 1.1,
}


def service(name: str) -> dict[str, list[str]]:
    """The [Service] section's settings, every value of a repeated one."""
    values: dict[str, list[str]] = {}
    section = None
    for line in UNITS[name].splitlines():
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values.setdefault(key, []).append(value)
    return values


def test_every_service_of_the_node_is_checked_here():
    assert set(UNITS) == set(EXPOSURE) | set(BOOT_STEPS)


@pytest.mark.parametrize("name", sorted(BOOT_STEPS))
def test_each_boot_step_says_why_it_is_root_and_is_retried_or_ordered(name):
    assert "# Root: " in UNITS[name]
    settings = service(name)
    assert settings["Type"] == ["oneshot"] and settings["RemainAfterExit"] == ["yes"]
    assert settings.get("NoNewPrivileges") == ["yes"] and settings.get("PrivateTmp", ["yes"]) == ["yes"]


@pytest.mark.parametrize("name", sorted(EXPOSURE))
def test_the_sandbox_holds(name):
    settings = service(name)
    for key, value in SANDBOX.items():
        if settings.get("DynamicUser") == ["yes"] and key in IMPLIED_BY_DYNAMIC_USER:
            assert key not in settings
            continue
        assert settings.get(key) == [value], (name, key, settings.get(key))
    assert settings["SystemCallFilter"][0] == "@system-service", "an allow list first, then what it denies"
    assert settings["SystemCallFilter"][1].startswith("~") and "@resources" in settings["SystemCallFilter"][1]
    assert set(settings["RestrictAddressFamilies"][0].split()) <= {"AF_INET", "AF_INET6", "AF_UNIX"}


@pytest.mark.parametrize("name", sorted(EXPOSURE))
def test_no_service_runs_as_root_unless_it_needs_to(name):
    settings = service(name)
    as_itself = settings.get("User", ["root"]) != ["root"] or settings.get("DynamicUser") == ["yes"]
    if name in ROOT_SERVICES:
        assert not as_itself
        capabilities = settings["CapabilityBoundingSet"][0].split()
        assert capabilities and set(capabilities) <= {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL"}
    else:
        assert as_itself, f"{name} runs as root"
        assert settings["CapabilityBoundingSet"] == [""] and "AmbientCapabilities" not in settings
        if name in HOST_GROUPS:
            assert settings["PrivateUsers"] == ["no"] and settings["SupplementaryGroups"] == [HOST_GROUPS[name]]
        else:
            assert settings["PrivateUsers"] == ["yes"]
        assert settings["SystemCallFilter"][1] == "~@privileged @resources"


def test_the_agent_writes_only_its_folders_as_its_own_account():
    agent = service("wis2-agent.service")
    assert agent["User"] == ["wis2-agent"]
    # one writable mount (files are renamed from its state into the public tree), the secrets kept out of it;
    # the rest of the data volume belongs to root or mosquitto, and the agent has no capability
    assert agent["ReadWritePaths"] == [DATA_ROOT]
    assert agent["InaccessiblePaths"][0].split() == [
        f"-{DATA_ROOT}/tls",
        f"-{DATA_ROOT}/letsencrypt",
        f"-{DATA_ROOT}/mosquitto",
    ]
    assert agent["UMask"] == ["0022"], "nginx (www-data) reads what the agent writes"
    assert [e for e in agent["Environment"] if e.startswith("HOME=")] == [
        "HOME=/var/lib/wis2node/current/src/wis2node/node/data/wmo-home"
    ]
    # the one step as root: the folders the bootstrap made (and an older agent's files) become the agent's
    assert agent["ExecStartPre"] == [
        f"+/usr/bin/find {DATA_ROOT}/agent {DATA_ROOT}/public/data "
        f"{DATA_ROOT}/public/metadata ! -user wis2-agent -exec chown -h wis2-agent {{}} +"
    ]


def test_retention_removes_files_as_the_agent_and_has_no_network():
    retention = service("wis2-retention.service")
    assert retention["User"] == ["wis2-agent"]
    assert retention["ReadWritePaths"][0].split() == [f"{DATA_ROOT}/public/data", f"{DATA_ROOT}/agent"]
    assert retention["PrivateNetwork"] == ["yes"] and retention["RestrictAddressFamilies"] == ["AF_UNIX"]


def test_the_watcher_writes_only_its_state_folder_on_the_data_volume():
    watcher = service("wis2-watcher.service")
    assert watcher["User"] == ["wis2-agent"] and watcher["Restart"] == ["always"]
    assert watcher["ReadWritePaths"] == [f"{DATA_ROOT}/watcher"]
    # wis2-setup makes the folder (a sandboxed ExecStartPre cannot: its mount namespace needs it first)
    assert "ExecStartPre" not in watcher
    assert (
        f'install -d -o wis2-agent -g wis2-agent -m 0750 "{DATA_ROOT}/watcher"' in FILES["/usr/local/sbin/wis2-setup"]
    )
    config = __import__("json").loads(FILES["/etc/wis2/node.json"])
    assert config["wis2"]["state_dir"] == f"{DATA_ROOT}/watcher"
    for name in ("wis2-republish.service", "wis2-gdc-check.service"):
        assert "ReadWritePaths" not in service(name), f"{name} only reads"


def test_the_daily_timers_start_their_services():
    for name in ("wis2-republish", "wis2-gdc-check"):
        timer = FILES[f"/etc/systemd/system/{name}.timer"]
        assert "OnCalendar=" in timer and "Persistent=true" in timer and "WantedBy=timers.target" in timer
        assert f"-m wis2node.node {name.removeprefix('wis2-')} " in UNITS[f"{name}.service"]


def test_the_agents_account_is_declared_in_the_user_data():
    document = yaml.safe_load(render_user_data(SETTINGS, FACTS))
    assert document["users"][0] == "default", "the image's default user stays"
    assert document["users"][1] == {
        "name": "wis2-agent",
        "system": True,
        "homedir": f"{DATA_ROOT}/agent",
        "shell": "/usr/sbin/nologin",
    }
    assert document["users"][2] == {
        "name": "wis2-reporter",
        "system": True,
        "no_create_home": True,
        "shell": "/usr/sbin/nologin",
    }


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("name", sorted(EXPOSURE | BOOT_STEPS))
def test_systemd_analyze_security_rates_the_unit(name, tmp_path):
    """systemd's own rating of the unit file alone (--offline), no worse than the figure it reached."""
    unit = tmp_path / name
    unit.write_text(UNITS[name])
    ceiling = EXPOSURE.get(name) or BOOT_STEPS[name]
    run = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", f"--threshold={round(ceiling * 10)}", str(unit)],
        capture_output=True,
        text=True,
    )
    if "--offline" in run.stderr and "unrecognized" in run.stderr:
        pytest.skip("this systemd-analyze predates --offline (systemd 250)")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]


def test_the_templates_name_each_folder_of_the_data_volume_through_the_layout():
    """Each folder is named once (Layout.paths); a template that spells it again drifts apart."""
    import re

    from wis2node.payload import TEMPLATES

    spelled = re.compile(
        r"paths\.data \}\}/(public|agent|watcher|letsencrypt|mosquitto)\b"
        r'|paths\.data \+ "/(public|agent|watcher|letsencrypt|mosquitto)\b'
        r"|paths\.etc \}\}/mosquitto/passwd|\$data/"
    )
    found = [
        f"{path.relative_to(TEMPLATES)}: {match.group(0)}"
        for path in sorted(TEMPLATES.rglob("*"))
        if path.is_file()
        for match in spelled.finditer(path.read_text())
    ]
    assert found == []
