"""What the VM installs is what was reviewed: Python packages by hash, Amazon's agent by signature."""

from __future__ import annotations

import io
import re
import subprocess
import zipfile
from pathlib import Path

import pytest

from wis2node.node.cloudwatch_agent import Refused, verified_signer
from wis2node.payload import CLOUDWATCH_AGENT, PACKAGE_ROOT, DeployFacts, node_package, render_files
from wis2node.stackfile import find_stack

LOCK = PACKAGE_ROOT / "requirements-node.lock"


def _pins(text: str) -> dict[str, set[str]]:
    pins: dict[str, set[str]] = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^ ;\\]+)", line)
        if match:
            pins.setdefault(match.group(1).lower().replace("_", "-"), set()).add(match.group(2))
    return pins


def test_the_lock_pins_every_requirement_of_the_node_with_hashes():
    wanted = _pins((PACKAGE_ROOT / "requirements-node.txt").read_text())
    locked = _pins(LOCK.read_text())
    for name, versions in wanted.items():
        assert versions <= locked.get(name, set()), f"requirements-node.lock lacks {name} {versions}: recompile it"
    # every requirement in the lock carries at least one hash (pip --require-hashes refuses otherwise)
    entries = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text().split("\n", 4)[-1])
    for entry in entries:
        if re.match(r"^[A-Za-z0-9_.-]+==", entry):
            assert "--hash=sha256:" in entry, entry.splitlines()[0]


def test_the_node_installs_from_the_lock_with_require_hashes():
    settings = find_stack("aq-examplemet-test").settings()
    files = {
        f.path: f.content.decode() for f in render_files(settings, DeployFacts(data_volume_id="vol-0123456789abcdef0"))
    }
    installer = files["/usr/local/sbin/wis2-install-software"]
    assert '"--require-hashes", "-r", str(release / "src/requirements-node.lock")' in installer
    names = zipfile.ZipFile(io.BytesIO(node_package().archive)).namelist()
    assert "requirements-node.lock" in names
    # the WMO bundles travel in the package: nothing is synced from GitHub at boot
    assert (
        "wis2node/node/data/wmo-home/.pywis-pubsub/wis2-notification-message/wis2-notification-message-bundled.json"
        in names
    )
    assert not any("sync" in text for path, text in files.items() if path.startswith("/usr/local/sbin/"))


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict:
    """Two signing keys (Amazon's stand-in and another) and a package signed by each."""
    work = tmp_path_factory.mktemp("gpg")
    made = {}
    for name in ("amazon", "other"):
        home = work / name
        home.mkdir(mode=0o700)
        gpg = ["gpg", "--batch", "--homedir", str(home), "--passphrase", "", "--pinentry-mode", "loopback"]
        subprocess.run(
            [*gpg, "--quick-gen-key", f"{name} <{name}@example.org>", "ed25519", "sign", "1d"],
            check=True,
            capture_output=True,
        )
        fingerprint = next(
            line.split(":")[9]
            for line in subprocess.run(
                [*gpg, "--with-colons", "--fingerprint"], check=True, capture_output=True, text=True
            ).stdout.splitlines()
            if line.startswith("fpr:")
        )
        package = work / f"{name}.deb"
        package.write_bytes(b"a package " + name.encode())
        subprocess.run([*gpg, "--detach-sign", "--output", f"{package}.sig", str(package)], check=True)
        key = work / f"{name}.gpg"
        subprocess.run([*gpg, "--export", "--output", str(key)], check=True)
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
        made[name] = {"fingerprint": fingerprint, "package": package, "sig": Path(f"{package}.sig"), "key": key}
    return made


def test_a_good_signature_names_its_signer(keys):
    amazon = keys["amazon"]
    assert verified_signer(amazon["package"], amazon["sig"], amazon["key"]) == amazon["fingerprint"]


def test_a_tampered_package_is_refused(keys, tmp_path):
    amazon = keys["amazon"]
    tampered = tmp_path / "tampered.deb"
    tampered.write_bytes(amazon["package"].read_bytes() + b"!")
    with pytest.raises(Refused, match="does not verify"):
        verified_signer(tampered, amazon["sig"], amazon["key"])


def test_a_signature_by_a_key_the_public_key_file_does_not_hold_is_refused(keys):
    # someone replaced the package and its signature, but not Amazon's key
    other = keys["other"]
    with pytest.raises(Refused, match="does not verify"):
        verified_signer(other["package"], other["sig"], keys["amazon"]["key"])


def test_the_pinned_signer_is_amazons_published_fingerprint():
    # docs.aws.amazon.com, "Verify the signature of the CloudWatch agent package"
    assert CLOUDWATCH_AGENT["signer"] == "937616F3450B7D806CBD9725D58167303B789C72"
    assert re.fullmatch(r"1\.3\d{5}\.\d+b\d+", CLOUDWATCH_AGENT["version"])
