"""Invariants of Earshot's deployment, checked on what is actually applied: the manifests
that `kubectl kustomize` renders for each overlay (scripts/check-deploy renders them into
$EARSHOT_RENDERED_DIR first), plus the Dockerfile, the Compose file, the Grafana dashboard and
the alerting rules.

Each check is a function that returns the problems it finds in one object, so that the same
function runs on every rendered object and, in the `*_catches_*` tests, on a broken copy: a
check that cannot fail is a defect.
"""

import copy
import ipaddress
import json
import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RENDERED = Path(os.environ.get("EARSHOT_RENDERED_DIR", ROOT / "target" / "deploy"))
OVERLAYS = ["dev", "production"]
SERVICES = ["collector", "enricher", "router", "sink"]
TELEMETRY_PORT = 9464
PRIVATE_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8"]
SECRET_NAME = re.compile(r"TOKEN|PASSWORD|SECRET|DATABASE_URL|WEBHOOK", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# Loading


def rendered(overlay):
    path = RENDERED / f"{overlay}.yaml"
    if not path.exists():
        pytest.fail(f"{path} is missing: run scripts/check-deploy, which renders the overlays")
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def named(objects, kind, name):
    found = [o for o in by_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def config_map(objects, prefix):
    """A generated ConfigMap by its name before kustomize's hash suffix."""
    found = [
        o
        for o in by_kind(objects, "ConfigMap")
        if re.fullmatch(re.escape(prefix) + r"(-[a-z0-9]{10})?", o["metadata"]["name"])
    ]
    assert len(found) == 1, f"expected one ConfigMap {prefix}, found {len(found)}"
    return found[0]


def effective_config(objects, deployment):
    """Earshot's configuration as the service in `deployment` sees it: the mounted file, then
    the EARSHOT_<SECTION>__<KEY> variables of its envFrom ConfigMaps and env, in order."""
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    config_path = next(e["value"] for e in container["env"] if e["name"] == "EARSHOT_CONFIG")
    mount = next(
        m for m in container["volumeMounts"] if config_path.startswith(m["mountPath"] + "/")
    )
    file_name = config_path[len(mount["mountPath"]) + 1 :]
    maps = {o["metadata"]["name"]: o for o in by_kind(objects, "ConfigMap")}
    config = yaml.safe_load(maps[volumes[mount["name"]]["configMap"]["name"]]["data"][file_name])
    variables = {}
    for source in container.get("envFrom", []):
        variables.update(maps[source["configMapRef"]["name"]]["data"])
    for entry in container.get("env", []):
        if "value" in entry:
            variables[entry["name"]] = entry["value"]
    for name, value in variables.items():
        if not (name.startswith("EARSHOT_") and "__" in name):
            continue
        keys = name[len("EARSHOT_") :].lower().split("__")
        node = config
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = int(value) if value.isdigit() else value
    return config


def memory_bytes(quantity):
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    match = re.fullmatch(r"(\d+)([KMG]i?)?", str(quantity))
    assert match, f"unexpected memory quantity {quantity!r}"
    return int(match.group(1)) * units.get(match.group(2), 1)


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# ---------------------------------------------------------------------------------------------
# Checks: each returns the problems found, as strings naming the object.


def check_pod_security(name, pod):
    problems = []
    security = pod.get("securityContext", {})
    if security.get("runAsNonRoot") is not True:
        problems.append(f"{name}: pod securityContext.runAsNonRoot is not true")
    if security.get("runAsUser", 0) == 0:
        problems.append(f"{name}: pod securityContext.runAsUser is unset or root")
    if pod.get("automountServiceAccountToken") is not False:
        problems.append(f"{name}: the service account token is mounted")
    for container in pod["containers"]:
        context = container.get("securityContext", {})
        where = f"{name}/{container['name']}"
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation is not false")
        if context.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: readOnlyRootFilesystem is not true")
        if context.get("privileged"):
            problems.append(f"{where}: privileged")
        if "ALL" not in context.get("capabilities", {}).get("drop", []):
            problems.append(f"{where}: capabilities are not all dropped")
        resources = container.get("resources", {})
        for resource in ["cpu", "memory"]:
            limit = resources.get("limits", {}).get(resource)
            request = resources.get("requests", {}).get(resource)
            if limit is None:
                problems.append(f"{where}: no {resource} limit")
            elif str(limit) != str(request):
                problems.append(f"{where}: {resource} request {request} is not its limit {limit}")
        for entry in container.get("env", []):
            if SECRET_NAME.search(entry["name"]) and "value" in entry:
                problems.append(f"{where}: {entry['name']} is a literal, not a Secret reference")
    return problems


def check_service_deployment(objects, deployment):
    """Probes, grace period, memory budget and the image of one Earshot Deployment."""
    name = deployment["metadata"]["name"]
    component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    config = effective_config(objects, deployment)
    problems = check_pod_security(name, pod)
    if container.get("args") != [component]:
        problems.append(f"{name}: runs {container.get('args')}, not [{component!r}]")
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    listen_port = int(str(config["telemetry"]["listen"]).rsplit(":", 1)[1])
    if ports.get("telemetry") != listen_port:
        problems.append(f"{name}: port telemetry is not telemetry.listen's {listen_port}")
    for probe, path in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ]:
        http = container.get(probe, {}).get("httpGet")
        if not http:
            problems.append(f"{name}: no {probe}")
        elif http.get("path") != path or http.get("port") not in ("telemetry", listen_port):
            problems.append(f"{name}: {probe} is not GET {path} on the telemetry port")
    # Shutdown drains for up to drain_timeout_ms, then flushes for up to as long again.
    drain_secs = config["kafka"].get("drain_timeout_ms", 20000) / 1000
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace < 2 * drain_secs + 10:
        problems.append(
            f"{name}: terminationGracePeriodSeconds {grace} is not above twice"
            f" kafka.drain_timeout_ms ({drain_secs:g} s) plus 10 s"
        )
    # librdkafka's queues (and one fetch beyond them) must leave half the limit to the rest.
    # The consumer's queue counts compressed bytes: decompressed, lz4 records take about four
    # times as much.
    kafka = config["kafka"]
    queues = (
        kafka.get("producer_queue_max_kbytes", 65536) + 4 * kafka.get("consumer_queue_max_kbytes", 2048)
    ) * 1024 + kafka.get("max_message_bytes", 1048576) + 64 * 1024
    limit = memory_bytes(container["resources"]["limits"]["memory"])
    if queues > limit / 2:
        problems.append(
            f"{name}: librdkafka's queues ({queues >> 20} MiB) exceed half the memory limit"
            f" ({limit >> 20} MiB)"
        )
    return problems


def check_companions(objects, deployment):
    """The Service, PodDisruptionBudget and PodMonitor of one Deployment select its pods."""
    name = deployment["metadata"]["name"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    problems = []
    for kind, selector_of in [
        ("Service", lambda o: o["spec"].get("selector")),
        ("PodDisruptionBudget", lambda o: o["spec"].get("selector", {}).get("matchLabels")),
        ("PodMonitor", lambda o: o["spec"].get("selector", {}).get("matchLabels")),
    ]:
        matching = [o for o in by_kind(objects, kind) if selects(selector_of(o), labels)]
        if len(matching) != 1:
            problems.append(f"{name}: {len(matching)} {kind}s select its pods, not 1")
            continue
        if kind == "PodMonitor":
            endpoints = matching[0]["spec"].get("podMetricsEndpoints", [])
            if not any(e.get("port") in ports and e.get("path") == "/metrics" for e in endpoints):
                problems.append(f"{name}: its PodMonitor scrapes no /metrics on a named port")
        if kind == "PodDisruptionBudget":
            spec = matching[0]["spec"]
            if spec.get("maxUnavailable") is None and spec.get("minAvailable") is None:
                problems.append(f"{name}: its PodDisruptionBudget allows any disruption")
    return problems


def check_autoscaling(objects):
    """A Deployment has at most one autoscaler, never more replicas than partitions of the
    topics its group reads, and no `replicas` field for `kubectl apply` to reset."""
    problems = []
    targets = {}
    for hpa in by_kind(objects, "HorizontalPodAutoscaler"):
        targets.setdefault(hpa["spec"]["scaleTargetRef"]["name"], []).append("HPA")
    partitions = int(config_map(objects, "earshot-topics")["data"]["TOPIC_PARTITIONS"])
    for scaled in by_kind(objects, "ScaledObject"):
        target = scaled["spec"]["scaleTargetRef"]["name"]
        targets.setdefault(target, []).append("ScaledObject")
        deployment = named(objects, "Deployment", target)
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        group = f'{effective_config(objects, deployment)["kafka"]["group_prefix"]}-{component}'
        if scaled["spec"].get("maxReplicaCount", 100) > partitions:
            problems.append(f"{target}: KEDA may scale past the {partitions} partitions")
        for trigger in scaled["spec"]["triggers"]:
            query = trigger.get("metadata", {}).get("query", "")
            if trigger["type"] == "prometheus" and f'group="{group}"' not in query:
                problems.append(f"{target}: its lag query does not select group {group}")
            # Another installation's group of the same name must not count.
            namespace = scaled["metadata"].get("namespace")
            if trigger["type"] == "prometheus" and f'namespace="{namespace}"' not in query:
                problems.append(f"{target}: its lag query does not select namespace {namespace}")
    for target, scalers in targets.items():
        if len(scalers) > 1:
            problems.append(f"{target}: scaled by {' and '.join(scalers)}")
        if "replicas" in named(objects, "Deployment", target)["spec"]:
            problems.append(f"{target}: autoscaled but sets replicas")
    return problems


def check_router_egress(objects):
    """The router may reach DNS, Kafka and public HTTPS only."""
    router = named(objects, "Deployment", "earshot-router")
    labels = router["spec"]["template"]["metadata"]["labels"]
    policies = [
        p
        for p in by_kind(objects, "NetworkPolicy")
        if selects(p["spec"]["podSelector"].get("matchLabels"), labels)
        and "Egress" in p["spec"].get("policyTypes", [])
    ]
    if not policies:
        return ["earshot-router: no NetworkPolicy limits its egress"]
    problems = []
    for policy in policies:
        for i, rule in enumerate(policy["spec"].get("egress", [])):
            where = f"NetworkPolicy {policy['metadata']['name']} egress[{i}]"
            if not rule.get("ports"):
                problems.append(f"{where}: allows every port")
            if not rule.get("to"):
                problems.append(f"{where}: allows every destination")
            for peer in rule.get("to", []):
                block = peer.get("ipBlock")
                if not block:
                    continue
                excluded = [ipaddress.ip_network(e) for e in block.get("except", [])]
                for private in map(ipaddress.ip_network, PRIVATE_RANGES):
                    if ipaddress.ip_network(block["cidr"]).overlaps(private) and not any(
                        private.subnet_of(e) for e in excluded
                    ):
                        problems.append(f"{where}: reaches the private range {private}")
    return problems


# TopicsConfig's defaults in crates/core/src/config.rs.
DEFAULT_TOPICS = {
    "raw": "earshot.mentions.raw",
    "enriched": "earshot.mentions.enriched",
    "alerts": "earshot.alerts",
    "deadletter": "earshot.deadletter",
    "checkpoints": "earshot.collector.checkpoints",
    "source_health": "earshot.source.health",
    "router_state": "earshot.router.state",
}


def check_topics(objects, overlay):
    """The topic Job creates the topics the services use, replicated as the overlay needs."""
    data = config_map(objects, "earshot-topics")["data"]
    config = effective_config(objects, named(objects, "Deployment", "earshot-enricher"))
    problems = []
    if config["kafka"].get("create_topics", True):
        problems.append("kafka.create_topics is on: the Job provisions the topics")
    # Every topic a service uses, the defaults included (crates/core/src/config.rs), is
    # provisioned: the collector's checkpoints and the router's state compacted, the others
    # (source health too) as data topics.
    topics = {**DEFAULT_TOPICS, **config["topics"]}
    compacted = {topics["checkpoints"], topics["router_state"]}
    if sorted(data["TOPICS"].split()) != sorted(set(topics.values()) - compacted):
        problems.append(f"TOPICS {data['TOPICS']!r} are not the configured topics")
    if sorted(data.get("COMPACTED_TOPICS", "").split()) != sorted(compacted):
        problems.append("the checkpoint and router state topics are not provisioned compacted")
    replication, min_insync = int(data["TOPIC_REPLICATION_FACTOR"]), int(data["MIN_INSYNC_REPLICAS"])
    if overlay == "production" and (replication, min_insync) != (3, 2):
        problems.append(f"replication {replication}, min.insync.replicas {min_insync}; want 3 and 2")
    if min_insync > replication:
        problems.append("min.insync.replicas above the replication factor: every write would fail")
    if int(data["MAX_MESSAGE_BYTES"]) < config["kafka"].get("max_message_bytes", 1048576) + 65536:
        problems.append("MAX_MESSAGE_BYTES is below kafka.max_message_bytes + 64 KiB")
    return problems


def check_kafka_secrets_mounted(objects, deployment):
    """Files the Kafka settings name (CA, secret properties) are on mounted Secrets."""
    config = effective_config(objects, deployment)
    kafka = config["kafka"]
    files = list(kafka.get("secret_properties_file", {}).values())
    files += [v for k, v in kafka.get("properties", {}).items() if k.endswith(".location")]
    pod = deployment["spec"]["template"]["spec"]
    secret_volumes = {v["name"] for v in pod.get("volumes", []) if "secret" in v}
    mounts = [
        m["mountPath"] for m in pod["containers"][0].get("volumeMounts", []) if m["name"] in secret_volumes
    ]
    return [
        f"{deployment['metadata']['name']}: {path} is not on a mounted Secret"
        for path in files
        if not any(path.startswith(m + "/") for m in mounts)
    ]


# ---------------------------------------------------------------------------------------------
# The rendered overlays


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_is_a_hardened_deployment_with_probes_and_limits(overlay):
    objects = rendered(overlay)
    deployments = {d["metadata"]["name"]: d for d in by_kind(objects, "Deployment")}
    assert sorted(deployments) == [f"earshot-{s}" for s in SERVICES]
    images = {d["spec"]["template"]["spec"]["containers"][0]["image"] for d in deployments.values()}
    assert len(images) == 1, f"the services run different images: {images}"
    problems = []
    for deployment in deployments.values():
        problems += check_service_deployment(objects, deployment)
        problems += check_companions(objects, deployment)
        problems += check_kafka_secrets_mounted(objects, deployment)
    for job in by_kind(objects, "Job"):
        problems += check_pod_security(job["metadata"]["name"], job["spec"]["template"]["spec"])
    assert problems == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaling_egress_and_topics(overlay):
    objects = rendered(overlay)
    assert check_autoscaling(objects) + check_router_egress(objects) + check_topics(
        objects, overlay
    ) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_is_in_the_manifests(overlay):
    objects = rendered(overlay)
    assert by_kind(objects, "Secret") == [], "Secrets are created in the cluster, not shipped"
    for config_map_object in by_kind(objects, "ConfigMap"):
        for key, value in config_map_object.get("data", {}).items():
            if key.endswith(".yaml") and config_map_object["metadata"]["name"].startswith("earshot-config"):
                kafka = yaml.safe_load(value).get("kafka", {})
                assert "sasl.password" not in kafka.get("properties", {})


def test_production_talks_tls_and_scram_to_kafka():
    objects = rendered("production")
    for deployment in by_kind(objects, "Deployment"):
        kafka = effective_config(objects, deployment)["kafka"]
        assert kafka["properties"]["security.protocol"] == "SASL_SSL"
        assert kafka["properties"]["sasl.mechanism"].startswith("SCRAM-")
        assert "sasl.password" in kafka["secret_properties_file"]
    topics = config_map(objects, "earshot-topics")["data"]
    assert topics["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"


# ---------------------------------------------------------------------------------------------
# The checks catch what they are for (each on a broken copy of a rendered object)


def broken(objects, mutate):
    objects = copy.deepcopy(objects)
    mutate(objects)
    return objects


def first_container(objects, name):
    return named(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda o: first_container(o, "earshot-sink").pop("readinessProbe"), "no readinessProbe"),
        (
            lambda o: first_container(o, "earshot-sink")["livenessProbe"]["httpGet"].update(path="/readyz"),
            "livenessProbe is not GET /healthz",
        ),
        (
            lambda o: first_container(o, "earshot-sink")["resources"]["requests"].update(memory="64Mi"),
            "memory request 64Mi is not its limit",
        ),
        (
            lambda o: first_container(o, "earshot-sink")["resources"]["limits"].update(
                memory="128Mi"
            ),
            "librdkafka's queues",
        ),
        (
            lambda o: named(o, "Deployment", "earshot-sink")["spec"]["template"]["spec"].update(
                terminationGracePeriodSeconds=30
            ),
            "terminationGracePeriodSeconds 30",
        ),
        (
            lambda o: first_container(o, "earshot-sink")["securityContext"].update(
                readOnlyRootFilesystem=False
            ),
            "readOnlyRootFilesystem is not true",
        ),
        (
            lambda o: named(o, "Deployment", "earshot-sink")["spec"]["template"]["spec"][
                "securityContext"
            ].pop("runAsNonRoot"),
            "runAsNonRoot is not true",
        ),
        (
            lambda o: first_container(o, "earshot-sink")["env"].append(
                {"name": "DATABASE_URL", "value": "postgres://u:p@h/db"}
            ),
            "DATABASE_URL is a literal",
        ),
        (lambda o: first_container(o, "earshot-sink").update(args=["router"]), "runs ['router']"),
    ],
)
def test_the_deployment_checks_catch_a_broken_deployment(mutate, expected):
    objects = broken(rendered("production"), mutate)
    problems = check_service_deployment(objects, named(objects, "Deployment", "earshot-sink"))
    assert any(expected in p for p in problems), problems


def test_the_other_checks_catch_what_they_are_for():
    objects = rendered("production")

    def pdb_gone(o):
        o.remove(named(o, "PodDisruptionBudget", "earshot-router"))

    problems = check_companions(broken(objects, pdb_gone), named(objects, "Deployment", "earshot-router"))
    assert problems == ["earshot-router: 0 PodDisruptionBudgets select its pods, not 1"]

    def both_scalers(o):
        hpa = copy.deepcopy(named(o, "HorizontalPodAutoscaler", "earshot-collector"))
        hpa["metadata"]["name"] = "extra"
        hpa["spec"]["scaleTargetRef"]["name"] = "earshot-sink"
        o.append(hpa)

    assert "earshot-sink: scaled by HPA and ScaledObject" in check_autoscaling(broken(objects, both_scalers))

    def too_many(o):
        named(o, "ScaledObject", "earshot-router")["spec"]["maxReplicaCount"] = 50

    assert any("past the 12 partitions" in p for p in check_autoscaling(broken(objects, too_many)))

    def open_egress(o):
        policy = named(o, "NetworkPolicy", "earshot-router")
        policy["spec"]["egress"][-1]["to"][0]["ipBlock"]["except"].remove("10.0.0.0/8")

    assert any("10.0.0.0/8" in p for p in check_router_egress(broken(objects, open_egress)))

    def low_replication(o):
        config_map(o, "earshot-topics")["data"]["TOPIC_REPLICATION_FACTOR"] = "1"

    assert any("want 3 and 2" in p for p in check_topics(broken(objects, low_replication), "production"))

    def ca_not_mounted(o):
        pod = named(o, "Deployment", "earshot-enricher")["spec"]["template"]["spec"]
        pod["containers"][0]["volumeMounts"] = [
            m for m in pod["containers"][0]["volumeMounts"] if m["name"] != "kafka-ca"
        ]

    broken_objects = broken(objects, ca_not_mounted)
    assert check_kafka_secrets_mounted(
        broken_objects, named(broken_objects, "Deployment", "earshot-enricher")
    ) == ["earshot-enricher: /etc/kafka-ca/ca.crt is not on a mounted Secret"]


# ---------------------------------------------------------------------------------------------
# Image, Compose, dashboard and rules


def test_the_image_is_multi_stage_and_runs_as_a_user():
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    stages = [line for line in lines if line.upper().startswith("FROM ")]
    assert len(stages) >= 2, "a build stage and a runtime stage"
    runtime = lines[lines.index(stages[-1]) :]
    users = [line.split()[1] for line in runtime if line.upper().startswith("USER ")]
    assert users and all(int(u.split(":")[0]) > 0 for u in users), users
    assert 'ENTRYPOINT ["/usr/local/bin/earshot"]' in runtime
    assert any("--locked" in line for line in lines), "the image builds from Cargo.lock"
    # librdkafka links OpenSSL 3 dynamically (TLS, SCRAM); webhooks and Kafka TLS verify
    # against the CA bundle.
    installs = " ".join(line for line in runtime if "apt-get install" in line or line.startswith("&&"))
    assert "libssl3" in installs and "ca-certificates" in installs, installs


def test_the_compose_services_are_hardened_and_complete():
    compose = yaml.safe_load((ROOT / "deploy" / "compose" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"kafka", "postgres", *SERVICES} <= set(services)
    assert "broker,controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    for name in SERVICES:
        service = services[name]
        assert service["command"] == [name]
        assert int(service["user"].split(":")[0]) > 0
        assert service["read_only"] is True
        assert "ALL" in service["cap_drop"]
        assert int(service["stop_grace_period"].rstrip("s")) >= 50
        for variable, value in service.get("environment", {}).items():
            if SECRET_NAME.search(variable):
                assert "${" in value, f"{name}: {variable} is a literal in compose.yaml"


def exported_metrics():
    source = (ROOT / "crates" / "core" / "src" / "telemetry.rs").read_text()
    names = set(re.findall(r'"(earshot_[a-z_]+)"', source))
    assert len(names) >= 10, names
    return names | {f"{h}_{s}" for h in histograms() for s in ("bucket", "sum", "count")}


def histograms():
    source = (ROOT / "crates" / "core" / "src" / "telemetry.rs").read_text()
    return set(re.findall(r'HistogramOpts::new\(\s*"(earshot_[a-z_]+)"', source))


def metric_names(expression):
    return set(re.findall(r"\b(earshot_[a-z_]+)", expression))


def rules():
    document = yaml.safe_load(
        (ROOT / "deploy" / "kubernetes" / "base" / "monitoring" / "prometheus-rules.yaml").read_text()
    )
    return [rule for group in document["spec"]["groups"] for rule in group["rules"]]


def test_the_dashboard_and_rules_use_only_exported_metrics():
    exported = exported_metrics()
    dashboard = json.loads(
        (ROOT / "deploy" / "kubernetes" / "base" / "monitoring" / "grafana-dashboard.json").read_text()
    )
    expressions = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    expressions += [rule["expr"] for rule in rules()]
    assert len(expressions) > 20
    used = set().union(*map(metric_names, expressions))
    assert used - exported == set(), f"not exported by crates/core/src/telemetry.rs: {used - exported}"
    # Every exported counter, gauge and histogram is on the dashboard or in a rule: a new
    # metric in telemetry.rs needs a panel.
    missing = {n for n in exported if n not in histograms() and not n.endswith(("_sum", "_count"))} - used
    assert missing == set(), f"add a panel to grafana-dashboard.json for {sorted(missing)}"
    assert metric_names('rate(earshot_made_up_total[5m])') - exported == {"earshot_made_up_total"}


def test_the_alerting_rules_cover_the_pipeline():
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert {
        "EarshotConsumerLagGrowing",
        "EarshotDeadLetterRate",
        "EarshotIngestQuiet",
        "EarshotReceiverFailing",
    } <= alerts
    for rule in rules():
        if "alert" in rule:
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]


# ---------------------------------------------------------------------------------------------
# The topic Job's script against real Kafka


def kafka_tool(tool, *args):
    result = subprocess.run(
        [str(Path(os.environ["EARSHOT_KAFKA_BIN"]) / tool), "--bootstrap-server",
         os.environ["KAFKA_BOOTSTRAP_SERVERS"], *args],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_topic_script_provisions_topics_on_kafka(tmp_path):
    """create-topics.sh, as the Job runs it, against the Kafka of scripts/kafka: the topics get
    their partitions and settings, the checkpoint topic is compacted, and a second run (a Job
    retry) changes nothing and does not fail."""
    if not (os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("EARSHOT_KAFKA_BIN")):
        pytest.fail("needs Kafka and its tools: run scripts/check-deploy, which provides both")
    run = f"deploytest-{uuid.uuid4().hex[:8]}"
    data, deadletter, checkpoints = f"{run}.raw", f"{run}.deadletter", f"{run}.checkpoints"
    environment = {
        **os.environ,
        "KAFKA_BIN": os.environ["EARSHOT_KAFKA_BIN"],
        "TMPDIR": str(tmp_path),
        "TOPICS": f"{data} {deadletter}",
        "DEADLETTER_TOPIC": deadletter,
        "COMPACTED_TOPICS": checkpoints,
        "TOPIC_PARTITIONS": "3",
        "TOPIC_REPLICATION_FACTOR": "1",
        "MIN_INSYNC_REPLICAS": "1",
        "RETENTION_MS": "3600000",
        "DEADLETTER_RETENTION_MS": "7200000",
        "MAX_MESSAGE_BYTES": "1114112",
    }
    script = ROOT / "deploy" / "kubernetes" / "base" / "create-topics.sh"
    for attempt in (1, 2):
        result = subprocess.run(["/bin/sh", str(script)], env=environment, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, f"run {attempt}:\n{result.stdout}\n{result.stderr}"
    described = kafka_tool("kafka-topics.sh", "--describe", "--topic", f"{re.escape(run)}\\..*")
    partitions = dict(re.findall(r"Topic: (\S+)\s+TopicId: \S+\s+PartitionCount: (\d+)", described))
    assert partitions == {data: "3", deadletter: "3", checkpoints: "3"}, described

    def settings(topic):
        out = kafka_tool("kafka-configs.sh", "--describe", "--entity-type", "topics",
                         "--entity-name", topic)
        return dict(re.findall(r"\b([a-z.]+)=(\S+) sensitive=false", out))

    expected = {"min.insync.replicas": "1", "max.message.bytes": "1114112"}
    assert settings(data) == {**expected, "cleanup.policy": "delete", "retention.ms": "3600000"}
    assert settings(deadletter) == {**expected, "cleanup.policy": "delete", "retention.ms": "7200000"}
    assert settings(checkpoints) == {**expected, "cleanup.policy": "compact"}

