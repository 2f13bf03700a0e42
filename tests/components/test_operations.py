"""Operations as the program declares them: alarms and their actions, health checks, alerts,
the dashboard, unattended upgrades, the pinned image, and what survives a replaced instance."""

from __future__ import annotations

import json

import pulumi
import pytest

from tests.pulumi_harness import DOC_IP, Deployment, run_program, user_data_files
from wis2node.alarms import HEALTH_CHECK_ALARMS, NODE_ALARMS
from wis2node.stackfile import StackFile, find_stack

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
INSTANCE = "aws:ec2/instance:Instance"


def alarms(deployment: Deployment) -> dict[str, dict]:
    return {a.name.removeprefix("monitoring-"): a.inputs for a in deployment.of_type(ALARM)}


def test_every_stack_declares_the_alarms_with_their_actions(stack_file: StackFile, deployment: Deployment):
    settings = stack_file.settings()
    found = alarms(deployment)
    assert set(found) == set(NODE_ALARMS) | set(HEALTH_CHECK_ALARMS)  # what `verify` expects to find
    assert len(found) == 19
    assert found["cpu-high"]["threshold"] == settings.cpu_alarm_percent
    assert found["memory-high"]["threshold"] == settings.memory_alarm_percent
    assert found["disk-data-high"]["dimensions"]["path"] == "/srv/wis2"
    assert found["disk-root-high"]["threshold"] == settings.disk_alarm_percent
    assert "arn:aws:automate:eu-west-1:ec2:recover" in found["system-check-failed"]["alarmActions"]
    assert "arn:aws:automate:eu-west-1:ec2:reboot" in found["instance-check-failed"]["alarmActions"]
    # renewal overdue, as the reporter judges it from the certificate's lifetime (tests/wis2node/test_reporter.py)
    assert found["certificate-https-expiring"]["metricName"] == "CertificateRenewalOverdue"
    assert found["certificate-https-expiring"]["threshold"] == 1
    assert found["certificate-https-expiring"]["comparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert found["certificate-renewal-failed"]["metricName"] == "CertificateRenewalFailed"
    assert found["certificate-renewal-failed"]["treatMissingData"] == "notBreaching"
    assert found["heartbeat-missing"]["treatMissingData"] == "breaching"
    assert found["certificate-mqtts-expiring"]["treatMissingData"] == "breaching"  # no figure: nothing served
    assert {
        found[f"{p}-down"]["dimensions"].get("exe") or found[f"{p}-down"]["dimensions"].get("pattern")
        for p in ("broker", "web", "agent")
    } == {"mosquitto", "nginx", "wis2node.node agent"}
    for name, alarm in found.items():
        assert alarm["alarmActions"], name  # every alarm tells someone
        assert alarm["dimensions"], name
        if not name.endswith("unreachable"):
            assert "region" not in alarm, name  # the node's own region


def test_wis2_alarms_and_the_nodes_way_to_the_alert_topic(stack_file: StackFile, deployment: Deployment):
    settings = stack_file.settings()
    found = alarms(deployment)
    events, relay = found["wis2-events"], found["wis2-relay-low"]
    assert events["metricName"] == "WIS2EventsAlarming" and events["threshold"] == 1
    assert relay["metricName"] == "BrokersRelaying" and relay["threshold"] == 2
    assert relay["comparisonOperator"] == "LessThanThreshold" and relay["period"] * relay["evaluationPeriods"] == 1800
    assert relay["treatMissingData"] == events["treatMissingData"] == "notBreaching", "no figure while silent"
    deaf = found["wis2-watcher-disconnected"]
    assert deaf["metricName"] == "GlobalBrokersConnected" and deaf["comparisonOperator"] == "LessThanThreshold"
    assert deaf["threshold"] == 1 and deaf["period"] * deaf["evaluationPeriods"] == 1800
    assert deaf["treatMissingData"] == "breaching", "a watcher that reports nothing is as deaf as a disconnected one"
    parameter = deployment.named("monitoring-alerts-topic").inputs
    assert parameter["name"] == settings.parameter_name("alerts-topic") and parameter["type"] == "String"
    assert f"arn:aws:sns:{settings.region}:123456789012:monitoring-alerts-{settings.region}" in json.dumps(
        parameter["value"]
    )
    policy = json.loads(deployment.named("monitoring-node-alerts").inputs["policy"])
    assert {s["Sid"]: s["Action"] for s in policy["Statement"]} == {
        "Wis2Alerts": "sns:Publish",
        "Wis2AlertsKey": ["kms:GenerateDataKey*", "kms:Decrypt"],
        "Wis2AlertsTopicName": "ssm:GetParameter",
    }
    assert all(s["Resource"] != "*" for s in policy["Statement"]), "the topic, its key, its parameter only"
    dashboard = json.loads(deployment.one("aws:cloudwatch/dashboard:Dashboard").inputs["dashboardBody"])
    titles = [w["properties"]["title"] for w in dashboard["widgets"]]
    assert "WIS2 events about the centre" in titles and "Global Brokers relaying (alarm under 2)" in titles
    relaying = next(w for w in dashboard["widgets"] if w["properties"]["title"].startswith("Global Brokers relaying"))
    assert [m[1] for m in relaying["properties"]["metrics"]] == ["BrokersRelaying", "GlobalBrokersConnected"]


def test_health_checks_watch_both_endpoints_from_us_east_1(stack_file: StackFile, deployment: Deployment):
    checks = {c.inputs["type"]: c.inputs for c in deployment.of_type("aws:route53/healthCheck:HealthCheck")}
    fqdn = stack_file.config["wis2-node:fqdn"]
    assert checks["HTTPS"]["fqdn"] == fqdn and checks["HTTPS"]["resourcePath"] == "/healthz"
    assert checks["HTTPS"]["port"] == 443 and checks["HTTPS"]["enableSni"] is True
    assert checks["TCP"]["fqdn"] == fqdn and checks["TCP"]["port"] == 8883
    found = alarms(deployment)
    for name in ("https-unreachable", "mqtts-unreachable"):
        assert found[name]["region"] == "us-east-1" and found[name]["namespace"] == "AWS/Route53"
        topic = found[name]["alarmActions"][0]
        assert topic.split(":")[3] == "us-east-1", "alarms notify the topic of their own region"


def test_one_topic_per_region_with_every_address_subscribed(stack_file: StackFile, deployment: Deployment):
    topics = deployment.of_type("aws:sns/topic:Topic")
    assert sorted(t.inputs["region"] for t in topics) == ["eu-west-1", "us-east-1"]
    subscriptions = deployment.of_type("aws:sns/topicSubscription:TopicSubscription")
    emails = stack_file.config["wis2-node:alertEmails"]
    assert sorted((s.inputs["region"], s.inputs["endpoint"]) for s in subscriptions) == sorted(
        (region, email) for region in ("eu-west-1", "us-east-1") for email in emails
    )
    assert all(s.inputs["protocol"] == "email" for s in subscriptions)


def test_dashboard_shows_the_vital_signs(deployment: Deployment):
    body = json.loads(deployment.one("aws:cloudwatch/dashboard:Dashboard").inputs["dashboardBody"])
    titles = [w["properties"]["title"] for w in body["widgets"]]
    assert titles == [
        "CPU %",
        "Memory %",
        "Disk %",
        "Processes",
        "Certificate days left",
        "Reachable from outside (1 = yes)",
        "WIS2 events about the centre",
        "Global Brokers relaying (alarm under 2)",
        "Relay latency (s) and share copied by the Global Caches (%)",
        "Discovery records missing / stale / unknown in the GDCs",
    ]


def test_the_node_reports_what_the_alarms_watch(stack_file: StackFile, deployment: Deployment):
    files = user_data_files(deployment.one(INSTANCE).user_data)
    agent = json.loads(files["/etc/wis2/cloudwatch-agent.json"])
    collected = agent["metrics"]["metrics_collected"]
    assert collected["mem"]["measurement"] == ["mem_used_percent"]
    assert collected["disk"]["resources"] == ["/", "/srv/wis2"]
    assert [p.get("exe") or p.get("pattern") for p in collected["procstat"]] == [
        "mosquitto",
        "nginx",
        "wis2node.node agent",
    ]
    assert agent["metrics"]["namespace"] == alarms(deployment)["memory-high"]["namespace"]
    assert "wis2node.node reporter" in files["/etc/systemd/system/wis2-reporter.service"].decode()
    assert b"OnUnitActiveSec=5min" in files["/etc/systemd/system/wis2-reporter.timer"]


def test_security_updates_reboot_in_the_stack_window(stack_file: StackFile):
    """The reboot time travels in the runtime parameter (a change never replaces the VM); the user
    data's apt file turns automatic reboots off until the node has written that time
    (tests/wis2node/test_operator_verbs.py: the node writes it, and apt reads it)."""
    from tests.components.test_tls import parameters

    deployment = run_program(stack_file.stack, {**stack_file.config, "wis2-node:rebootTime": "04:15"})
    runtime = json.loads(parameters(deployment)["runtime-config"]["plain_value"])
    assert runtime["upgrades"] == {"reboot_time": "04:15"}
    instance = deployment.one(INSTANCE)
    files = user_data_files(instance.user_data)
    upgrades = files["/etc/apt/apt.conf.d/52wis2-unattended-upgrades"].decode()
    assert 'APT::Periodic::Unattended-Upgrade "1";' in upgrades
    assert 'Unattended-Upgrade::Automatic-Reboot "false";' in upgrades
    assert "04:15" not in instance.user_data and "Automatic-Reboot-Time" not in upgrades
    node = json.loads(files["/etc/wis2/node.json"])
    assert node["upgrades"] == {"apt_file": "/etc/apt/apt.conf.d/53wis2-reboot-time"}
    assert "/etc/apt/apt.conf.d " in files["/etc/systemd/system/wis2-config.service"].decode()


def test_the_image_found_first_stays_until_one_is_pinned(stack_file: StackFile, deployment: Deployment):
    assert deployment.one(INSTANCE).options["ignore_changes"] == ["ami"]
    pinned = run_program(stack_file.stack, {**stack_file.config, "wis2-node:imageId": "ami-0fedcba9876543210"})
    instance = pinned.one(INSTANCE)
    assert instance.options["ignore_changes"] == [] and instance.inputs["ami"] == "ami-0fedcba9876543210"


def test_what_a_replaced_instance_keeps(stack_file: StackFile, deployment: Deployment):
    production = stack_file.settings().is_production
    instance = deployment.one(INSTANCE)
    assert instance.options["delete_before_replace"] is True and instance.inputs["userDataReplaceOnChange"]
    assert "ebsBlockDevices" not in instance.inputs, "state is on a volume of its own, not the instance's"
    volume = deployment.one("aws:ebs/volume:Volume")
    assert volume.options["protect"] is production
    assert deployment.one("aws:ec2/eip:Eip").options["protect"] is production
    files = user_data_files(instance.user_data)
    broker = files["/etc/mosquitto/mosquitto.conf"].decode()
    assert "persistence_location /srv/wis2/mosquitto/" in broker  # persistent sessions
    assert "certfile /srv/wis2/tls/fullchain.pem" in broker  # installed certificates
    setup = files["/usr/local/sbin/wis2-setup"].decode()
    assert 'ln -s "/srv/wis2/letsencrypt" "$certbot_dir"' in setup  # certbot's state
    assert "certbot_dir=/etc/letsencrypt" in setup
    records = {r.inputs["type"]: r for r in deployment.of_type("aws:route53/record:Record")}
    assert records["A"].inputs["records"] == [DOC_IP]  # the Elastic IP, whichever instance holds it


@pytest.mark.parametrize(
    "key,value",
    [
        ("wis2-node:cpuAlarmPercent", 0),
        ("wis2-node:memoryAlarmPercent", 101),
        ("wis2-node:diskAlarmPercent", 250),
        ("wis2-node:alertEmails", ["ops@"]),
        ("wis2-node:rebootTime", "3am"),
    ],
)
def test_bad_monitoring_settings_are_refused_naming_the_key(key, value):
    stack = find_stack("aq-examplemet-prod")
    with pytest.raises(pulumi.RunError) as refused:
        run_program(stack.stack, {**stack.config, key: value})
    assert key in str(refused.value) and repr(value) in str(refused.value)
