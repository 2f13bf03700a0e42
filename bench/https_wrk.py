"""HTTPS downloads with wrk: the node's nginx configuration against a stock nginx, in the same run.

Both serve the same 100 KB file over TLS with the same certificate, on loopback:

- node: nginx.conf as the local node renders it (TLS policy, security and CORS headers, its types,
  access log, timeouts), except for its per-address limits (100 requests/s, 100 requests in
  progress), which a load generator on one address would hit at once: those are lifted for the
  measurement, and what one address gets with them on is printed as well;
- stock: Debian's default nginx.conf (worker_processes auto, sendfile, mime.types, access log)
  with one TLS server added.

wrk (Debian's package, HTTP/1.1 with keep-alive) runs the same load against each in turn,
alternating for --rounds rounds: requests per second and p99 latency, their medians and ratios.

    venv/bin/python bench/https_wrk.py [--connections 50] [--seconds 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wis2node.local import LocalNode, _stop, _wait_for_port, free_port
from wis2node.stackfile import find_stack

FILE = "data/core/weather/surface-based-observations/synop/bench-100k.bufr4"
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(port: int, connections: int, seconds: int) -> dict[str, float]:
    """One wrk run: requests/s, p99 latency in ms, and how many answers were not 2xx/3xx."""
    output = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", f"https://127.0.0.1:{port}/{FILE}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    errors = re.search(r"^\s+Non-2xx or 3xx responses: (\d+)", output, re.M)
    if not (p99 and rate):
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    return {
        "rps": float(rate.group(1)),
        "p99_ms": float(p99.group(1)) * UNITS[p99.group(2)],
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def stock_nginx(node: LocalNode, workdir: Path) -> tuple[subprocess.Popen, int]:
    """Debian's default nginx.conf, reduced to what applies, plus one TLS server for the same file."""
    port = free_port()
    state = workdir / "stock"
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (state / name).mkdir(parents=True, exist_ok=True)
    config = state / "nginx.conf"
    config.write_text(f"""user {getpass.getuser()};
worker_processes auto;
pid {state}/nginx.pid;
error_log stderr;
events {{ worker_connections 768; }}
http {{
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    access_log {state}/access.log;
    gzip on;
    client_body_temp_path {state}/body;
    proxy_temp_path {state}/proxy;
    fastcgi_temp_path {state}/fastcgi;
    uwsgi_temp_path {state}/uwsgi;
    scgi_temp_path {state}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {node.tls_dir}/fullchain.pem;
        ssl_certificate_key {node.tls_dir}/privkey.pem;
        root {node.public_dir};
    }}
}}
""")
    process = subprocess.Popen(
        ["nginx", "-e", "stderr", "-c", str(config), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for_port(port, process, "stock nginx")
    return process, port


def lift_per_address_limits(node: LocalNode) -> None:
    """Drop the node's per-address request limits (one load generator is one address) and reload."""
    config = node.path("/etc/nginx/nginx.conf")
    text = config.read_text()
    lifted = re.sub(r"^\s*limit_(req|conn) (zone=per_client|requests_per_address) .*;\n", "", text, flags=re.M)
    assert lifted.count("\n") == text.count("\n") - 3, "the node's limits are not where this script expects"
    config.write_text(lifted)
    node.web.send_signal(signal.SIGHUP)
    time.sleep(2)  # the old workers finish, the new ones take over


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = find_stack("aq-examplemet-test").settings()
    with tempfile.TemporaryDirectory() as tmp, LocalNode(settings, Path(tmp) / "node") as node:
        target = node.public_dir / FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(os.urandom(100 * 1024))
        stock, stock_port = stock_nginx(node, Path(tmp))
        try:
            limited = wrk(node.ports.https, min(args.connections, 20), 5)
            print(f"{os.cpu_count()} CPUs; wrk -t2 -c{args.connections} -d{args.seconds}s, 100 KB file, TLS")
            print(
                f"  node with its per-address limits, from one address: {limited['rps']:.0f} requests/s answered, "
                f"{limited['non_2xx']} of them (in 5 s) refused with 429"
            )
            lift_per_address_limits(node)
            runs: dict[str, list[dict[str, float]]] = {"node": [], "stock": []}
            for round_ in range(args.rounds):
                order = [("node", node.ports.https), ("stock", stock_port)]
                for name, port in order if round_ % 2 == 0 else order[::-1]:
                    result = wrk(port, args.connections, args.seconds)
                    runs[name].append(result)
                    print(
                        f"  round {round_ + 1} {name:5}: {result['rps']:8.0f} requests/s, "
                        f"p99 {result['p99_ms']:7.1f} ms,"
                        f" non-2xx {result['non_2xx']}",
                        flush=True,
                    )
        finally:
            _stop(stock)
    median = {
        name: (statistics.median(r["rps"] for r in results), statistics.median(r["p99_ms"] for r in results))
        for name, results in runs.items()
    }
    for name, (rps, p99) in median.items():
        print(f"median {name:5}: {rps:8.0f} requests/s, p99 {p99:7.1f} ms")
    print(
        f"ratio node / stock: {median['node'][0] / median['stock'][0]:.2f} requests/s (target >= 0.8), "
        f"p99 {median['node'][1] / median['stock'][1]:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
