"""Monitoring: the node watches itself and tells the centre before a Global Broker notices.

Alarms on CPU, memory and disks (thresholds from the stack), failed status checks (recover /
reboot the instance), a stopped broker, web server or agent, a certificate close to expiry, a
missing heartbeat (no internet), and two Route53 health checks from outside (HTTPS /healthz and
TCP 8883), whose metrics and alarms live in us-east-1. Alerts go to an SNS topic per region with
the stack's e-mail subscriptions. A dashboard shows the vital signs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.encryption import alerts_key
from components.settings import Platform
from wis2node.alarms import HEALTH_CHECK_REGION, alarm_name, with_runbook
from wis2node.payload import DATA_ROOT, HOST_METRIC_NAMESPACE, METRIC_NAMESPACE
from wis2node.settings import NodeSettings

PROCESSES = (("broker", {"exe": "mosquitto"}), ("web", {"exe": "nginx"}), ("agent", {"pattern": "wis2node.node agent"}))


@dataclass(frozen=True)
class MonitoringArgs:
    settings: NodeSettings
    platform: Platform
    instance_id: pulumi.Input[str]
    instance_role_name: pulumi.Input[str] | None = None  # the node's tools publish WIS2 alerts to the topic


class Monitoring(pulumi.ComponentResource):
    """SNS topics and subscriptions, alarms with their actions, health checks and a dashboard."""

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("wis2-node:index:Monitoring", name, None, opts)
        settings = args.settings
        tags = settings.resource_tags
        child = pulumi.ResourceOptions(parent=self)
        region = settings.region

        # One topic per region used: CloudWatch alarms can only notify a topic of their region.
        # Each encrypted with the stack's own key (components/encryption.py says why not aws/sns).
        self.keys = {
            r: alerts_key(f"{name}-alerts-key-{r}", r, settings, args.platform, child)
            for r in dict.fromkeys([region, HEALTH_CHECK_REGION])
        }
        self.topics = {
            r: aws.sns.Topic(f"{name}-alerts-{r}", region=r, kms_master_key_id=key.arn, tags=tags, opts=child)
            for r, key in self.keys.items()
        }
        self.subscriptions = [
            aws.sns.TopicSubscription(
                f"{name}-alerts-{r}-{index}", region=r, topic=topic.arn, protocol="email", endpoint=address, opts=child
            )
            for r, topic in self.topics.items()
            for index, address in enumerate(settings.alert_emails)
        ]
        alerts = [self.topics[region].arn]

        def alarm(label: str, description: str, **kwargs: Any) -> aws.cloudwatch.MetricAlarm:
            kwargs.setdefault("alarm_actions", alerts)
            kwargs.setdefault("ok_actions", alerts)
            return aws.cloudwatch.MetricAlarm(
                f"{name}-{label}",
                name=alarm_name(settings.stack, label),
                alarm_description=with_runbook(description, label),
                tags=tags,
                opts=child,
                **kwargs,
            )

        instance = {"InstanceId": args.instance_id}
        self.alarms: dict[str, aws.cloudwatch.MetricAlarm] = {
            "cpu-high": alarm(
                "cpu-high",
                f"CPU above {settings.cpu_alarm_percent}% for 15 minutes",
                namespace="AWS/EC2",
                metric_name="CPUUtilization",
                dimensions=instance,
                statistic="Average",
                period=300,
                evaluation_periods=3,
                comparison_operator="GreaterThanThreshold",
                threshold=settings.cpu_alarm_percent,
            ),
            "memory-high": alarm(
                "memory-high",
                f"Memory use above {settings.memory_alarm_percent}% for 15 minutes",
                namespace=HOST_METRIC_NAMESPACE,
                metric_name="mem_used_percent",
                dimensions=instance,
                statistic="Average",
                period=300,
                evaluation_periods=3,
                comparison_operator="GreaterThanThreshold",
                threshold=settings.memory_alarm_percent,
            ),
            "system-check-failed": alarm(
                "system-check-failed",
                "AWS's system status check failed: the instance is recovered on new hardware",
                namespace="AWS/EC2",
                metric_name="StatusCheckFailed_System",
                dimensions=instance,
                statistic="Maximum",
                period=60,
                evaluation_periods=2,
                comparison_operator="GreaterThanOrEqualToThreshold",
                threshold=1,
                alarm_actions=[f"arn:aws:automate:{region}:ec2:recover", *alerts],
            ),
            "instance-check-failed": alarm(
                "instance-check-failed",
                "The instance status check failed: the instance is rebooted",
                namespace="AWS/EC2",
                metric_name="StatusCheckFailed_Instance",
                dimensions=instance,
                statistic="Maximum",
                period=60,
                evaluation_periods=3,
                comparison_operator="GreaterThanOrEqualToThreshold",
                threshold=1,
                alarm_actions=[f"arn:aws:automate:{region}:ec2:reboot", *alerts],
            ),
            # No heartbeat: the node cannot reach AWS (its internet access), or it is down.
            "heartbeat-missing": alarm(
                "heartbeat-missing",
                "No heartbeat from the node for 15 minutes: internet access lost or node down",
                namespace=METRIC_NAMESPACE,
                metric_name="Heartbeat",
                dimensions={"Stack": settings.stack},
                statistic="SampleCount",
                period=300,
                evaluation_periods=3,
                comparison_operator="LessThanThreshold",
                threshold=1,
                treat_missing_data="breaching",
            ),
            # A step of the node that keeps failing (its own unit retries it): software, credentials,
            # the CloudWatch agent, the agent. The reporter counts them; the journal says why.
            "units-failing": alarm(
                "units-failing",
                "A node unit failed or keeps restarting for 15 minutes: "
                "journalctl -u <unit> on the node (the reporter's log names it)",
                namespace=METRIC_NAMESPACE,
                metric_name="UnitsFailing",
                dimensions={"Stack": settings.stack},
                statistic="Minimum",
                period=300,
                evaluation_periods=3,
                comparison_operator="GreaterThanThreshold",
                threshold=0,
            ),
        }
        for label, path in (("root", "/"), ("data", DATA_ROOT)):
            self.alarms[f"disk-{label}-high"] = alarm(
                f"disk-{label}-high",
                f"{path} more than {settings.disk_alarm_percent}% full",
                namespace=HOST_METRIC_NAMESPACE,
                metric_name="disk_used_percent",
                dimensions={**instance, "path": path, "fstype": "ext4"},
                statistic="Maximum",
                period=300,
                evaluation_periods=1,
                comparison_operator="GreaterThanThreshold",
                threshold=settings.disk_alarm_percent,
            )
        for label, finder in PROCESSES:
            self.alarms[f"{label}-down"] = alarm(
                f"{label}-down",
                f"No {next(iter(finder.values()))} process running for 2 minutes",
                namespace=HOST_METRIC_NAMESPACE,
                metric_name="procstat_lookup_pid_count",
                dimensions={**instance, **finder, "pid_finder": "native"},
                statistic="Minimum",
                period=60,
                evaluation_periods=2,
                comparison_operator="LessThanThreshold",
                threshold=1,
                treat_missing_data="breaching",
            )
        # Renewal overdue (wis2node/node/reporter.py): under a quarter of the certificate's lifetime left, or
        # under certificateAlarmDays if lower; never on a healthy renewal cycle, whatever the lifetime.
        for endpoint in ("https", "mqtts"):
            self.alarms[f"certificate-{endpoint}-expiring"] = alarm(
                f"certificate-{endpoint}-expiring",
                f"Renewal of the certificate served for {endpoint} is overdue: under a quarter of its lifetime "
                f"left, or under {settings.certificate_alarm_days} days if that is lower",
                namespace=METRIC_NAMESPACE,
                metric_name="CertificateRenewalOverdue",
                dimensions={"Stack": settings.stack, "Endpoint": endpoint},
                statistic="Maximum",
                period=3600,
                evaluation_periods=1,
                comparison_operator="GreaterThanOrEqualToThreshold",
                threshold=1,
                treat_missing_data="breaching",
            )
        self.alarms["certificate-renewal-failed"] = alarm(
            "certificate-renewal-failed",
            "The last attempt to renew the node's certificate failed "
            "(journalctl -u certbot -u wis2-certificate on the node)",
            namespace=METRIC_NAMESPACE,
            metric_name="CertificateRenewalFailed",
            dimensions={"Stack": settings.stack},
            statistic="Maximum",
            period=3600,
            evaluation_periods=1,
            comparison_operator="GreaterThanOrEqualToThreshold",
            threshold=1,
            treat_missing_data="notBreaching",
        )

        # What WIS2 says about the node (wis2node/node/watcher.py, wis2node/node/gdc.py) reaches the region's topic.
        # The node's tools find the topic through a parameter (the instance exists before the topic, so
        # its user data cannot name it) and may publish to it, through its key, and nothing else.
        topic, key = self.topics[region], self.keys[region]
        self.alerts_parameter = aws.ssm.Parameter(
            f"{name}-alerts-topic",
            name=settings.parameter_name("alerts-topic"),
            type="String",
            value=topic.arn,
            description="The alert topic the node's WIS2 watcher and GDC check publish to",
            tags=settings.resource_tags,
            opts=child,
        )
        self.node_alerts_policy: aws.iam.RolePolicy | None = None
        if args.instance_role_name is not None:
            self.node_alerts_policy = aws.iam.RolePolicy(
                f"{name}-node-alerts",
                role=args.instance_role_name,
                policy=pulumi.Output.all(topic.arn, key.arn, self.alerts_parameter.arn).apply(
                    lambda arns: json.dumps(node_alerts_policy(*arns))
                ),
                opts=child,
            )
        self._wis2_alarms(settings, alarm)

        # From outside: what a Global Broker or Cache sees.
        self.health_checks = {
            "https": aws.route53.HealthCheck(
                f"{name}-https",
                type="HTTPS",
                fqdn=settings.fqdn,
                port=443,
                resource_path="/healthz",
                enable_sni=True,
                request_interval=30,
                failure_threshold=3,
                tags=tags,
                opts=child,
            ),
            "mqtts": aws.route53.HealthCheck(
                f"{name}-mqtts",
                type="TCP",
                fqdn=settings.fqdn,
                port=8883,
                request_interval=30,
                failure_threshold=3,
                tags=tags,
                opts=child,
            ),
        }
        outside = [self.topics[HEALTH_CHECK_REGION].arn]
        for label, check in self.health_checks.items():
            self.alarms[f"{label}-unreachable"] = alarm(
                f"{label}-unreachable",
                f"Route53 health checkers cannot reach {settings.fqdn} ({label})",
                region=HEALTH_CHECK_REGION,
                namespace="AWS/Route53",
                metric_name="HealthCheckStatus",
                dimensions={"HealthCheckId": check.id},
                statistic="Minimum",
                period=60,
                evaluation_periods=3,
                comparison_operator="LessThanThreshold",
                threshold=1,
                alarm_actions=outside,
                ok_actions=outside,
            )

        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=f"{settings.stack}-wis2-node",
            dashboard_body=pulumi.Output.all(args.instance_id, *(c.id for c in self.health_checks.values())).apply(
                lambda ids: json.dumps(_dashboard(settings, ids[0], ids[1:]))
            ),
            opts=child,
        )
        self.register_outputs(
            {"dashboard": self.dashboard.dashboard_name, "alarms": [a.name for a in self.alarms.values()]}
        )

    def _wis2_alarms(self, settings: NodeSettings, alarm: Callable[..., aws.cloudwatch.MetricAlarm]) -> None:
        """What WIS2 says about the node (wis2node/node/watcher.py, wis2node/node/gdc.py), as alarms."""
        stack = {"Stack": settings.stack}
        self.alarms["wis2-events"] = alarm(
            "wis2-events",
            "A WIS2 Global Service reported an ERROR or CRITICAL event about the centre "
            "(the alert before this one names it; README: WIS2 alerts)",
            namespace=METRIC_NAMESPACE,
            metric_name="WIS2EventsAlarming",
            dimensions=stack,
            statistic="Maximum",
            period=300,
            evaluation_periods=1,
            comparison_operator="GreaterThanOrEqualToThreshold",
            threshold=1,
            treat_missing_data="notBreaching",
        )
        # BrokersRelaying is put only while the node publishes: no data is no alarm.
        self.alarms["wis2-relay-low"] = alarm(
            "wis2-relay-low",
            "Fewer than two Global Brokers relayed the node's messages for 30 minutes while it published",
            namespace=METRIC_NAMESPACE,
            metric_name="BrokersRelaying",
            dimensions=stack,
            statistic="Maximum",
            period=300,
            evaluation_periods=6,
            comparison_operator="LessThanThreshold",
            threshold=2,
            treat_missing_data="notBreaching",
        )
        # The watcher itself: connected to no Global Broker (it would hear nothing WIS2 says), or
        # reporting nothing (stopped, hung, restarting over and over): as deaf either way.
        self.alarms["wis2-watcher-disconnected"] = alarm(
            "wis2-watcher-disconnected",
            "The node's WIS2 watcher has been connected to no Global Broker, or has "
            "reported nothing, for 30 minutes: WIS2's alerts about the centre cannot "
            "reach you",
            namespace=METRIC_NAMESPACE,
            metric_name="GlobalBrokersConnected",
            dimensions=stack,
            statistic="Maximum",
            period=300,
            evaluation_periods=6,
            comparison_operator="LessThanThreshold",
            threshold=1,
            treat_missing_data="breaching",
        )


def node_alerts_policy(topic_arn: str, key_arn: str, parameter_arn: str) -> dict[str, Any]:
    """The node may publish to its alert topic, through the topic's key, and read the topic's name."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Wis2Alerts", "Effect": "Allow", "Action": "sns:Publish", "Resource": topic_arn},
            {
                "Sid": "Wis2AlertsKey",
                "Effect": "Allow",
                "Action": ["kms:GenerateDataKey*", "kms:Decrypt"],
                "Resource": key_arn,
            },
            {"Sid": "Wis2AlertsTopicName", "Effect": "Allow", "Action": "ssm:GetParameter", "Resource": parameter_arn},
        ],
    }


def _dashboard(settings: NodeSettings, instance_id: str, health_check_ids: list[str]) -> dict[str, Any]:
    """The node's vital signs on one page."""
    region = settings.region

    def widget(title: str, metrics: list[list[Any]], x: int, y: int, widget_region: str = region) -> dict[str, Any]:
        return {
            "type": "metric",
            "x": x,
            "y": y,
            "width": 8,
            "height": 6,
            "properties": {
                "title": title,
                "region": widget_region,
                "metrics": metrics,
                "view": "timeSeries",
                "stat": "Average",
                "period": 300,
            },
        }

    return {
        "widgets": [
            widget("CPU %", [["AWS/EC2", "CPUUtilization", "InstanceId", instance_id]], 0, 0),
            widget("Memory %", [[HOST_METRIC_NAMESPACE, "mem_used_percent", "InstanceId", instance_id]], 8, 0),
            widget(
                "Disk %",
                [
                    [
                        HOST_METRIC_NAMESPACE,
                        "disk_used_percent",
                        "InstanceId",
                        instance_id,
                        "path",
                        path,
                        "fstype",
                        "ext4",
                    ]
                    for path in ("/", DATA_ROOT)
                ],
                16,
                0,
            ),
            widget(
                "Processes",
                [
                    [
                        HOST_METRIC_NAMESPACE,
                        "procstat_lookup_pid_count",
                        "InstanceId",
                        instance_id,
                        *sum(finder.items(), ()),
                        "pid_finder",
                        "native",
                    ]
                    for _, finder in PROCESSES
                ],
                0,
                6,
            ),
            widget(
                "Certificate days left",
                [
                    [METRIC_NAMESPACE, "CertificateDaysLeft", "Stack", settings.stack, "Endpoint", e]
                    for e in ("https", "mqtts")
                ],
                8,
                6,
            ),
            widget(
                "Reachable from outside (1 = yes)",
                [["AWS/Route53", "HealthCheckStatus", "HealthCheckId", h] for h in health_check_ids],
                16,
                6,
                HEALTH_CHECK_REGION,
            ),
            *_wis2_widgets(settings, widget),
        ]
    }


def _wis2_widgets(settings: NodeSettings, widget: Callable[..., dict[str, Any]]) -> list[dict[str, Any]]:
    """The node as WIS2 sees it (wis2node/node/watcher.py, wis2node/node/gdc.py), next to the host view."""
    from wis2node.node.watcher import catalogue
    from wis2node.node.wis2events import SEVERITIES

    stack = ("Stack", settings.stack)
    events = widget(
        "WIS2 events about the centre",
        [[METRIC_NAMESPACE, "WIS2Events", *stack, "Severity", s, {"stat": "Sum"}] for s in SEVERITIES],
        0,
        12,
    )
    relays = widget(
        "Global Brokers relaying (alarm under 2)",
        [
            [METRIC_NAMESPACE, "BrokersRelaying", *stack, {"stat": "Minimum"}],
            [METRIC_NAMESPACE, "GlobalBrokersConnected", *stack, {"stat": "Minimum", "label": "heard by the watcher"}],
        ],
        8,
        12,
    )
    flow = widget(
        "Relay latency (s) and share copied by the Global Caches (%)",
        [
            [METRIC_NAMESPACE, "RelayLatency", *stack, {"stat": "Maximum"}],
            [METRIC_NAMESPACE, "CacheCopiedShare", *stack, {"yAxis": "right"}],
        ],
        16,
        12,
    )
    gdcs = [f"{row['operator']}-global-discovery-catalogue" for row in catalogue("global-discovery-catalogue")]
    records = widget(
        "Discovery records missing / stale / unknown in the GDCs",
        [
            [METRIC_NAMESPACE, metric, *stack, "Catalogue", gdc, {"stat": "Maximum", "period": 86400}]
            for metric in ("GDCRecordsMissing", "GDCRecordsStale", "GDCRecordsUnknown")
            for gdc in gdcs
        ],
        0,
        18,
    )
    return [events, relays, flow, records]
