"""The uninstall hook: ``helm uninstall`` releases the operator's finalizer.

``templates/uninstall.yaml`` renders, as ``post-delete`` hooks only, a ServiceAccount, RBAC
allowing exactly list, get and patch on llamadeployments (a ClusterRole, or a Role per
watched namespace), and a Job running ``llama-operator release-finalizers --wait 60`` in
a pod as locked down as the operator's. ``uninstall.releaseFinalizers: false`` (or
``rbac.create: false``) leaves all of it out, and ``manifests/`` never holds it: a plain
``kubectl apply`` would run the Job at install.
"""

from __future__ import annotations

from typing import Any

import chartkit
import pytest
import yaml

import pss
from llama_operator import api
from llama_operator.cli import arguments, cluster
from llama_operator.runtime import finalizers

HOOK = "llama-operator-release-finalizers"
HOOK_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Job"}
RULES = [{"apiGroups": [api.GROUP], "resources": [api.PLURAL], "verbs": ["list", "get", "patch"]}]


def hooks(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The post-delete hooks (not the peering objects, post-install hooks)."""
    return [
        obj
        for obj in objects
        if chartkit.is_hook(obj) and obj["metadata"]["annotations"]["helm.sh/hook"] == "post-delete"
    ]


def job(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return chartkit.find(hooks(objects), "Job")


def weight(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["annotations"]["helm.sh/hook-weight"])


@pytest.mark.parametrize("name", sorted(chartkit.VALUE_SETS))
def test_renders_by_default_as_post_delete_hooks_only(name: str) -> None:
    objects = chartkit.render(chartkit.VALUE_SETS[name])
    ours = [obj for obj in objects if obj["metadata"]["name"].endswith("-release-finalizers")]
    assert {obj["kind"] for obj in ours} >= {"ServiceAccount", "Job"}
    assert hooks(objects) == ours
    for obj in ours:
        annotations = obj["metadata"]["annotations"]
        assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
        # Argo CD maps helm.sh/hook: post-delete to PostDelete itself (2.10 and later); an
        # argocd.argoproj.io/hook annotation would make it ignore the Helm one.
        assert not [key for key in annotations if key.startswith("argocd.argoproj.io/")]
        assert obj["metadata"]["labels"]["app.kubernetes.io/component"] == "uninstall"


@pytest.mark.parametrize(
    "values",
    [
        {"uninstall": {"releaseFinalizers": False}},
        # Without rbac.create the release makes no RBAC, so neither does the hook.
        {"rbac": {"create": False, "userRoles": False}},
        {"uninstall": {"releaseFinalizers": False}, "watchNamespaces": ["ai"]},
    ],
)
def test_not_rendered_when_disabled(values: dict[str, Any]) -> None:
    objects = chartkit.render(values)
    assert hooks(objects) == []
    assert not [obj for obj in objects if "release-finalizers" in obj["metadata"]["name"]]


def test_schema_refuses_a_typo() -> None:
    stderr = chartkit.refused({"uninstall": {"releaseFinalizer": False}})
    assert "releaseFinalizer" in stderr


def test_rbac_is_exactly_list_get_patch_on_llamadeployments() -> None:
    found = hooks(chartkit.render())
    assert sorted(obj["kind"] for obj in found) == sorted(HOOK_KINDS - {"Role", "RoleBinding"})
    role = chartkit.find(found, "ClusterRole", HOOK)
    assert role["rules"] == RULES
    binding = chartkit.find(found, "ClusterRoleBinding", HOOK)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": HOOK,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": HOOK, "namespace": chartkit.NAMESPACE}
    ]
    account = chartkit.find(found, "ServiceAccount", HOOK)
    assert account["metadata"]["namespace"] == chartkit.NAMESPACE


@pytest.mark.parametrize("name", ["namespaced", "peering-namespaced"])
def test_namespaced_mode_grants_only_the_watched_namespaces(name: str) -> None:
    found = hooks(chartkit.render(chartkit.VALUE_SETS[name]))
    assert not chartkit.of_kind(found, "ClusterRole")
    assert not chartkit.of_kind(found, "ClusterRoleBinding")
    roles = [obj for obj in chartkit.of_kind(found, "Role") if obj["metadata"]["name"] == HOOK]
    bindings = chartkit.of_kind(found, "RoleBinding")
    assert sorted(role["metadata"]["namespace"] for role in roles) == ["ai", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["ai", "team-b"]
    for role in roles:
        assert role["rules"] == RULES
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": HOOK,
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": HOOK, "namespace": chartkit.NAMESPACE}
        ]
    args = job(found)["spec"]["template"]["spec"]["containers"][0]["args"]
    namespaces = ["--namespace", "ai", "--namespace", "team-b"]
    assert args == ["release-finalizers", *namespaces, "--wait", "60"]


@pytest.mark.parametrize("name", sorted(chartkit.VALUE_SETS))
def test_rbac_exists_before_the_job(name: str) -> None:
    found = hooks(chartkit.render(chartkit.VALUE_SETS[name]))
    the_job = chartkit.find(found, "Job")
    others = [obj for obj in found if obj is not the_job]
    assert others
    assert all(weight(obj) < weight(the_job) for obj in others)
    # The bindings after what they bind.
    for binding in [obj for obj in found if obj["kind"].endswith("Binding")]:
        assert weight(binding) > weight(chartkit.find(found, "ServiceAccount"))
        assert all(
            weight(binding) > weight(role) for role in found if role["kind"].endswith("Role")
        )


def test_job_runs_the_command_in_the_operator_image() -> None:
    objects = chartkit.render(chartkit.VALUE_SETS["custom"])
    spec = job(objects)["spec"]
    assert 0 < spec["backoffLimit"] <= 3
    # Helm waits for a hook Job up to its --timeout, 5 minutes by default.
    assert 60 < spec["activeDeadlineSeconds"] < 300
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "llm-ops-release-finalizers"
    [container] = pod["containers"]
    operator = chartkit.container(objects)
    operator_pod = chartkit.workload(objects)["spec"]["template"]["spec"]
    assert container["image"] == operator["image"]
    assert container["imagePullPolicy"] == operator["imagePullPolicy"]
    assert container["command"] == ["llama-operator"]  # the entrypoint is `... run`
    assert container["args"] == ["release-finalizers", "--wait", "60"]
    # The same lock-down as the operator's pod, and where it may run.
    assert pod["securityContext"] == operator_pod["securityContext"]
    assert container["securityContext"] == operator["securityContext"]
    for field in ("imagePullSecrets", "nodeSelector", "tolerations", "affinity"):
        assert pod[field] == operator_pod[field], field
    assert container["resources"] == operator["resources"]


def test_the_cli_accepts_the_jobs_arguments() -> None:
    for name in ("default", "namespaced"):
        [container] = job(chartkit.render(chartkit.VALUE_SETS[name]))["spec"]["template"]["spec"][
            "containers"
        ]
        args = arguments.parser().parse_args(container["args"])
        assert args.func is cluster.cmd_release_finalizers
        assert args.wait == 60
        assert args.namespaces == chartkit.VALUE_SETS[name].get("watchNamespaces")


@pytest.mark.parametrize("name", sorted(chartkit.VALUE_SETS))
def test_job_pod_meets_restricted(name: str) -> None:
    [(metadata, spec, where)] = list(
        pss.pod_templates(job(chartkit.render(chartkit.VALUE_SETS[name])))
    )
    assert where.startswith("Job/")
    assert pss.violations(metadata, spec, "restricted") == []


def test_job_pod_is_not_taken_for_the_operator() -> None:
    # The metrics Service and every serving NetworkPolicy select the operator's pods by
    # its selector labels; the hook's pod must not match them.
    objects = chartkit.render()
    selector = chartkit.workload(objects)["spec"]["selector"]["matchLabels"]
    labels = job(objects)["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= labels.items()
    service = chartkit.find(objects, "Service")
    assert not service["spec"]["selector"].items() <= labels.items()


def test_not_in_the_plain_manifests() -> None:
    for path in ("manifests/install.yaml", "manifests/crds.yaml"):
        text = (chartkit.ROOT / path).read_text(encoding="utf-8")
        docs = [doc for doc in yaml.safe_load_all(text) if doc]
        assert docs
        assert not [doc for doc in docs if chartkit.is_hook(doc)], path
        assert not chartkit.of_kind(docs, "Job"), path
        assert "release-finalizers" not in text, path
    # While the chart does render it: the absence above is the generator's doing.
    assert job(chartkit.render({"namespace": {"create": True}}))


def test_values_document_the_finalizer_it_releases() -> None:
    values = (chartkit.CHART / "values.yaml").read_text(encoding="utf-8")
    assert f"({finalizers.FINALIZER})" in values
    assert "release-finalizers --wait 60" in values
