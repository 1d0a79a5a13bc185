"""RBAC of least privilege: exactly what the operator and Kopf use, each rule explained.

All-namespaces mode has one ClusterRole; namespaced mode (watchNamespaces) grants the
namespaced rules through a Role per namespace and keeps only cluster-scoped reads (Nodes,
CRDs, namespaces) in a ClusterRole. In both, a Role in the release's namespace grants the
calibration ConfigMap by name, and nothing else there. No wildcard anywhere, and delete
only on the children the operator must remove while their LlamaDeployment lives on.
"""

from __future__ import annotations

from typing import Any

import chartkit
import pytest
import yaml

from llama_operator import api
from llama_operator.clients import k8s
from llama_operator.planning import config

Rule = tuple[str, str, tuple[str, ...]]  # (apiGroup, resource, verbs)

NAMESPACED_RULES: list[Rule] = [
    ("llamaops.dev", "llamadeployments", ("list", "watch", "patch")),
    ("llamaops.dev", "llamadeployments/status", ("patch",)),
    ("llamaops.dev", "llamadeployments/scale", ("patch",)),
    ("keda.sh", "scaledobjects", ("create", "patch", "delete")),
    ("autoscaling", "horizontalpodautoscalers", ("create", "patch", "delete")),
    ("gateway.networking.k8s.io", "httproutes", ("create", "patch", "delete")),
    ("discovery.k8s.io", "endpointslices", ("list", "watch")),
    ("", "pods", ("list",)),
    ("llamaops.dev", "llamadeployments/finalizers", ("update",)),
    ("apps", "deployments", ("list", "watch", "create", "patch", "delete")),
    ("", "services", ("list", "watch", "create", "patch", "delete")),
    ("", "configmaps", ("create", "patch", "delete")),
    ("networking.k8s.io", "networkpolicies", ("create", "patch", "delete")),
    ("", "secrets", ("get",)),
    ("", "events", ("create",)),
]
CLUSTER_RULES: list[Rule] = [
    ("", "nodes", ("list", "watch")),
    ("apiextensions.k8s.io", "customresourcedefinitions", ("list", "watch")),
]
NAMESPACES_RULE: Rule = ("", "namespaces", ("list", "watch"))
CLUSTER_PEERING_RULE: Rule = ("kopf.dev", "clusterkopfpeerings", ("list", "watch", "patch"))
PEERING_RULE: Rule = ("kopf.dev", "kopfpeerings", ("list", "watch", "patch"))
ALL_RULES = [*NAMESPACED_RULES, *CLUSTER_RULES]
# The one object of the release's own namespace the operator writes: the ConfigMap of
# KV-cache corrections (config's calibration section, <fullname>-calibration), granted by
# name in a Role of that name there.
CALIBRATION = f"{chartkit.RELEASE}-calibration"


def calibration_rules(name: str) -> list[dict[str, Any]]:
    return [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [name],
            "verbs": ["get", "patch", "create"],
        }
    ]


def is_calibration(role: dict[str, Any]) -> bool:
    return bool(role["kind"] == "Role" and role["metadata"]["name"].endswith("-calibration"))


def rules(role: dict[str, Any]) -> list[Rule]:
    flat: list[Rule] = []
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                flat.append((group, resource, tuple(rule["verbs"])))
    return flat


def operator_roles(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The operator's own roles (not the users' llamadeployment-viewer/-editor), but the
    calibration Role (by resource name; ``test_calibration_role``)."""
    roles = [*chartkit.of_kind(objects, "ClusterRole"), *chartkit.of_kind(objects, "Role")]
    return [
        role
        for role in roles
        if "llamadeployment-" not in role["metadata"]["name"] and not is_calibration(role)
    ]


def watch_roles(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Roles of the watched namespaces (namespaced mode)."""
    return [role for role in chartkit.of_kind(objects, "Role") if not is_calibration(role)]


def aggregated_into(role: dict[str, Any]) -> set[str]:
    prefix = "rbac.authorization.k8s.io/aggregate-to-"
    labels: dict[str, str] = role["metadata"]["labels"]
    return {
        key.removeprefix(prefix)
        for key, value in labels.items()
        if key.startswith(prefix) and value == "true"
    }


DANGEROUS_VERBS = {"delete", "deletecollection", "escalate", "bind", "impersonate"}
# The deletes the operator needs, all of its own children that must go while their
# LlamaDeployment lives on (the rest go through owner references): the ScaledObject or
# HPA of a previous spec.autoscaling.engine, so two scalers never act on the same
# endpoint; a canary's Deployment, Service and licence ConfigMap once it is promoted or
# rolled back; the HTTPRoute when spec.traffic.gatewayRef is removed; the NetworkPolicy
# when spec.network.policy is false. Never deletecollection, never Secrets, Pods or
# anything else a user made.
DELETABLE = {
    ("keda.sh", "scaledobjects"),
    ("autoscaling", "horizontalpodautoscalers"),
    ("apps", "deployments"),
    ("", "services"),
    ("", "configmaps"),
    ("gateway.networking.k8s.io", "httproutes"),
    ("networking.k8s.io", "networkpolicies"),
}


@pytest.mark.parametrize("name", sorted(chartkit.VALUE_SETS))
def test_no_wildcards_and_delete_only_of_the_operators_children(name: str) -> None:
    objects = chartkit.render(chartkit.VALUE_SETS[name])
    for role in [*chartkit.of_kind(objects, "ClusterRole"), *chartkit.of_kind(objects, "Role")]:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], (role["metadata"]["name"], rule)
            assert "nonResourceURLs" not in rule
            assert "resourceNames" not in rule or is_calibration(role)
    for role in operator_roles(objects):
        for group, resource, verbs in rules(role):
            allowed = {"delete"} if (group, resource) in DELETABLE else set()
            assert not (DANGEROUS_VERBS - allowed) & set(verbs), (group, resource)


def test_cluster_role_all_namespaces() -> None:
    objects = chartkit.render()
    role = chartkit.find(objects, "ClusterRole", "llama-operator")
    assert rules(role) == ALL_RULES
    assert not watch_roles(objects)
    assert [b["metadata"]["name"] for b in chartkit.of_kind(objects, "RoleBinding")] == [
        CALIBRATION
    ]


def test_cluster_role_with_peering() -> None:
    objects = chartkit.render(chartkit.VALUE_SETS["peering"])
    role = chartkit.find(objects, "ClusterRole", "llama-operator")
    assert rules(role) == [*NAMESPACED_RULES, *CLUSTER_RULES, CLUSTER_PEERING_RULE]


def test_rules_cover_what_the_handlers_watch() -> None:
    # The custom resource and the children and nodes that handlers.py indexes; the kinds
    # k8s.py applies (server-side apply: create and patch).
    granted = {(group, resource): verbs for group, resource, verbs in ALL_RULES}
    assert {"list", "watch", "patch"} <= set(granted[(api.GROUP, api.PLURAL)])
    for key in (("apps", "deployments"), ("", "services"), ("", "nodes")):
        assert {"list", "watch"} <= set(granted[key])
    for kind in ("Deployment", "Service"):
        plural, _ = k8s.PLURALS[kind]
        group = "apps" if kind == "Deployment" else ""
        assert {"create", "patch"} <= set(granted[(group, plural)])


def test_delete_is_granted_on_exactly_the_deletable_children() -> None:
    deletable = {(group, resource) for group, resource, verbs in ALL_RULES if "delete" in verbs}
    assert deletable == DELETABLE


def test_canary_pods_are_listed_never_watched_or_read() -> None:
    # Listed by label selector only while a canary exists; no watch on every pod.
    granted = {(group, resource): verbs for group, resource, verbs in ALL_RULES}
    assert granted[("", "pods")] == ("list",)
    plural, namespaced = k8s.PLURALS["Pod"]
    assert (plural, namespaced) == ("pods", True)


def test_httproutes_are_applied_and_deleted_like_the_scalers() -> None:
    granted = {(group, resource): verbs for group, resource, verbs in ALL_RULES}
    assert granted[("gateway.networking.k8s.io", "httproutes")] == ("create", "patch", "delete")
    plural, namespaced = k8s.PLURALS["HTTPRoute"]
    assert (plural, namespaced) == ("httproutes", True)


def test_network_policies_are_applied_and_deleted_never_read() -> None:
    # Server-side apply (PATCH, create when new) and a DELETE when spec.network.policy is
    # false; never read, listed or watched, like the licence ConfigMap.
    granted = {(group, resource): verbs for group, resource, verbs in ALL_RULES}
    assert granted[("networking.k8s.io", "networkpolicies")] == ("create", "patch", "delete")
    plural, namespaced = k8s.PLURALS["NetworkPolicy"]
    assert (plural, namespaced) == ("networkpolicies", True)


def test_secrets_are_read_by_name_only() -> None:
    # The Hugging Face token and the API key Secret: GET by name, never listed or watched,
    # never written.
    granted = {(group, resource): verbs for group, resource, verbs in ALL_RULES}
    assert granted[("", "secrets")] == ("get",)


@pytest.mark.parametrize("name", sorted(chartkit.VALUE_SETS))
def test_no_list_or_watch_on_secrets_or_network_policies(name: str) -> None:
    objects = chartkit.render(chartkit.VALUE_SETS[name])
    for role in operator_roles(objects):
        for group, resource, verbs in rules(role):
            if (group, resource) in {("", "secrets"), ("networking.k8s.io", "networkpolicies")}:
                assert not {"list", "watch"} & set(verbs), (role["metadata"]["name"], resource)


def _comment_of(lines: list[str], resource: str) -> str:
    """The comment block right above the rule of ``resource``."""
    [index] = [i for i, line in enumerate(lines) if line == f"  resources: [{resource}]"]
    start = index - 1  # the "- apiGroups:" line
    while lines[start - 1].startswith("# "):
        start -= 1
    return " ".join(line.removeprefix("# ") for line in lines[start : index - 1])


def test_secrets_and_network_policy_rules_say_why() -> None:
    lines = (chartkit.CHART / "templates/rbac/_rules.tpl").read_text(encoding="utf-8")
    secrets = _comment_of(lines.splitlines(), "secrets")
    for words in ("spec.model.tokenSecretRef", "spec.auth.apiKeySecretRef", "by name only"):
        assert words in secrets
    assert "never used" in secrets
    policies = _comment_of(lines.splitlines(), "networkpolicies")
    assert "spec.network.policy is false" in policies


def test_run_against_a_cluster_lists_the_charts_cluster_role() -> None:
    # docs/how-to/run-against-a-cluster.md: the all-namespaces ClusterRole of
    # manifests/install.yaml, comments included, plus the namespaces rule of -n mode.
    doc = (chartkit.ROOT / "docs/how-to/run-against-a-cluster.md").read_text(encoding="utf-8")
    start = doc.index("```yaml\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n")
    listing = doc[start + len("```yaml\n") : doc.index("\n```", start + 1)]
    install = (chartkit.ROOT / "manifests/install.yaml").read_text(encoding="utf-8")
    role_start = install.index("kind: ClusterRole\nmetadata:\n  name: llama-operator\n")
    role = install[role_start : install.index("\n---", role_start)]
    listed = listing[listing.index("rules:\n") :]
    installed = role[role.index("rules:\n") :]
    assert listed.startswith(installed + "\n# Framework (Kopf, -n mode only)")
    documented = rules(yaml.safe_load(listing))
    assert documented == [*ALL_RULES, NAMESPACES_RULE]


def test_namespaced_mode() -> None:
    objects = chartkit.release_objects(chartkit.render(chartkit.VALUE_SETS["namespaced"]))
    cluster_role = chartkit.find(objects, "ClusterRole", "llama-operator")
    # Nodes are cluster-scoped, Kopf watches CRDs and follows the named namespaces.
    assert rules(cluster_role) == [*CLUSTER_RULES, NAMESPACES_RULE]
    roles = watch_roles(objects)
    bindings = [
        b for b in chartkit.of_kind(objects, "RoleBinding") if b["metadata"]["name"] != CALIBRATION
    ]
    assert sorted(role["metadata"]["namespace"] for role in roles) == ["ai", "team-b"]
    assert sorted(binding["metadata"]["namespace"] for binding in bindings) == ["ai", "team-b"]
    for role in roles:
        assert rules(role) == NAMESPACED_RULES
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "llama-operator",
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "llama-operator", "namespace": chartkit.NAMESPACE}
        ]
    args = chartkit.container(objects)["args"]
    assert args[:4] == ["-n", "ai", "-n", "team-b"]
    assert "--all-namespaces" not in args


def test_namespaced_mode_with_peering() -> None:
    objects = chartkit.release_objects(chartkit.render(chartkit.VALUE_SETS["peering-namespaced"]))
    cluster_role = chartkit.find(objects, "ClusterRole", "llama-operator")
    assert rules(cluster_role) == [*CLUSTER_RULES, NAMESPACES_RULE]
    for role in watch_roles(objects):
        assert rules(role) == [*NAMESPACED_RULES, PEERING_RULE]


@pytest.mark.parametrize("name", sorted(chartkit.VALUE_SETS))
def test_calibration_role(name: str) -> None:
    # In every mode: get, patch and create of exactly the calibration ConfigMap of the
    # operator config, in the release's namespace only (a create through server-side apply
    # is authorised with its name, so resourceNames holds for it too).
    objects = chartkit.release_objects(chartkit.render(chartkit.VALUE_SETS[name]))
    (configmap,) = [
        o
        for o in chartkit.of_kind(objects, "ConfigMap")
        if o["metadata"]["name"].endswith("-config")
    ]
    settings = config.parse(yaml.safe_load(next(iter(configmap["data"].values()))))
    named = settings.calibration.configMap
    assert settings.calibration.namespace == chartkit.NAMESPACE
    role = chartkit.find(objects, "Role", named)
    assert role["metadata"]["namespace"] == chartkit.NAMESPACE
    assert role["rules"] == calibration_rules(named)
    binding = chartkit.find(objects, "RoleBinding", named)
    assert binding["metadata"]["namespace"] == chartkit.NAMESPACE
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": named,
    }
    (workload,) = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    account = workload["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": chartkit.NAMESPACE}
    ]


def test_cluster_role_binding() -> None:
    binding = chartkit.find(chartkit.release_objects(chartkit.render()), "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == "llama-operator"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "llama-operator", "namespace": chartkit.NAMESPACE}
    ]


def test_rbac_can_be_left_out() -> None:
    objects = chartkit.render({"rbac": {"create": False, "userRoles": False}})
    kinds = {obj["kind"] for obj in objects}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def test_user_roles_aggregate_into_the_builtin_roles() -> None:
    objects = chartkit.render()
    viewer = chartkit.find(objects, "ClusterRole", "llama-operator-llamadeployment-viewer")
    editor = chartkit.find(objects, "ClusterRole", "llama-operator-llamadeployment-editor")
    assert aggregated_into(viewer) == {"view", "edit", "admin"}
    assert aggregated_into(editor) == {"edit", "admin"}
    assert rules(viewer) == [
        ("llamaops.dev", "llamadeployments", ("get", "list", "watch")),
        ("llamaops.dev", "llamadeployments/status", ("get",)),
    ]
    editor_rules = {(group, resource): set(verbs) for group, resource, verbs in rules(editor)}
    assert editor_rules[("llamaops.dev", "llamadeployments/scale")] == {"get", "update", "patch"}
    crud = editor_rules[("llamaops.dev", "llamadeployments")]
    assert {"create", "update", "patch", "delete"} <= crud
    assert editor_rules[("llamaops.dev", "llamadeployments/status")] == {"get"}


RULE_FILES = ["templates/rbac/_rules.tpl", "templates/rbac/user-roles.yaml"]


@pytest.mark.parametrize("path", RULE_FILES)
def test_every_rule_is_commented_in_the_template(path: str) -> None:
    lines = (chartkit.CHART / path).read_text(encoding="utf-8").splitlines()
    starts = [index for index, line in enumerate(lines) if line.startswith("- apiGroups:")]
    assert starts
    for index in starts:
        assert lines[index - 1].startswith("# "), f"{path}:{index + 1} has no comment"


def test_rules_are_commented_in_install_yaml() -> None:
    # The comments travel with the rules into manifests/install.yaml.
    lines = (chartkit.ROOT / "manifests" / "install.yaml").read_text(encoding="utf-8").splitlines()
    starts = [index for index, line in enumerate(lines) if line.startswith("- apiGroups:")]
    assert starts
    for index in starts:
        assert lines[index - 1].startswith("# ")


def test_framework_and_application_rules_are_told_apart() -> None:
    text = (chartkit.CHART / "templates/rbac/_rules.tpl").read_text(encoding="utf-8")
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("- apiGroups:"):
            # The first line of the rule's comment block names who needs it.
            block_start = index - 1
            while block_start > 0 and lines[block_start - 1].startswith("# "):
                block_start -= 1
            assert lines[block_start].startswith(("# Application", "# Framework")), line
