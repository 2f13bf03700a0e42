"""python -m wis2node: render | local | demo | check | cost | stacks | verify | dead-letters | notice (anywhere),
and agent | certificate | publisher-credential | retention | reporter | watcher | republish | gdc-check (on the
node)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from wis2node.errors import SettingsError

# Imports live in the commands: on the node, the tools (agent, certificate, ...) run with only
# requirements-node.txt installed, so this module must not pull in pydantic, Jinja2 or PyYAML.


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
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with LocalNode(settings, Path(args.workdir), ports) as node:
        print(f"local node for {settings.stack} running; details in {node.workdir / 'node.json'}")
        print(json.dumps({k: v for k, v in node.description().items() if k != "publisher"}, indent=2))
        try:
            while not stop.wait(1):
                pass
        except KeyboardInterrupt:
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
        files = [find_stack(name) for name in args.stacks] if args.stacks else stack_files()
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
    assumptions = Assumptions(files_per_day=args.files_per_day, mb_per_file=args.mb_per_file,
                              subscribers=args.subscribers)
    print(report(estimate(settings, assumptions)))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Audit a deployed node, read-only, and say what is wrong, one line per check."""
    from wis2node.stackfile import find_stack
    from wis2node.verify import Endpoints, report, verify

    settings = find_stack(args.stack).settings()
    endpoints = None if args.no_network else Endpoints(
        host=args.host or settings.fqdn, https_port=args.https_port, mqtts_port=args.mqtts_port,
        ca_file=args.ca_file)
    checks = verify(settings, endpoints)
    print(report(checks, args.json))
    return 0 if all(check.ok for check in checks) else 1


def cmd_stacks(args: argparse.Namespace) -> int:
    """The stacks in stacks/ the workflows preview and deploy, as a GitHub Actions matrix.

    Example stacks (in a reserved example domain) are left out: the tests evaluate them, and no
    workflow ever deploys them.
    """
    from wis2node.stackfile import stack_files

    entries = [{"stack": f.stack, "production": f.config.get("wis2-node:environment") == "production"}
               for f in stack_files() if not f.is_example]
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
    outcome = deadletters.redrive(session.client("s3"), sqs, bucket, queue_url,
                                  None if args.all else set(args.ids), args.drop)
    for item, what in outcome:
        print(f"{item.message_id}  {item.key or '-'}: {what}")
    return 0 if all(what == "replayed" or what.startswith("dropped") for _, what in outcome) else 1


def cmd_notice(args: argparse.Namespace) -> int:
    """Publish (or withdraw) a planned-outage notice from the node's own broker, as its publisher."""
    import boto3

    from wis2node import notice
    from wis2node.endpoints import PUBLISHER_USER
    from wis2node.stackfile import find_stack

    settings = find_stack(args.stack).settings()
    event = notice.build(settings.centre_id, args.start, args.end, args.message, channel=args.channel or "",
                         cancel=args.cancel)
    if args.dry_run:
        print(json.dumps(event, indent=2))
        return 0
    password = boto3.session.Session(region_name=settings.region).client("ssm").get_parameter(
        Name=settings.parameter_name("publisher-password"), WithDecryption=True)["Parameter"]["Value"]
    try:
        reason = notice.send(event, args.host or settings.fqdn, args.mqtts_port, PUBLISHER_USER, password,
                             ca_file=args.ca_file)
    except (OSError, ConnectionError) as err:
        print(f"not sent: {err}", file=sys.stderr)
        return 1
    if reason != 0:
        print(f"the broker refused the notice (MQTT reason code {reason})", file=sys.stderr)
        return 1
    what = "withdrawal of notice " + event["data"]["ref"] if args.cancel else "notice " + event["id"]
    print(f"{what} published on monitor/a/wis2/{settings.centre_id}")
    return 0


def _node_tool(module: str, config: str) -> int:
    """The tools that run on the node itself, each reading the node's rendered node.json."""
    import importlib

    return importlib.import_module(f"wis2node.{module}").main(config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wis2node", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    render = commands.add_parser("render", help="write the VM's rendered files for review")
    render.add_argument("--stack", required=True)
    render.add_argument("--out", default="build/rendered")
    render.add_argument("--data-volume-id", default="vol-0123456789abcdef0")
    render.set_defaults(func=cmd_render)

    local = commands.add_parser("local", help="run the broker and HTTPS server on loopback")
    local.add_argument("--stack", required=True)
    local.add_argument("--workdir", required=True)
    for name in ("mqtts", "https", "mqtt_local", "websockets"):
        local.add_argument(f"--{name.replace('_', '-')}-port", type=int, default=0, dest=f"{name}_port",
                           help="default: a free port")
    local.set_defaults(func=cmd_local)

    demo = commands.add_parser("demo", help="publish, receive and download a sample file locally")
    demo.add_argument("--stack", default="aq-examplemet-test")
    demo.set_defaults(func=cmd_demo)

    for name, module, summary in (("agent", "agent", "run the node agent (on the VM)"),
                                  ("certificate", "certificate", "get and install the TLS certificate"),
                                  ("publisher-credential", "credential", "set the publisher account from SSM"),
                                  ("retention", "retention", "remove published files past retention"),
                                  ("reporter", "reporter", "report certificate days left and a heartbeat"),
                                  ("watcher", "watcher", "turn what WIS2 says about the node into alerts"),
                                  ("republish", "republish", "announce every discovery record again"),
                                  ("gdc-check", "gdc", "compare the GDCs' records of the centre with the node's")):
        tool = commands.add_parser(name, help=summary)
        tool.add_argument("config", nargs="?", default="/etc/wis2/node.json")
        tool.set_defaults(func=lambda args, module=module: _node_tool(module, args.config))

    check = commands.add_parser("check", help="validate stack files offline (default: all of stacks/)")
    check.add_argument("stacks", nargs="*", help="stack names or stack file paths")
    check.set_defaults(func=cmd_check)

    cost = commands.add_parser("cost", help="itemised monthly estimate of what a stack deploys (provisional)")
    cost.add_argument("--stack", required=True)
    cost.add_argument("--files-per-day", type=int, default=1000, help="files the centre publishes a day")
    cost.add_argument("--mb-per-file", type=float, default=0.1, help="their average size in MB")
    cost.add_argument("--subscribers", type=int, default=0,
                      help="downloaders of every file besides the Global Caches (partners, users)")
    cost.set_defaults(func=cmd_cost)

    audit = commands.add_parser("verify", help="audit a deployed node (read-only)")
    audit.add_argument("--stack", required=True)
    audit.add_argument("--json", action="store_true", help="print the checks as JSON")
    audit.add_argument("--no-network", action="store_true", help="AWS checks only, no connection to the node")
    audit.add_argument("--host", help="connect here instead of the FQDN (the certificate must still name it)")
    audit.add_argument("--https-port", type=int, default=443)
    audit.add_argument("--mqtts-port", type=int, default=8883)
    audit.add_argument("--ca-file", help="trust this CA instead of the system's (a test node)")
    audit.set_defaults(func=cmd_verify)

    outage = commands.add_parser("notice", help="publish a planned data outage notice (a WIS2 monitoring event)")
    outage.add_argument("--stack", required=True)
    outage.add_argument("--start", default="..", help="ISO 8601 with a time zone, e.g. 2026-01-05T14:00:00Z "
                                                     "(default: already started)")
    outage.add_argument("--end", required=True, help="ISO 8601 with a time zone")
    outage.add_argument("--message", required=True, help="what will be missing, for the people who use the data")
    outage.add_argument("--channel", help="the topic concerned, origin/a/wis2/<centre-id>/...")
    outage.add_argument("--cancel", action="store_true", help="withdraw the notice of this --start and --end")
    outage.add_argument("--dry-run", action="store_true", help="print the validated event, send nothing")
    outage.add_argument("--host", help="connect here instead of the FQDN (the certificate must name it)")
    outage.add_argument("--mqtts-port", type=int, default=8883)
    outage.add_argument("--ca-file", help="trust this CA instead of the system's (a test node)")
    outage.set_defaults(func=cmd_notice)

    letters = commands.add_parser("dead-letters", help="list refused events with reasons, or send them back")
    letters.add_argument("action", choices=("list", "redrive"), help="list: show them; redrive: replay chosen ones")
    letters.add_argument("ids", nargs="*", help="with redrive: the message ids to replay (from list)")
    letters.add_argument("--stack", required=True, help="the stack whose node to look at")
    letters.add_argument("--all", action="store_true", help="with redrive: every event in the queue")
    letters.add_argument("--drop", action="store_true",
                         help="with redrive: also remove events that cannot be replayed (object gone, deletions)")
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
