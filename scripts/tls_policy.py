"""Check the node's TLS endpoints against Mozilla's "intermediate" profile with testssl.sh.

    python -m scripts.tls_policy                 # a local node (real mosquitto and nginx) on loopback
    python -m scripts.tls_policy HOST:8883 HOST:443

testssl.sh (Debian package `testssl.sh`) enumerates every cipher suite each port accepts, per
protocol (-E); anything outside the profile is printed and the exit status is 1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

# Mozilla's server-side TLS guideline 6.0, "intermediate" (ssl-config.mozilla.org/guidelines/6.0.json):
# TLS 1.2 with ECDHE and AEAD only (ECDSA and RSA certificates), and TLS 1.3's three AEAD suites.
MOZILLA_INTERMEDIATE = frozenset(
    {
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
    }
)
PROTOCOLS = ("tls1_2", "tls1_3")


def offered_ciphers(testssl: str, host: str, port: int, workdir: Path) -> dict[str, set[str]]:
    """Every suite the port accepts, by protocol (testssl's ids: ssl2, ssl3, tls1, tls1_1, tls1_2, tls1_3)."""
    report = workdir / f"testssl-{port}.json"
    report.unlink(missing_ok=True)
    subprocess.run(
        [testssl, "--quiet", "--warnings", "off", "--color", "0", "--jsonfile", str(report), "-E", f"{host}:{port}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if not report.is_file():
        raise RuntimeError(f"testssl wrote no report for {host}:{port}")
    offered: dict[str, set[str]] = {}
    for finding in json.loads(report.read_text()):
        if finding["id"].startswith("cipher-"):
            protocol = finding["id"].split("_x", 1)[0].removeprefix("cipher-")
            offered.setdefault(protocol, set()).add(finding["finding"].split()[3])
    return offered


def outside_profile(offered: dict[str, set[str]]) -> list[str]:
    """What the profile does not allow: any suite of another protocol, or one not in the list."""
    return sorted(
        f"{protocol} {cipher}"
        for protocol, ciphers in offered.items()
        for cipher in ciphers
        if protocol not in PROTOCOLS or cipher not in MOZILLA_INTERMEDIATE
    )


def check(testssl: str, targets: list[tuple[str, int]]) -> int:
    bad = 0
    with tempfile.TemporaryDirectory() as workdir:
        for host, port in targets:
            offered = offered_ciphers(testssl, host, port, Path(workdir))
            wrong = outside_profile(offered)
            print(f"{host}:{port}: " + ", ".join(f"{p} {len(c)} suites" for p, c in sorted(offered.items())))
            for line in wrong:
                print(f"  outside the profile: {line}")
            bad += len(wrong) + (0 if offered else 1)
    return 1 if bad else 0


def main(argv: list[str]) -> int:
    import shutil

    testssl = shutil.which("testssl") or shutil.which("testssl.sh")
    if testssl is None:
        raise SystemExit("testssl.sh is missing: apt-get install testssl.sh")
    if argv:
        return check(testssl, [(t.rsplit(":", 1)[0], int(t.rsplit(":", 1)[1])) for t in argv])
    from wis2node.local import LocalNode, require_daemons
    from wis2node.stackfile import find_stack

    require_daemons()
    with tempfile.TemporaryDirectory() as workdir:
        with LocalNode(find_stack("aq-examplemet-test").settings(), Path(workdir)) as node:
            return check(testssl, [("127.0.0.1", node.ports.mqtts), ("127.0.0.1", node.ports.https)])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
