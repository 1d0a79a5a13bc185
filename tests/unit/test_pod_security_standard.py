"""Every pod the operator renders meets the Pod Security Standard "restricted".

Two halves. First the checker itself (``tests/pss.py``): for every control of the
Baseline and Restricted levels, a pod that breaks it is reported under the control's
name at the exact field, and a pod that uses the control's allowed values passes; the
pod-level settings cover the containers that leave them unset. Then the real check:
the serving pods of every example (primary, canary, fallback), on both engines, with
tensor parallelism and with a PersistentVolumeClaim cache, have no violation beyond
``DOCUMENTED_EXCEPTIONS``, so a namespace enforcing "restricted" admits them.
"""

from __future__ import annotations

import copy
import dataclasses
import pathlib
import re
from collections.abc import Mapping
from typing import Any, Literal

import pytest
import yaml

import pss
from llama_operator import api, reconcile
from llama_operator.licensing import terms
from llama_operator.planning import catalog, config, facts, planner
from llama_operator.serving import builders

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))
SECURITY_DOC = "docs/operations/security.md"
UID = "6f1c2a8e-0000-4000-8000-000000000001"

# Controls of "restricted" the operator's pods are allowed to break, each with the
# reason and where it is documented for cluster admins (SECURITY_DOC). Empty: the
# serving pods meet every control.
DOCUMENTED_EXCEPTIONS: dict[str, str] = {}
# ...and those an engine whose image cannot start as non-root breaks (its profile's
# runAsRoot: TGI, whose Python lives under /root; huggingface/text-generation-inference
# #3082). Its pods meet "baseline" in full and "restricted" but for these two.
ROOT_ENGINE_EXCEPTIONS: dict[str, str] = {
    pss.RUNNING_AS_NON_ROOT: f"TGI's image cannot start as non-root; see {SECURITY_DOC}",
    pss.RUNNING_AS_NON_ROOT_USER: f"TGI's image cannot start as non-root; see {SECURITY_DOC}",
}


# --- A pod to break, one field at a time ----------------------------------------------

DELETE = object()  # for ``put``: remove the field instead of setting it

CONTAINER_PATHS = (
    "spec.containers[0]",
    "spec.containers[1]",
    "spec.initContainers[0]",
    "spec.ephemeralContainers[0]",
)


def container(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "image": "registry.example.com/app:1.0",
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }


def compliant_pod() -> dict[str, Any]:
    """A pod meeting "restricted" with every container list and every allowed volume type;
    runAsNonRoot and the seccomp profile come from the pod level only."""
    return {
        "metadata": {"name": "app", "annotations": {"example.com/team": "ml"}},
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container("app"), container("sidecar")],
            "initContainers": [container("init")],
            "ephemeralContainers": [container("debug")],
            "volumes": [
                {"name": "config", "configMap": {"name": "app"}},
                {"name": "inline", "csi": {"driver": "secrets.example.com"}},
                {"name": "labels", "downwardAPI": {"items": []}},
                {"name": "tmp", "emptyDir": {}},
                {
                    "name": "scratch",
                    "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["RWO"]}}},
                },
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "token", "projected": {"sources": []}},
                {"name": "secret", "secret": {"secretName": "app"}},
            ],
        },
    }


_TOKEN = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\['([^']*)'\]")


def _tokens(path: str) -> list[str | int]:
    result: list[str | int] = []
    position = 0
    while position < len(path):
        match = _TOKEN.match(path, position)
        assert match, f"bad path {path!r} at {position}"
        name, index, key = match.groups()
        result.append(int(index) if index is not None else (name if name is not None else key))
        position = match.end()
    return result


def put(pod: dict[str, Any], path: str, value: object) -> None:
    """Set (or with ``DELETE`` remove) a field by the path syntax violations report."""
    *parents, last = _tokens(path)
    node: Any = pod
    for token, following in zip(parents, [*parents[1:], last], strict=True):
        empty: Any = [] if isinstance(following, int) else {}
        if isinstance(token, int):
            if token == len(node):
                node.append(empty)
        elif token not in node:
            node[token] = empty
        node = node[token]
    if value is DELETE:
        del node[last]
    elif isinstance(last, int) and last == len(node):
        node.append(value)
    else:
        node[last] = value


def changed(changes: Mapping[str, object]) -> dict[str, Any]:
    pod = compliant_pod()
    for path, value in changes.items():
        put(pod, path, value)
    return pod


def found(pod: Mapping[str, Any], level: pss.Level = "restricted") -> list[tuple[str, str]]:
    return sorted((v.rule, v.path) for v in pss.violations(pod["metadata"], pod["spec"], level))


@dataclasses.dataclass(frozen=True)
class Broken:
    """A pod breaking ``rule``: ``changes`` to the compliant pod, and exactly what
    ``level`` reports for it."""

    id: str
    rule: str
    changes: Mapping[str, object]
    expected: list[tuple[str, str]]
    level: pss.Level = "restricted"


def every_container(rule: str, field: str) -> list[tuple[str, str]]:
    return [(rule, f"{path}.{field}") for path in CONTAINER_PATHS]


SC = "spec.securityContext"
C0 = "spec.containers[0].securityContext"
C1 = "spec.containers[1].securityContext"
INIT = "spec.initContainers[0].securityContext"
EPH = "spec.ephemeralContainers[0].securityContext"
APPARMOR_KEY = "container.apparmor.security.beta.kubernetes.io/app"

BROKEN = [
    Broken(
        "hostprocess-pod",
        pss.HOST_PROCESS,
        {f"{SC}.windowsOptions.hostProcess": True},
        [(pss.HOST_PROCESS, f"{SC}.windowsOptions.hostProcess")],
        level="baseline",
    ),
    Broken(
        "hostprocess-ephemeral",
        pss.HOST_PROCESS,
        {f"{EPH}.windowsOptions.hostProcess": True},
        [(pss.HOST_PROCESS, f"{EPH}.windowsOptions.hostProcess")],
    ),
    *[
        Broken(
            f"host-namespace-{field}",
            pss.HOST_NAMESPACES,
            {f"spec.{field}": True},
            [(pss.HOST_NAMESPACES, f"spec.{field}")],
        )
        for field in ("hostNetwork", "hostPID", "hostIPC")
    ],
    Broken(
        "privileged",
        pss.PRIVILEGED_CONTAINERS,
        {f"{C1}.privileged": True},
        [(pss.PRIVILEGED_CONTAINERS, f"{C1}.privileged")],
    ),
    Broken(
        "capability-beyond-baseline",
        pss.CAPABILITIES_BASELINE,
        {f"{C0}.capabilities.add": ["CHOWN", "SYS_ADMIN"]},
        [(pss.CAPABILITIES_BASELINE, f"{C0}.capabilities.add")],
        level="baseline",
    ),
    Broken(
        "capability-beyond-baseline-restricted",
        pss.CAPABILITIES_BASELINE,
        {f"{INIT}.capabilities.add": ["NET_ADMIN"]},
        [
            (pss.CAPABILITIES_BASELINE, f"{INIT}.capabilities.add"),
            (pss.CAPABILITIES, f"{INIT}.capabilities.add"),
        ],
    ),
    Broken(
        "hostpath-baseline",
        pss.HOSTPATH_VOLUMES,
        {"spec.volumes[8]": {"name": "host", "hostPath": {"path": "/var/run"}}},
        [(pss.HOSTPATH_VOLUMES, "spec.volumes[8].hostPath")],
        level="baseline",
    ),
    Broken(
        "hostpath-restricted",
        pss.HOSTPATH_VOLUMES,
        {"spec.volumes[3]": {"name": "tmp", "hostPath": {"path": "/tmp"}}},
        [(pss.HOSTPATH_VOLUMES, "spec.volumes[3].hostPath"), (pss.VOLUME_TYPES, "spec.volumes[3]")],
    ),
    Broken(
        "host-port",
        pss.HOST_PORTS,
        {
            "spec.containers[0].ports": [
                {"containerPort": 80},
                {"containerPort": 81, "hostPort": 81},
            ]
        },
        [(pss.HOST_PORTS, "spec.containers[0].ports[1].hostPort")],
    ),
    Broken(
        "host-port-init",
        pss.HOST_PORTS,
        {"spec.initContainers[0].ports": [{"containerPort": 80, "hostPort": 8080}]},
        [(pss.HOST_PORTS, "spec.initContainers[0].ports[0].hostPort")],
        level="baseline",
    ),
    Broken(
        "host-in-probe",
        pss.HOST_PROBES,
        {"spec.containers[0].livenessProbe": {"httpGet": {"port": 80, "host": "10.0.0.1"}}},
        [(pss.HOST_PROBES, "spec.containers[0].livenessProbe.httpGet.host")],
    ),
    Broken(
        "host-in-probe-tcp",
        pss.HOST_PROBES,
        {"spec.containers[1].startupProbe": {"tcpSocket": {"port": 80, "host": "example.com"}}},
        [(pss.HOST_PROBES, "spec.containers[1].startupProbe.tcpSocket.host")],
        level="baseline",
    ),
    Broken(
        "host-in-lifecycle-hook",
        pss.HOST_PROBES,
        {"spec.initContainers[0].lifecycle.preStop.httpGet": {"port": 80, "host": "10.0.0.2"}},
        [(pss.HOST_PROBES, "spec.initContainers[0].lifecycle.preStop.httpGet.host")],
    ),
    Broken(
        "apparmor-pod-unconfined",
        pss.APPARMOR,
        {f"{SC}.appArmorProfile": {"type": "Unconfined"}},
        [(pss.APPARMOR, f"{SC}.appArmorProfile.type")],
        level="baseline",
    ),
    Broken(
        "apparmor-container-unconfined",
        pss.APPARMOR,
        {f"{INIT}.appArmorProfile": {"type": "Unconfined"}},
        [(pss.APPARMOR, f"{INIT}.appArmorProfile.type")],
    ),
    Broken(
        "apparmor-annotation-unconfined",
        pss.APPARMOR,
        {f"metadata.annotations['{APPARMOR_KEY}']": "unconfined"},
        [(pss.APPARMOR, f"metadata.annotations['{APPARMOR_KEY}']")],
    ),
    Broken(
        "selinux-type",
        pss.SELINUX,
        {f"{SC}.seLinuxOptions": {"type": "spc_t"}},
        [(pss.SELINUX, f"{SC}.seLinuxOptions.type")],
        level="baseline",
    ),
    Broken(
        "selinux-user-and-role",
        pss.SELINUX,
        {f"{C0}.seLinuxOptions": {"user": "system_u", "role": "sysadm_r"}},
        [(pss.SELINUX, f"{C0}.seLinuxOptions.user"), (pss.SELINUX, f"{C0}.seLinuxOptions.role")],
    ),
    Broken(
        "proc-mount-unmasked",
        pss.PROC_MOUNT,
        {f"{INIT}.procMount": "Unmasked"},
        [(pss.PROC_MOUNT, f"{INIT}.procMount")],
    ),
    Broken(
        "seccomp-unconfined-baseline",
        pss.SECCOMP,
        {f"{SC}.seccompProfile.type": "Unconfined"},
        [(pss.SECCOMP, f"{SC}.seccompProfile.type")],
        level="baseline",
    ),
    Broken(
        # Restricted: the pod's profile is wrong, and so no container is covered.
        "seccomp-unconfined-restricted",
        pss.SECCOMP,
        {f"{SC}.seccompProfile.type": "Unconfined"},
        [
            (pss.SECCOMP, f"{SC}.seccompProfile.type"),
            *every_container(pss.SECCOMP, "securityContext.seccompProfile.type"),
        ],
    ),
    Broken(
        "seccomp-unset",
        pss.SECCOMP,
        {f"{SC}.seccompProfile": DELETE},
        every_container(pss.SECCOMP, "securityContext.seccompProfile.type"),
    ),
    Broken(
        "seccomp-container-overrides-pod",
        pss.SECCOMP,
        {f"{EPH}.seccompProfile": {"type": "Unconfined"}},
        [(pss.SECCOMP, f"{EPH}.seccompProfile.type")],
    ),
    Broken(
        "sysctl-unsafe",
        pss.SYSCTLS,
        {
            f"{SC}.sysctls": [
                {"name": "net.ipv4.tcp_syncookies", "value": "1"},
                {"name": "kernel.msgmax", "value": "65536"},
            ]
        },
        [(pss.SYSCTLS, f"{SC}.sysctls[1].name")],
        level="baseline",
    ),
    Broken(
        "volume-nfs",
        pss.VOLUME_TYPES,
        {"spec.volumes[8]": {"name": "shared", "nfs": {"server": "nfs.example.com", "path": "/"}}},
        [(pss.VOLUME_TYPES, "spec.volumes[8]")],
    ),
    Broken(
        "volume-without-source",
        pss.VOLUME_TYPES,
        {"spec.volumes[8]": {"name": "nothing"}},
        [(pss.VOLUME_TYPES, "spec.volumes[8]")],
    ),
    Broken(
        "privilege-escalation-true",
        pss.PRIVILEGE_ESCALATION,
        {f"{C0}.allowPrivilegeEscalation": True},
        [(pss.PRIVILEGE_ESCALATION, f"{C0}.allowPrivilegeEscalation")],
    ),
    Broken(
        "privilege-escalation-unset",
        pss.PRIVILEGE_ESCALATION,
        {f"{INIT}.allowPrivilegeEscalation": DELETE},
        [(pss.PRIVILEGE_ESCALATION, f"{INIT}.allowPrivilegeEscalation")],
    ),
    Broken(
        "run-as-root-container",
        pss.RUNNING_AS_NON_ROOT,
        {f"{C1}.runAsNonRoot": False},
        [(pss.RUNNING_AS_NON_ROOT, f"{C1}.runAsNonRoot")],
    ),
    Broken(
        "run-as-root-pod",
        pss.RUNNING_AS_NON_ROOT,
        {
            f"{SC}.runAsNonRoot": False,
            **{f"{p}.securityContext.runAsNonRoot": True for p in CONTAINER_PATHS},
        },
        [(pss.RUNNING_AS_NON_ROOT, f"{SC}.runAsNonRoot")],
    ),
    Broken(
        "run-as-non-root-unset",
        pss.RUNNING_AS_NON_ROOT,
        {f"{SC}.runAsNonRoot": DELETE},
        every_container(pss.RUNNING_AS_NON_ROOT, "securityContext.runAsNonRoot"),
    ),
    Broken(
        "run-as-user-0-pod",
        pss.RUNNING_AS_NON_ROOT_USER,
        {f"{SC}.runAsUser": 0},
        [(pss.RUNNING_AS_NON_ROOT_USER, f"{SC}.runAsUser")],
    ),
    Broken(
        "run-as-user-0-container",
        pss.RUNNING_AS_NON_ROOT_USER,
        {f"{EPH}.runAsUser": 0},
        [(pss.RUNNING_AS_NON_ROOT_USER, f"{EPH}.runAsUser")],
    ),
    Broken(
        "capabilities-not-dropped",
        pss.CAPABILITIES,
        {f"{C0}.capabilities": DELETE},
        [(pss.CAPABILITIES, f"{C0}.capabilities.drop")],
    ),
    Broken(
        "capabilities-drop-without-all",
        pss.CAPABILITIES,
        {f"{C1}.capabilities.drop": ["NET_RAW", "SYS_ADMIN"]},
        [(pss.CAPABILITIES, f"{C1}.capabilities.drop")],
    ),
    Broken(
        # The standard's value is ALL, in capitals.
        "capabilities-drop-lowercase-all",
        pss.CAPABILITIES,
        {f"{INIT}.capabilities.drop": ["all"]},
        [(pss.CAPABILITIES, f"{INIT}.capabilities.drop")],
    ),
    Broken(
        # CHOWN is fine for baseline, not for restricted.
        "capabilities-add-beyond-net-bind-service",
        pss.CAPABILITIES,
        {f"{C0}.capabilities.add": ["NET_BIND_SERVICE", "CHOWN"]},
        [(pss.CAPABILITIES, f"{C0}.capabilities.add")],
    ),
]


@dataclasses.dataclass(frozen=True)
class Allowed:
    """A pod using allowed, non-default values of ``rule``: no violation at ``level``."""

    id: str
    rule: str
    changes: Mapping[str, object]
    level: pss.Level = "restricted"


ALLOWED = [
    Allowed(
        "hostprocess-false",
        pss.HOST_PROCESS,
        {f"{SC}.windowsOptions.hostProcess": False, f"{C0}.windowsOptions.hostProcess": False},
    ),
    Allowed(
        "host-namespaces-false",
        pss.HOST_NAMESPACES,
        {"spec.hostNetwork": False, "spec.hostPID": False, "spec.hostIPC": False},
    ),
    Allowed(
        "privileged-false",
        pss.PRIVILEGED_CONTAINERS,
        {f"{p}.securityContext.privileged": False for p in CONTAINER_PATHS},
    ),
    Allowed(
        "capabilities-baseline-list",
        pss.CAPABILITIES_BASELINE,
        {f"{C0}.capabilities.add": sorted(pss.BASELINE_CAPABILITIES)},
        level="baseline",
    ),
    Allowed(
        # Baseline forbids hostPath only; other volume types are restricted's business.
        "non-hostpath-volume-baseline",
        pss.HOSTPATH_VOLUMES,
        {"spec.volumes[8]": {"name": "shared", "nfs": {"server": "nfs.example.com", "path": "/"}}},
        level="baseline",
    ),
    Allowed(
        "host-port-zero",
        pss.HOST_PORTS,
        {
            "spec.containers[0].ports": [
                {"containerPort": 8000, "hostPort": 0},
                {"containerPort": 9000},
            ]
        },
    ),
    Allowed(
        "probes-without-host",
        pss.HOST_PROBES,
        {
            "spec.containers[0].livenessProbe": {"httpGet": {"port": 80, "host": ""}},
            "spec.containers[0].readinessProbe": {"tcpSocket": {"port": 80}},
            "spec.containers[0].startupProbe": {"exec": {"command": ["true"]}},
            "spec.containers[0].lifecycle": {"preStop": {"httpGet": {"port": 80, "path": "/q"}}},
        },
    ),
    Allowed(
        "apparmor-runtime-default-and-localhost",
        pss.APPARMOR,
        {
            f"{SC}.appArmorProfile": {"type": "RuntimeDefault"},
            f"{C0}.appArmorProfile": {"type": "Localhost", "localhostProfile": "k8s-app"},
            f"metadata.annotations['{APPARMOR_KEY}']": "runtime/default",
            "metadata.annotations['container.apparmor.security.beta.kubernetes.io/sidecar']": (
                "localhost/k8s-sidecar"
            ),
        },
    ),
    Allowed(
        "selinux-allowed-types-and-level",
        pss.SELINUX,
        {
            f"{SC}.seLinuxOptions": {"type": "container_t", "level": "s0:c123,c456"},
            f"{INIT}.seLinuxOptions": {"type": "container_init_t", "user": "", "role": ""},
            f"{C1}.seLinuxOptions": {"type": "container_kvm_t"},
            f"{EPH}.seLinuxOptions": {"type": "container_engine_t"},
        },
    ),
    Allowed("proc-mount-default", pss.PROC_MOUNT, {f"{C0}.procMount": "Default"}),
    Allowed(
        "seccomp-localhost",
        pss.SECCOMP,
        {
            f"{SC}.seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/app.json"},
            f"{C0}.seccompProfile": {"type": "RuntimeDefault"},
        },
    ),
    Allowed(
        "sysctls-safe",
        pss.SYSCTLS,
        {f"{SC}.sysctls": [{"name": name, "value": "1"} for name in sorted(pss.SAFE_SYSCTLS)]},
    ),
    Allowed(
        # The compliant pod already has one volume of each allowed type; add a second
        # emptyDir with settings, as the operator renders.
        "volume-types-allowed",
        pss.VOLUME_TYPES,
        {"spec.volumes[8]": {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}},
    ),
    Allowed(
        # Privilege Escalation is a Linux-only control.
        "privilege-escalation-windows",
        pss.PRIVILEGE_ESCALATION,
        {
            "spec.os": {"name": "windows"},
            **{f"{p}.securityContext.allowPrivilegeEscalation": DELETE for p in CONTAINER_PATHS},
        },
    ),
    Allowed(
        "run-as-non-root-in-every-container",
        pss.RUNNING_AS_NON_ROOT,
        {
            f"{SC}.runAsNonRoot": DELETE,
            **{f"{p}.securityContext.runAsNonRoot": True for p in CONTAINER_PATHS},
        },
    ),
    Allowed(
        "run-as-user-non-zero",
        pss.RUNNING_AS_NON_ROOT_USER,
        {f"{SC}.runAsUser": 1000, f"{C0}.runAsUser": 65532},
    ),
    Allowed(
        "capabilities-drop-all-add-net-bind-service",
        pss.CAPABILITIES,
        {f"{C0}.capabilities": {"drop": ["NET_RAW", "ALL"], "add": ["NET_BIND_SERVICE"]}},
    ),
]


class TestChecker:
    @pytest.mark.parametrize("level", ["baseline", "restricted"])
    def test_the_compliant_pod_has_no_violation(self, level: pss.Level) -> None:
        assert found(compliant_pod(), level) == []

    @pytest.mark.parametrize("case", BROKEN, ids=lambda case: case.id)
    def test_a_broken_control_is_reported_at_its_field(self, case: Broken) -> None:
        assert found(changed(case.changes), case.level) == sorted(case.expected)
        assert case.rule in {rule for rule, _ in case.expected}

    @pytest.mark.parametrize("case", ALLOWED, ids=lambda case: case.id)
    def test_allowed_values_pass(self, case: Allowed) -> None:
        pod = changed(case.changes)
        assert pod != compliant_pod()  # the case really changed something
        assert found(pod, case.level) == []

    def test_every_control_has_a_broken_and_an_allowed_case(self) -> None:
        assert set(pss.ALL_RULES) == {case.rule for case in BROKEN}
        assert set(pss.ALL_RULES) == {case.rule for case in ALLOWED}
        assert len(pss.ALL_RULES) == 17

    def test_violations_carry_a_message(self) -> None:
        pod = changed({f"{C0}.privileged": True, f"{SC}.runAsUser": 0})
        messages = [v.message for v in pss.violations(pod["metadata"], pod["spec"])]
        assert len(messages) == 2
        assert all(messages)

    def test_baseline_reports_no_restricted_control(self) -> None:
        pod = {"metadata": {}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
        assert found(pod, "baseline") == []
        assert found(pod, "restricted") == sorted(
            [
                (
                    pss.PRIVILEGE_ESCALATION,
                    "spec.containers[0].securityContext.allowPrivilegeEscalation",
                ),
                (pss.RUNNING_AS_NON_ROOT, "spec.containers[0].securityContext.runAsNonRoot"),
                (pss.SECCOMP, "spec.containers[0].securityContext.seccompProfile.type"),
                (pss.CAPABILITIES, "spec.containers[0].securityContext.capabilities.drop"),
            ]
        )

    def test_an_unknown_level_is_refused(self) -> None:
        pod = compliant_pod()
        with pytest.raises(ValueError, match="unknown level"):
            pss.violations(pod["metadata"], pod["spec"], "privileged")  # type: ignore[arg-type]


# Container-level fields, each broken in each of the three container lists.
CONTAINER_FIELDS: list[tuple[str, str, object, str]] = [
    # (rule, field under the container, value, reported field)
    (pss.PRIVILEGED_CONTAINERS, "securityContext.privileged", True, "securityContext.privileged"),
    (pss.PROC_MOUNT, "securityContext.procMount", "Unmasked", "securityContext.procMount"),
    (
        pss.HOST_PROCESS,
        "securityContext.windowsOptions.hostProcess",
        True,
        "securityContext.windowsOptions.hostProcess",
    ),
    (
        pss.SELINUX,
        "securityContext.seLinuxOptions",
        {"type": "unconfined_t"},
        "securityContext.seLinuxOptions.type",
    ),
    (
        pss.APPARMOR,
        "securityContext.appArmorProfile",
        {"type": "Unconfined"},
        "securityContext.appArmorProfile.type",
    ),
    (pss.HOST_PORTS, "ports", [{"containerPort": 1, "hostPort": 1}], "ports[0].hostPort"),
    (
        pss.PRIVILEGE_ESCALATION,
        "securityContext.allowPrivilegeEscalation",
        True,
        "securityContext.allowPrivilegeEscalation",
    ),
    (
        pss.RUNNING_AS_NON_ROOT,
        "securityContext.runAsNonRoot",
        False,
        "securityContext.runAsNonRoot",
    ),
    (pss.RUNNING_AS_NON_ROOT_USER, "securityContext.runAsUser", 0, "securityContext.runAsUser"),
    (
        pss.SECCOMP,
        "securityContext.seccompProfile",
        {"type": "Unconfined"},
        "securityContext.seccompProfile.type",
    ),
    (
        pss.CAPABILITIES,
        "securityContext.capabilities.drop",
        [],
        "securityContext.capabilities.drop",
    ),
]


@pytest.mark.parametrize("where", ["containers", "initContainers", "ephemeralContainers"])
@pytest.mark.parametrize(
    ("rule", "field", "value", "reported"),
    CONTAINER_FIELDS,
    ids=[f"{rule}:{field}" for rule, field, _, _ in CONTAINER_FIELDS],
)
def test_every_container_list_is_checked(
    where: str, rule: str, field: str, value: object, reported: str
) -> None:
    pod = changed({f"spec.{where}[0].{field}": value})
    assert found(pod) == [(rule, f"spec.{where}[0].{reported}")]


class TestInheritance:
    """Restricted's runAsNonRoot and seccomp profile: the pod's value covers every
    container that sets none; a container's own value wins."""

    def test_pod_level_covers_containers_that_set_nothing(self) -> None:
        pod = compliant_pod()
        for field in pss.CONTAINER_LISTS:
            for body in pod["spec"][field]:
                assert "runAsNonRoot" not in body["securityContext"]
                assert "seccompProfile" not in body["securityContext"]
        assert found(pod) == []

    def test_containers_may_cover_themselves_without_the_pod(self) -> None:
        changes: dict[str, object] = {
            f"{SC}.runAsNonRoot": DELETE,
            f"{SC}.seccompProfile": DELETE,
        }
        for path in CONTAINER_PATHS:
            changes[f"{path}.securityContext.runAsNonRoot"] = True
            changes[f"{path}.securityContext.seccompProfile"] = {"type": "RuntimeDefault"}
        assert found(changed(changes)) == []

    def test_one_uncovered_container_fails_alone(self) -> None:
        changes: dict[str, object] = {
            f"{SC}.runAsNonRoot": DELETE,
            f"{SC}.seccompProfile": DELETE,
        }
        for path in CONTAINER_PATHS[:-1]:
            changes[f"{path}.securityContext.runAsNonRoot"] = True
            changes[f"{path}.securityContext.seccompProfile"] = {"type": "Localhost"}
        assert found(changed(changes)) == sorted(
            [
                (pss.RUNNING_AS_NON_ROOT, f"{EPH}.runAsNonRoot"),
                (pss.SECCOMP, f"{EPH}.seccompProfile.type"),
            ]
        )

    def test_a_container_false_overrides_the_pod_true(self) -> None:
        pod = changed({f"{INIT}.runAsNonRoot": False})
        assert found(pod) == [(pss.RUNNING_AS_NON_ROOT, f"{INIT}.runAsNonRoot")]

    def test_a_pod_false_is_reported_even_when_containers_say_true(self) -> None:
        changes: dict[str, object] = {f"{SC}.runAsNonRoot": False}
        changes.update({f"{p}.securityContext.runAsNonRoot": True for p in CONTAINER_PATHS})
        assert found(changed(changes)) == [(pss.RUNNING_AS_NON_ROOT, f"{SC}.runAsNonRoot")]

    def test_a_pod_false_leaves_unset_containers_uncovered(self) -> None:
        pod = changed({f"{SC}.runAsNonRoot": False})
        assert found(pod) == sorted(
            [
                (pss.RUNNING_AS_NON_ROOT, f"{SC}.runAsNonRoot"),
                *every_container(pss.RUNNING_AS_NON_ROOT, "securityContext.runAsNonRoot"),
            ]
        )

    def test_a_container_profile_overrides_the_pod_profile(self) -> None:
        pod = changed({f"{C1}.seccompProfile": {"type": "Unconfined"}})
        assert found(pod) == [(pss.SECCOMP, f"{C1}.seccompProfile.type")]
        pod = changed(
            {
                f"{SC}.seccompProfile": {"type": "Unconfined"},
                **{
                    f"{p}.securityContext.seccompProfile": {"type": "RuntimeDefault"}
                    for p in CONTAINER_PATHS
                },
            }
        )
        assert found(pod) == [(pss.SECCOMP, f"{SC}.seccompProfile.type")]

    def test_run_as_user_is_not_inherited_away(self) -> None:
        # A container's non-zero runAsUser does not excuse the pod's 0 (the pod's
        # applies to every container that sets none, and is itself a restricted field).
        changes: dict[str, object] = {f"{SC}.runAsUser": 0}
        changes.update({f"{p}.securityContext.runAsUser": 1000 for p in CONTAINER_PATHS})
        assert found(changed(changes)) == [(pss.RUNNING_AS_NON_ROOT_USER, f"{SC}.runAsUser")]


class TestWindows:
    """Privilege Escalation, Seccomp and Capabilities (restricted) are Linux-only."""

    def minimal(self, **security: Any) -> dict[str, Any]:
        return {
            "metadata": {},
            "spec": {
                "os": {"name": "windows"},
                "securityContext": {"runAsNonRoot": True, **security},
                "containers": [{"name": "app", "image": "app:1"}],
            },
        }

    def test_linux_only_controls_are_skipped(self) -> None:
        assert found(self.minimal()) == []

    def test_the_same_pod_on_linux_fails_them(self) -> None:
        pod = self.minimal()
        del pod["spec"]["os"]
        assert {rule for rule, _ in found(pod)} == {
            pss.PRIVILEGE_ESCALATION,
            pss.SECCOMP,
            pss.CAPABILITIES,
        }

    def test_baseline_still_applies(self) -> None:
        pod = self.minimal(seccompProfile={"type": "Unconfined"})
        pod["spec"]["containers"][0]["securityContext"] = {
            "capabilities": {"add": ["SYS_ADMIN"]},
            "windowsOptions": {"hostProcess": True},
        }
        assert found(pod) == sorted(
            [
                (pss.SECCOMP, f"{SC}.seccompProfile.type"),
                (pss.CAPABILITIES_BASELINE, f"{C0}.capabilities.add"),
                (pss.HOST_PROCESS, f"{C0}.windowsOptions.hostProcess"),
            ]
        )


POD_SPEC: dict[str, Any] = {"containers": [{"name": "app", "image": "app:1"}]}
POD_METADATA: dict[str, Any] = {"labels": {"app": "x"}, "annotations": {"a": "b"}}
TEMPLATE: dict[str, Any] = {"metadata": POD_METADATA, "spec": POD_SPEC}


POD = {"kind": "Pod", "metadata": {"name": "p", **POD_METADATA}, "spec": POD_SPEC}


@pytest.mark.parametrize(
    ("obj", "metadata", "where"),
    [
        pytest.param(POD, POD["metadata"], "Pod/p", id="Pod"),
        *[
            pytest.param(
                {"kind": kind, "metadata": {"name": "w"}, "spec": {"template": TEMPLATE}},
                POD_METADATA,
                f"{kind}/w spec.template",
                id=kind,
            )
            for kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")
        ],
        pytest.param(
            {
                "kind": "CronJob",
                "metadata": {"name": "c"},
                "spec": {"jobTemplate": {"spec": {"template": TEMPLATE}}},
            },
            POD_METADATA,
            "CronJob/c spec.jobTemplate.spec.template",
            id="CronJob",
        ),
    ],
)
def test_pod_templates_finds_the_pod(
    obj: dict[str, Any], metadata: dict[str, Any], where: str
) -> None:
    assert list(pss.pod_templates(obj)) == [(metadata, POD_SPEC, where)]


@pytest.mark.parametrize("kind", ["ConfigMap", "Service", "HTTPRoute"])
def test_pod_templates_ignores_objects_without_pods(kind: str) -> None:
    assert list(pss.pod_templates({"kind": kind, "metadata": {"name": "x"}, "spec": {}})) == []


# --- The real check: what the operator renders ------------------------------------------

Variant = Literal["primary", "canary", "fallback"]


@dataclasses.dataclass(frozen=True)
class Rendered:
    """One way the operator renders serving pods: an example, possibly changed."""

    example: pathlib.Path
    variant: Variant = "primary"
    changes: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    label: str = ""

    @property
    def id(self) -> str:
        return f"{self.example.stem}-{self.label or self.variant}"


def _merged(raw: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(dict(raw))
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = _merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _document(case: Rendered) -> tuple[dict[str, Any], dict[str, Any]]:
    document = yaml.safe_load(case.example.read_text(encoding="utf-8"))
    return document["metadata"], _merged(document["spec"], case.changes)


def _plans(raw: Mapping[str, Any]) -> tuple[api.LlamaDeploymentSpec, api.Plan, Any]:
    spec = api.parse_spec(dict(raw))
    model = facts.resolve(model=spec.model, catalog_entry=catalog.lookup(spec.model.id))
    available = config.default_pools()
    plan = planner.plan(
        planner.request_for(
            spec=spec, model=model, available=available, settings=config.OperatorConfig()
        )
    )
    [pool] = [pool for pool in available if pool.name == plan.pool]
    return spec, plan, pool


def render(case: Rendered) -> list[dict[str, Any]]:
    """The objects of ``case``, as the builders render them (offline)."""
    meta, raw = _document(case)
    settings = config.OperatorConfig()
    spec, plan, pool = _plans(raw)
    detection = terms.detect(model_id=spec.model.id, override=None)
    common: dict[str, Any] = {"name": meta["name"], "namespace": meta["namespace"], "uid": UID}
    primary = builders.build_all(
        **common, spec=spec, plan=plan, pool=pool, settings=settings, detection=detection
    )
    if case.variant == "primary":
        return primary
    if case.variant == "canary":
        [deployment] = [obj for obj in primary if obj["kind"] == "Deployment"]
        return builders.canary_objects(
            **common,
            spec=spec,
            plan=plan,
            pool=pool,
            settings=settings,
            detection=detection,
            replicas=1,
            revision=builders.revision_of(deployment) or "",
        )
    if raw.get("fallbacks"):
        # The example's own fallbacks, planned as the reconciler plans them.
        wanted = reconcile.desired(
            **common,
            raw_spec=raw,
            settings=settings,
            available=config.default_pools(),
            fetch=None,
        )
        backups = reconcile.plan_fallbacks(
            wanted,
            **common,
            raw_spec=raw,
            settings=settings,
            available=config.default_pools(),
            fetch=None,
            card=None,
        )
        objects: list[dict[str, Any]] = []
        for backup in backups:
            assert backup.wanted is not None, backup.candidate.reason
            objects += builders.fallback_objects(
                **common,
                index=backup.candidate.index,
                spec=backup.wanted.spec,
                plan=backup.wanted.plan,
                pool=backup.wanted.pool,
                settings=settings,
                detection=backup.wanted.detection,
                replicas=backup.candidate.configured,
            )
        return objects
    # No fallbacks of its own: the same pods rendered as fallback-0 of another endpoint.
    return builders.fallback_objects(
        **common,
        index=0,
        spec=spec,
        plan=plan,
        pool=pool,
        settings=settings,
        detection=detection,
        replicas=1,
    )


def _plannable(example: pathlib.Path, changes: Mapping[str, Any]) -> bool:
    """Whether the planner finds a plan for the example with ``changes`` (an engine
    pin cannot always be met); a spec error is not swallowed."""
    _, raw = _document(Rendered(example, changes=changes))
    try:
        _plans(raw)
    except planner.PlanError:
        return False
    return True


ENGINES = ("vllm", "tgi")
PVC_CACHE = {"modelCache": {"volume": "persistentVolumeClaim", "claimName": "llama-weights"}}
CHAT = ROOT / "manifests" / "examples" / "chat-8b.yaml"

RENDERED: list[Rendered] = [
    *[
        Rendered(example, variant)
        for example in EXAMPLES
        for variant in ("primary", "canary", "fallback")
    ],
    *[
        Rendered(example, "primary", {"engine": engine}, label=f"engine-{engine}")
        for example in EXAMPLES
        for engine in ENGINES
        if _plannable(example, {"engine": engine})
    ],
    *[Rendered(example, "primary", PVC_CACHE, label="pvc-cache") for example in EXAMPLES],
    Rendered(CHAT, "primary", {"placement": {"tensorParallel": 2}}, label="tensor-parallel-2"),
    Rendered(
        CHAT,
        "canary",
        {"engine": "tgi", "placement": {"tensorParallel": 2}, **PVC_CACHE},
        label="canary-tgi-tp2-pvc",
    ),
]


def templates_of(
    objects: list[dict[str, Any]],
) -> list[tuple[Mapping[str, Any], Mapping[str, Any], str]]:
    return [template for obj in objects for template in pss.pod_templates(obj)]


def pod_specs(case: Rendered) -> list[Mapping[str, Any]]:
    return [spec for _, spec, _ in templates_of(render(case))]


def test_examples_exist() -> None:
    assert len(EXAMPLES) >= 5


def test_the_cases_cover_what_they_are_named_after() -> None:
    """Guards the parametrization: both engines, shared memory, a claim, every variant."""
    engines = {
        container["image"]
        for case in RENDERED
        for spec in pod_specs(case)
        for container in spec["containers"]
    }
    settings = config.OperatorConfig()
    assert {settings.images.vllm, settings.images.tgi} <= engines
    for engine in ENGINES:
        assert sum(case.label == f"engine-{engine}" for case in RENDERED) >= len(EXAMPLES) // 2
    volumes = [
        volume for case in RENDERED for spec in pod_specs(case) for volume in spec["volumes"]
    ]
    assert any(volume.get("emptyDir", {}).get("medium") == "Memory" for volume in volumes)
    assert any(
        volume.get("persistentVolumeClaim", {}).get("claimName") == "llama-weights"
        for volume in volumes
    )
    [tp2] = [case for case in RENDERED if case.label == "tensor-parallel-2"]
    assert any(volume["name"] == "dshm" for spec in pod_specs(tp2) for volume in spec["volumes"])
    fallback = [case for case in RENDERED if case.variant == "fallback"]
    names = {where for case in fallback for _, _, where in templates_of(render(case))}
    assert any("-fallback-0 " in where for where in names)


def _runs_as_root(spec: Mapping[str, Any]) -> bool:
    """Whether the pod's engine container is TGI's (by image), whose profile runs as root."""
    root_images = {config.OperatorConfig().images.tgi}
    return any(container["image"] in root_images for container in spec["containers"])


@pytest.mark.parametrize("case", RENDERED, ids=lambda case: case.id)
def test_rendered_pods_meet_restricted(case: Rendered) -> None:
    """Every pod meets "restricted"; a root engine's meets it but for running as root."""
    templates = templates_of(render(case))
    assert templates, f"{case.id} rendered no pod"
    problems = [
        f"{where}: {violation.rule} at {violation.path}: {violation.message}"
        for metadata, spec, where in templates
        for violation in pss.violations(metadata, spec, "restricted")
        if violation.rule not in DOCUMENTED_EXCEPTIONS
        and not (_runs_as_root(spec) and violation.rule in ROOT_ENGINE_EXCEPTIONS)
    ]
    assert problems == [], "\n".join(problems)


ROOT_ENGINE_CASES = [case for case in RENDERED if any(map(_runs_as_root, pod_specs(case)))]


def test_root_engine_cases_exist() -> None:
    assert len(ROOT_ENGINE_CASES) >= len(EXAMPLES) // 2


@pytest.mark.parametrize("case", ROOT_ENGINE_CASES, ids=lambda case: case.id)
def test_root_engine_pods_meet_baseline_in_full(case: Rendered) -> None:
    templates = templates_of(render(case))
    root = [(metadata, spec, where) for metadata, spec, where in templates if _runs_as_root(spec)]
    assert root, f"{case.id}: no TGI pod rendered"
    for metadata, spec, where in root:
        assert pss.violations(metadata, spec, "baseline") == [], where
        # ...and break "restricted" exactly where documented, nowhere else.
        assert {v.rule for v in pss.violations(metadata, spec, "restricted")} == set(
            ROOT_ENGINE_EXCEPTIONS
        ), where


def test_the_check_sees_the_rendered_pod() -> None:
    """The check above can fail: a rendered pod, loosened, is reported."""
    [deployment] = [obj for obj in render(Rendered(CHAT)) if obj["kind"] == "Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "allowPrivilegeEscalation"
    ] = True
    [(metadata, spec, _)] = list(pss.pod_templates(deployment))
    assert [(v.rule, v.path) for v in pss.violations(metadata, spec)] == [
        (pss.PRIVILEGE_ESCALATION, "spec.containers[0].securityContext.allowPrivilegeEscalation")
    ]


def test_documented_exceptions_are_controls_and_documented() -> None:
    assert set(DOCUMENTED_EXCEPTIONS) <= set(pss.ALL_RULES)
    assert set(ROOT_ENGINE_EXCEPTIONS) <= set(pss.ALL_RULES)
    for rule, reason in {**DOCUMENTED_EXCEPTIONS, **ROOT_ENGINE_EXCEPTIONS}.items():
        assert SECURITY_DOC in reason, f"{rule}: the reason must point at {SECURITY_DOC}"
        assert (ROOT / SECURITY_DOC).is_file()
