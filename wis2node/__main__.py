"""python -m wis2node: render | local | demo | check | cost | stacks | verify | status | logs | dead-letters |
rotate-publisher-password | install-certificate | notice (anywhere), and agent | certificate |
publisher-credential | retention | reporter | cloudwatch-agent | apply-config | ship-logs | watcher | republish |
gdc-check (on the node)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from wis2node.errors import SettingsError

# Imports live in the commands: the operator's verbs need pydantic, Jinja2 and PyYAML, and the node's
# tools (wis2node.node, which the node runs as `python -m wis2node.node`) are offered here too.


def cmd_render(args: argparse.Namespace) -> int:
    """Write the VM's files (and its cloud-init document) under a directory for review."""
    from wis2node.payload import DeployFacts, render_files, render_user_data
    from wis2node.stackfile import find_stack

    settings = find_stack(args.stack).settings()
    facts = DeployFacts(data_volume_id=args.data_volume_id)
    out = Path(args.out)
    for file in render_files(settings, facts):
        target = out / file.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(file.content)
        print(f"{file.mode} {file.owner:12} {file.path}")
    (out / "user-data").write_text(render_user_data(settings, facts))
    print(f"cloud-init user data: {out / 'user-data'}")
    return 0


def cmd_local(args: argparse.Namespace) -> int:
    """Run the stack's broker and HTTPS server on loopback until interrupted."""
    from wis2node.local import LocalNode, free_port, require_daemons
    from wis2node.payload import Ports
    from wis2node.stackfile import find_stack

    require_daemons()
    settings = find_stack(args.stack).settings()
    chosen = {name: getattr(args, f"{name}_port") for name in ("mqtts", "https", "mqtt_local", "websockets")}
    ports = Ports(**{name: port or free_port() for name, port in chosen.items()})
    stop = threading.Event()
    # Ctrl-C or SIGTERM at any moment, start-up included, stops both daemons in order (a
    # KeyboardInterrupt raised while the node starts would leave them running).
    for caught in (signal.SIGINT, signal.SIGTERM):
        signal.signal(caught, lambda *_: stop.set())
    with LocalNode(settings, Path(args.workdir), ports) as node:
        print(f"local node for {settings.stack} running; details in {node.workdir / 'node.json'}")
        print(json.dumps({k: v for k, v in node.description().items() if k != "publisher"}, indent=2))
        while not stop.wait(1):
            pass
        print("stopping mosquitto and nginx")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Start the local node, publish a sample file as a centre would, receive and download it."""
    from wis2node.local import require_daemons
    from wis2node.stackfile import find_stack

    require_daemons()
    from wis2node import demo

    return demo.run(find_stack(args.stack).settings())


def cmd_check(args: argparse.Namespace) -> int:
    """Validate stack files offline, as the program would, plus checks across stacks."""
    from wis2node.check import check_stacks, summary
    from wis2node.stackfile import find_stack, stack_files

    try:
        names = [*args.stacks, *args.stack_options]
        files = [find_stack(name) for name in names] if names else stack_files()
    except SettingsError as err:
        print(err, file=sys.stderr)
        return 2
    result = check_stacks(files)
    for settings in result.settings.values():
        print("\n".join(summary(settings)))
    for problem in result.problems:
        print(problem, file=sys.stderr)
    print(f"{len(files)} stacks checked, {len(result.problems)} problems")
    return 0 if result.ok else 1


def cmd_cost(args: argparse.Namespace) -> int:
    """Print the itemised monthly estimate of what the stack deploys (provisional prices)."""
    from wis2node.cost import Assumptions, estimate, report
    from wis2node.stackfile import find_stack

    settings = find_stack(args.stack).settings()
    assumptions = Assumptions(
        files_per_day=args.files_per_day, mb_per_file=args.mb_per_file, subscribers=args.subscribers
    )
    print(report(estimate(settings, assumptions)))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Audit a deployed node, read-only, and say what is wrong, one line per check."""
    from wis2node.stackfile import find_stack
    from wis2node.verify import report, verify

    settings = find_stack(args.stack).settings()
    wis2 = None
    if not args.no_network and not args.no_wis2:
        from wis2node.verify_wis2 import Wis2Options

        wis2 = Wis2Options.from_catalogue(
            Path(args.global_endpoints) if args.global_endpoints else None, args.wis2_wait
        )
    checks = verify(settings, _endpoints(args, settings), wis2=wis2)
    print(report(checks, args.json))
    return 0 if all(check.ok for check in checks) else 1


def cmd_stacks(args: argparse.Namespace) -> int:
    """The stacks in stacks/ the workflows preview and deploy, as a GitHub Actions matrix.

    Example stacks (in a reserved example domain) are left out: the tests evaluate them, and no
    workflow ever deploys them.
    """
    from wis2node.stackfile import stack_files

    entries = [
        {"stack": f.stack, "production": f.config.get("wis2-node:environment") == "production"}
        for f in stack_files()
        if not f.is_example
    ]
    print(json.dumps(entries, separators=(",", ":")))
    return 0


def cmd_dead_letters(args: argparse.Namespace) -> int:
    """List what the node refused (with the reasons), or have S3 announce chosen events again."""
    import boto3

    from wis2node import deadletters
    from wis2node.stackfile import find_stack

    settings = find_stack(args.stack).settings()
    session = boto3.session.Session(region_name=settings.region)
    sqs = session.client("sqs")
    queue_url = sqs.get_queue_url(QueueName=settings.dead_letter_queue)["QueueUrl"]
    if args.action == "list":
        parked = deadletters.take(sqs, queue_url)
        deadletters.release(sqs, queue_url, parked)
        if args.json:
            print(json.dumps([item.as_dict() for item in parked], indent=2))
        for item in [] if args.json else parked:
            print(f"{item.message_id}  {item.parked_at}  {item.event or '-'}  {item.key or '-'}\n    {item.reason}")
        if not args.json:
            print(f"{len(parked)} events in {settings.dead_letter_queue}")
        return 0
    if not args.all and not args.ids:
        print("name the events to send back (their ids, from `dead-letters list`), or --all", file=sys.stderr)
        return 2
    bucket = settings.ingest_bucket(session.client("sts").get_caller_identity()["Account"])
    outcome = deadletters.redrive(
        session.client("s3"), sqs, bucket, queue_url, None if args.all else set(args.ids), args.drop
    )
    for item, what in outcome:
        print(f"{item.message_id}  {item.key or '-'}: {what}")
    return 0 if all(what == "replayed" or what.startswith("dropped") for _, what in outcome) else 1


def _endpoints(args: argparse.Namespace, settings):
    from wis2node.verify import Endpoints

    return (
        None
        if args.no_network
        else Endpoints(
            host=args.host or settings.fqdn,
            https_port=args.https_port,
            mqtts_port=args.mqtts_port,
            ca_file=args.ca_file,
        )
    )


def cmd_status(args: argparse.Namespace) -> int:
    """The node in one screen: what verify knows, condensed, and the queues, snapshots, password."""
    from wis2node.stackfile import find_stack
    from wis2node.status import status

    settings = find_stack(args.stack).settings()
    ok, screen = status(settings, _endpoints(args, settings))
    print(screen)
    return 0 if ok else 1


def cmd_rotate(args: argparse.Namespace) -> int:
    """A new publisher password in SSM; the node applies it within a minute."""
    import boto3

    from wis2node.rotate import read_command, rotate
    from wis2node.stackfile import find_stack

    settings = find_stack(args.stack).settings()
    name = settings.parameter_name("publisher-password")
    version = rotate(boto3.session.Session(region_name=settings.region).client("ssm"), name)
    print(
        f"{name}: new password stored (version {version}).\n"
        "The node applies it within a minute (wis2-config.timer): the broker then refuses the old one.\n"
        f"Give it to your publishing systems; read it with:\n  {read_command(name, settings.region)}\n"
        f"Applied? python -m wis2node logs --stack {settings.stack} --service config --since 10m"
    )
    return 0


def cmd_install_certificate(args: argparse.Namespace) -> int:
    """Check a bought certificate (chain, key, name) and only then write it in the stack file."""
    from wis2node.install_certificate import install
    from wis2node.stackfile import find_stack

    stack = find_stack(args.stack)
    installed = install(
        stack,
        Path(args.certificate),
        Path(args.key),
        Path(args.chain) if args.chain else None,
        Path(args.ca_file) if args.ca_file else None,
    )
    leaf = installed[0]
    print(
        f"{stack.path.name}: wis2-node:certificate set ({len(installed)} certificates: the leaf, valid until "
        f"{leaf.not_valid_after_utc:%Y-%m-%d}, and {len(installed) - 1} intermediates).\n"
        f"Next: pulumi preview -s {stack.stack}, then pulumi up -s {stack.stack}"
    )
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    """The node's service logs from CloudWatch Logs."""
    import boto3

    from wis2node.logs import SERVICES, format_line, parse_since, read
    from wis2node.stackfile import find_stack

    settings = find_stack(args.stack).settings()
    services = [args.service] if args.service else list(SERVICES)
    events = read(
        boto3.session.Session(region_name=settings.region),
        settings.stack,
        services,
        parse_since(args.since),
        args.limit,
    )
    width = max(len(s) for s in services)
    for event in events:
        print(format_line(event, width))
    if not events:
        print(f"no log lines since {args.since} ({', '.join(services)})", file=sys.stderr)
    return 0


def _version(_args=None) -> str:
    from wis2node import __version__

    try:
        from wis2node.payload import node_package
    except ImportError:  # on the node: its tools only, no renderer
        return f"wis2node {__version__}"
    return f"wis2node {__version__} (node package sha256 {node_package().sha256[:12]})"


class _VersionAction(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print the version and the node package's hash")

    def __call__(self, parser, namespace, values, option_string=None):
        print(_version())
        parser.exit()


def _stack_option(parser: argparse.ArgumentParser, required: bool = True, default: str | None = None) -> None:
    parser.add_argument(
        "--stack",
        required=required,
        default=default,
        help="the stack: its name (stacks/Pulumi.<stack>.yaml) or its file's path"
        + (f" (default: {default})" if default else ""),
    )


def _network_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-network", action="store_true", help="AWS checks only, no connection to the node")
    parser.add_argument("--host", help="connect here instead of the FQDN (the certificate must still name it)")
    parser.add_argument("--https-port", type=int, default=443, help="the node's HTTPS port (default 443)")
    parser.add_argument("--mqtts-port", type=int, default=8883, help="the node's MQTTS port (default 8883)")
    parser.add_argument("--ca-file", help="trust this CA instead of the system's (a test node)")


def _log_services() -> list[str]:
    from wis2node.node.journal import SERVICES

    return list(SERVICES)


def cmd_notice(args: argparse.Namespace) -> int:
    """Publish (or withdraw) a planned-outage notice from the node's own broker, as its publisher."""
    import boto3

    from wis2node import notice
    from wis2node.endpoints import PUBLISHER_USER
    from wis2node.node.rules import topic_root
    from wis2node.stackfile import find_stack

    settings = find_stack(args.stack).settings()
    event = notice.build(
        settings.centre_id, args.start, args.end, args.message, channel=args.channel or "", cancel=args.cancel
    )
    if args.dry_run:
        print(json.dumps(event, indent=2))
        return 0
    password = (
        boto3.session.Session(region_name=settings.region)
        .client("ssm")
        .get_parameter(Name=settings.parameter_name("publisher-password"), WithDecryption=True)["Parameter"]["Value"]
    )
    try:
        reason = notice.send(
            event, args.host or settings.fqdn, args.mqtts_port, PUBLISHER_USER, password, ca_file=args.ca_file
        )
    except (OSError, ConnectionError) as err:
        print(f"not sent: {err}", file=sys.stderr)
        return 1
    if reason != 0:
        print(f"the broker refused the notice (MQTT reason code {reason})", file=sys.stderr)
        return 1
    what = "withdrawal of notice " + event["data"]["ref"] if args.cancel else "notice " + event["id"]
    print(f"{what} published on {topic_root(settings.centre_id, 'monitor')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wis2node", description=__doc__)
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", required=True)

    render = commands.add_parser("render", help="write the VM's rendered files for review")
    _stack_option(render)
    render.add_argument("--out", default="build/rendered", help="where to write them (default build/rendered)")
    render.add_argument(
        "--data-volume-id",
        default="vol-0123456789abcdef0",
        help="the data volume id the files name (default: a placeholder)",
    )
    render.set_defaults(func=cmd_render)

    local = commands.add_parser("local", help="run the broker and HTTPS server on loopback")
    _stack_option(local)
    local.add_argument("--workdir", required=True, help="where the node's files, state and node.json go")
    for name in ("mqtts", "https", "mqtt_local", "websockets"):
        local.add_argument(
            f"--{name.replace('_', '-')}-port", type=int, default=0, dest=f"{name}_port", help="default: a free port"
        )
    local.set_defaults(func=cmd_local)

    demo = commands.add_parser("demo", help="publish, receive and download a sample file locally")
    _stack_option(demo, required=False, default="aq-examplemet-test")
    demo.set_defaults(func=cmd_demo)

    from wis2node.node.__main__ import add_tools

    add_tools(commands)

    check = commands.add_parser("check", help="validate stack files offline (default: all of stacks/)")
    check.add_argument("stacks", nargs="*", help="stack names or stack file paths")
    check.add_argument(
        "--stack",
        action="append",
        default=[],
        dest="stack_options",
        help="a stack to check (repeatable; same as naming it without --stack)",
    )
    check.set_defaults(func=cmd_check)

    cost = commands.add_parser("cost", help="itemised monthly estimate of what a stack deploys (provisional)")
    _stack_option(cost)
    cost.add_argument("--files-per-day", type=int, default=1000, help="files the centre publishes a day")
    cost.add_argument("--mb-per-file", type=float, default=0.1, help="their average size in MB")
    cost.add_argument(
        "--subscribers",
        type=int,
        default=0,
        help="downloaders of every file besides the Global Caches (partners, users)",
    )
    cost.set_defaults(func=cmd_cost)

    audit = commands.add_parser("verify", help="audit a deployed node (read-only)")
    _stack_option(audit)
    audit.add_argument("--json", action="store_true", help="print the checks as JSON")
    _network_options(audit)
    audit.add_argument(
        "--no-wis2",
        action="store_true",
        help="leave out the WIS2 section (Global Brokers, Global Discovery Catalogues, alerts)",
    )
    audit.add_argument(
        "--wis2-wait",
        type=float,
        default=30,
        metavar="SECONDS",
        help="how long to wait for a message of the node to follow through the Global Brokers "
        "(default 30; 0: connect only)",
    )
    audit.add_argument(
        "--global-endpoints",
        metavar="CSV",
        help="the Global Services to ask, as in wis2node/node/data/global-endpoints.csv (default: that file)",
    )
    audit.set_defaults(func=cmd_verify)

    state = commands.add_parser("status", help="the node in one screen (read-only)")
    _stack_option(state)
    _network_options(state)
    state.set_defaults(func=cmd_status)

    logs = commands.add_parser("logs", help="read the node's service logs from CloudWatch Logs")
    _stack_option(logs)
    logs.add_argument(
        "--service", choices=list(_log_services()), help="one service (default: all, interleaved by time)"
    )
    logs.add_argument(
        "--since", default="1h", help="how far back: 30m, 1h, 2d, or a time 2026-11-24T12:00 (UTC; default 1h)"
    )
    logs.add_argument("--limit", type=int, default=1000, help="at most this many lines per service (default 1000)")
    logs.set_defaults(func=cmd_logs)

    rotate = commands.add_parser(
        "rotate-publisher-password", help="a new publisher password in SSM, applied by the node within a minute"
    )
    _stack_option(rotate)
    rotate.set_defaults(func=cmd_rotate)

    certificate = commands.add_parser(
        "install-certificate", help="check a bought certificate and write it in the stack file"
    )
    _stack_option(certificate)
    certificate.add_argument(
        "--certificate", required=True, help="the certificate the CA issued (PEM; its chain may follow it in the file)"
    )
    certificate.add_argument(
        "--key",
        required=True,
        help="the key it must match: the private key, or the signing request "
        "(pulumi stack output certificate_signing_request)",
    )
    certificate.add_argument("--chain", help="the CA's intermediate certificates (PEM), when not in --certificate")
    certificate.add_argument("--ca-file", help="trust these root CAs instead of this machine's")
    certificate.set_defaults(func=cmd_install_certificate)

    outage = commands.add_parser("notice", help="publish a planned data outage notice (a WIS2 monitoring event)")
    _stack_option(outage)
    outage.add_argument(
        "--start", default="..", help="ISO 8601 with a time zone, e.g. 2026-01-05T14:00:00Z (default: already started)"
    )
    outage.add_argument("--end", required=True, help="ISO 8601 with a time zone")
    outage.add_argument("--message", required=True, help="what will be missing, for the people who use the data")
    outage.add_argument("--channel", help="the topic concerned, origin/a/wis2/<centre-id>/...")
    outage.add_argument("--cancel", action="store_true", help="withdraw the notice of this --start and --end")
    outage.add_argument("--dry-run", action="store_true", help="print the validated event, send nothing")
    outage.add_argument("--host", help="connect here instead of the FQDN (the certificate must name it)")
    outage.add_argument("--mqtts-port", type=int, default=8883, help="the node's MQTTS port (default 8883)")
    outage.add_argument("--ca-file", help="trust this CA instead of the system's (a test node)")
    outage.set_defaults(func=cmd_notice)

    letters = commands.add_parser("dead-letters", help="list refused events with reasons, or send them back")
    letters.add_argument("action", choices=("list", "redrive"), help="list: show them; redrive: replay chosen ones")
    letters.add_argument("ids", nargs="*", help="with redrive: the message ids to replay (from list)")
    _stack_option(letters)
    letters.add_argument("--all", action="store_true", help="with redrive: every event in the queue")
    letters.add_argument(
        "--drop",
        action="store_true",
        help="with redrive: also remove events that cannot be replayed (object gone, deletions)",
    )
    letters.add_argument("--json", action="store_true", help="with list: print JSON")
    letters.set_defaults(func=cmd_dead_letters)

    stacks = commands.add_parser("stacks", help="print the stacks as a JSON matrix for CI")
    stacks.set_defaults(func=cmd_stacks)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SettingsError as err:  # a stack that cannot be used: the key is named
        print(err, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
