"""A checker of the Kubernetes Pod Security Standards, Baseline and Restricted levels.

Tests use it to prove that pods the operator renders (its serving Deployments, the
Helm chart's own workload) would be admitted into a namespace labelled
``pod-security.kubernetes.io/enforce: restricted``, without a cluster.

Written from the standard's text, control by control:
https://kubernetes.io/docs/concepts/security/pod-security-standards/ (the version with
the v1.34 "Host Probes / Lifecycle Hooks" control). Each ``Violation.rule`` is the
name of a control in that page's tables; ``Violation.path`` is the field, written as
the standard writes its restricted fields (``spec.containers[0].securityContext...``,
``metadata.annotations[...]``), relative to the pod, so for a workload it is relative
to its pod template.

Deliberate choices where the page leaves room:

- Restricted is "everything from the Baseline policy" plus its own controls, so a
  restricted check reports baseline violations too. The two controls named
  "Capabilities" are told apart as ``Capabilities (baseline)`` (no capability beyond
  the allowed list may be added) and ``Capabilities`` (restricted: drop ALL, add only
  NET_BIND_SERVICE). Restricted's Seccomp allows a subset of baseline's values, so under
  restricted only the restricted form is checked, once per field.
- The "known list" of host ports is the built-in admission controller's: none.
- Privilege Escalation, Seccomp and Capabilities (restricted) are skipped for a pod
  with ``spec.os.name: windows``, as the page's "OS-specific policy controls" say.
- The relaxation of Running as Non-root for pods in a user namespace
  (``hostUsers: false``) is not applied: this checker is stricter there, which is the
  safe side for a test.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Level = Literal["baseline", "restricted"]

# Baseline controls.
HOST_PROCESS = "HostProcess"
HOST_NAMESPACES = "Host Namespaces"
PRIVILEGED_CONTAINERS = "Privileged Containers"
CAPABILITIES_BASELINE = "Capabilities (baseline)"
HOSTPATH_VOLUMES = "HostPath Volumes"
HOST_PORTS = "Host Ports"
HOST_PROBES = "Host Probes / Lifecycle Hooks"
APPARMOR = "AppArmor"
SELINUX = "SELinux"
PROC_MOUNT = "/proc Mount Type"
SECCOMP = "Seccomp"
SYSCTLS = "Sysctls"
# Restricted controls (Seccomp is in both levels, with different allowed values).
VOLUME_TYPES = "Volume Types"
PRIVILEGE_ESCALATION = "Privilege Escalation"
RUNNING_AS_NON_ROOT = "Running as Non-root"
RUNNING_AS_NON_ROOT_USER = "Running as Non-root user"
CAPABILITIES = "Capabilities"

BASELINE_RULES: tuple[str, ...] = (
    HOST_PROCESS,
    HOST_NAMESPACES,
    PRIVILEGED_CONTAINERS,
    CAPABILITIES_BASELINE,
    HOSTPATH_VOLUMES,
    HOST_PORTS,
    HOST_PROBES,
    APPARMOR,
    SELINUX,
    PROC_MOUNT,
    SECCOMP,
    SYSCTLS,
)
RESTRICTED_RULES: tuple[str, ...] = (
    VOLUME_TYPES,
    PRIVILEGE_ESCALATION,
    RUNNING_AS_NON_ROOT,
    RUNNING_AS_NON_ROOT_USER,
    SECCOMP,
    CAPABILITIES,
)
ALL_RULES: tuple[str, ...] = tuple(dict.fromkeys(BASELINE_RULES + RESTRICTED_RULES))

CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")

BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
RESTRICTED_ADDABLE_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
BASELINE_SECCOMP_TYPES = frozenset({"RuntimeDefault", "Localhost"})  # or undefined
RESTRICTED_SECCOMP_TYPES = frozenset({"RuntimeDefault", "Localhost"})  # and must be set
APPARMOR_TYPES = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"
SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
RESTRICTED_VOLUME_SOURCES = (
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
)
PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
LIFECYCLE_HOOKS = ("postStart", "preStop")
HOST_HANDLERS = ("httpGet", "tcpSocket")

# Workload kinds whose pods come from ``spec.template``.
TEMPLATED_KINDS = frozenset(
    {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job"}
)


@dataclass(frozen=True)
class Violation:
    """One field of a pod that a control does not allow."""

    rule: str
    path: str
    message: str


def violations(
    pod_metadata: Mapping[str, Any],
    pod_spec: Mapping[str, Any],
    level: Level = "restricted",
) -> list[Violation]:
    """Every violation of ``level`` in a pod (or pod template), in a stable order."""
    if level not in ("baseline", "restricted"):
        raise ValueError(f"unknown level {level!r}: baseline or restricted")
    pod = _Pod(_mapping(pod_metadata), _mapping(pod_spec))
    found: list[Violation] = []
    found += _host_process(pod)
    found += _host_namespaces(pod)
    found += _privileged(pod)
    found += _capabilities_baseline(pod)
    found += _hostpath_volumes(pod)
    found += _host_ports(pod)
    found += _host_probes(pod)
    found += _apparmor(pod)
    found += _selinux(pod)
    found += _proc_mount(pod)
    restricted = level == "restricted"
    if restricted and not pod.windows:
        found += _seccomp_restricted(pod)
    else:
        # A Windows pod is exempt from restricted's Seccomp, not from baseline's.
        found += _seccomp_baseline(pod)
    found += _sysctls(pod)
    if restricted:
        found += _volume_types(pod)
        if not pod.windows:
            found += _privilege_escalation(pod)
        found += _running_as_non_root(pod)
        found += _running_as_non_root_user(pod)
        if not pod.windows:
            found += _capabilities_restricted(pod)
    return found


def pod_templates(
    obj: Mapping[str, Any],
) -> Iterator[tuple[Mapping[str, Any], Mapping[str, Any], str]]:
    """``(metadata, spec, where)`` of every pod ``obj`` is or creates; nothing for others.

    ``where`` names the object and the field the pod is at, for failure messages.
    """
    kind = str(obj.get("kind") or "")
    name = str(_mapping(obj.get("metadata")).get("name") or "")
    spec = _mapping(obj.get("spec"))
    if kind == "Pod":
        yield _mapping(obj.get("metadata")), spec, f"Pod/{name}"
    elif kind in TEMPLATED_KINDS:
        template = _mapping(spec.get("template"))
        yield (
            _mapping(template.get("metadata")),
            _mapping(template.get("spec")),
            f"{kind}/{name} spec.template",
        )
    elif kind == "CronJob":
        job = _mapping(_mapping(spec.get("jobTemplate")).get("spec"))
        template = _mapping(job.get("template"))
        yield (
            _mapping(template.get("metadata")),
            _mapping(template.get("spec")),
            f"CronJob/{name} spec.jobTemplate.spec.template",
        )
    elif kind == "PodTemplate":
        template = _mapping(obj.get("template"))
        yield (
            _mapping(template.get("metadata")),
            _mapping(template.get("spec")),
            f"PodTemplate/{name} template",
        )


@dataclass(frozen=True)
class _Container:
    path: str  # e.g. "spec.initContainers[1]"
    body: Mapping[str, Any]

    @property
    def security(self) -> Mapping[str, Any]:
        return _mapping(self.body.get("securityContext"))


@dataclass(frozen=True)
class _Pod:
    metadata: Mapping[str, Any]
    spec: Mapping[str, Any]

    @property
    def security(self) -> Mapping[str, Any]:
        return _mapping(self.spec.get("securityContext"))

    @property
    def windows(self) -> bool:
        return _mapping(self.spec.get("os")).get("name") == "windows"

    @property
    def containers(self) -> list[_Container]:
        # All three lists: the standard lists ephemeral containers beside the others.
        return [
            _Container(f"spec.{field}[{index}]", _mapping(body))
            for field in CONTAINER_LISTS
            for index, body in enumerate(_sequence(self.spec.get(field)))
        ]

    @property
    def volumes(self) -> list[tuple[str, Mapping[str, Any]]]:
        return [
            (f"spec.volumes[{index}]", _mapping(volume))
            for index, volume in enumerate(_sequence(self.spec.get("volumes")))
        ]


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _sequence(value: object) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else ()


def _unset_or_false(value: object) -> bool:
    """Allowed values "undefined/nil, false": anything else (True, a stray 1) is not."""
    return value is None or value is False


def _host_process(pod: _Pod) -> Iterator[Violation]:
    scopes = [("spec.securityContext", pod.security)]
    scopes += [(f"{c.path}.securityContext", c.security) for c in pod.containers]
    for prefix, security in scopes:
        value = _mapping(security.get("windowsOptions")).get("hostProcess")
        if not _unset_or_false(value):
            yield Violation(
                HOST_PROCESS,
                f"{prefix}.windowsOptions.hostProcess",
                f"HostProcess containers get privileged access to the Windows host: {value!r}",
            )


def _host_namespaces(pod: _Pod) -> Iterator[Violation]:
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        value = pod.spec.get(field)
        if not _unset_or_false(value):
            yield Violation(
                HOST_NAMESPACES, f"spec.{field}", f"shares a host namespace: {field}={value!r}"
            )


def _privileged(pod: _Pod) -> Iterator[Violation]:
    for container in pod.containers:
        value = container.security.get("privileged")
        if not _unset_or_false(value):
            yield Violation(
                PRIVILEGED_CONTAINERS,
                f"{container.path}.securityContext.privileged",
                f"privileged container: privileged={value!r}",
            )


def _added_capabilities(container: _Container) -> list[str]:
    capabilities = _mapping(container.security.get("capabilities"))
    return [str(item) for item in _sequence(capabilities.get("add"))]


def _capabilities_baseline(pod: _Pod) -> Iterator[Violation]:
    for container in pod.containers:
        extra = [cap for cap in _added_capabilities(container) if cap not in BASELINE_CAPABILITIES]
        if extra:
            yield Violation(
                CAPABILITIES_BASELINE,
                f"{container.path}.securityContext.capabilities.add",
                f"adds capabilities beyond the baseline's allowed list: {extra}",
            )


def _hostpath_volumes(pod: _Pod) -> Iterator[Violation]:
    for path, volume in pod.volumes:
        if volume.get("hostPath") is not None:
            yield Violation(
                HOSTPATH_VOLUMES,
                f"{path}.hostPath",
                f"hostPath volume {volume.get('name')!r} mounts a path of the node",
            )


def _host_ports(pod: _Pod) -> Iterator[Violation]:
    for container in pod.containers:
        for index, port in enumerate(_sequence(container.body.get("ports"))):
            value = _mapping(port).get("hostPort")
            if value is not None and value != 0:
                yield Violation(
                    HOST_PORTS,
                    f"{container.path}.ports[{index}].hostPort",
                    f"binds a port of the node: hostPort={value!r}",
                )


def _host_probes(pod: _Pod) -> Iterator[Violation]:
    for container in pod.containers:
        handlers = [(probe, _mapping(container.body.get(probe))) for probe in PROBES]
        lifecycle = _mapping(container.body.get("lifecycle"))
        handlers += [
            (f"lifecycle.{hook}", _mapping(lifecycle.get(hook))) for hook in LIFECYCLE_HOOKS
        ]
        for where, handler in handlers:
            for kind in HOST_HANDLERS:
                host = _mapping(handler.get(kind)).get("host")
                if host is not None and host != "":
                    yield Violation(
                        HOST_PROBES,
                        f"{container.path}.{where}.{kind}.host",
                        f"a probe or hook may only target the pod itself: host={host!r}",
                    )


def _apparmor(pod: _Pod) -> Iterator[Violation]:
    scopes = [("spec.securityContext", pod.security)]
    scopes += [(f"{c.path}.securityContext", c.security) for c in pod.containers]
    for prefix, security in scopes:
        profile = _mapping(security.get("appArmorProfile"))
        value = profile.get("type")
        if value is not None and value not in APPARMOR_TYPES:
            yield Violation(
                APPARMOR,
                f"{prefix}.appArmorProfile.type",
                f"AppArmor profile must be RuntimeDefault or Localhost: {value!r}",
            )
    annotations = _mapping(pod.metadata.get("annotations"))
    for key, value in annotations.items():
        if not str(key).startswith(APPARMOR_ANNOTATION_PREFIX):
            continue
        text = str(value) if value is not None else None
        if text is None or text == "runtime/default" or text.startswith("localhost/"):
            continue
        yield Violation(
            APPARMOR,
            f"metadata.annotations['{key}']",
            f"AppArmor annotation must be runtime/default or localhost/*: {value!r}",
        )


def _selinux(pod: _Pod) -> Iterator[Violation]:
    scopes = [("spec.securityContext", pod.security)]
    scopes += [(f"{c.path}.securityContext", c.security) for c in pod.containers]
    for prefix, security in scopes:
        options = _mapping(security.get("seLinuxOptions"))
        kind = options.get("type")
        if kind is not None and kind not in SELINUX_TYPES:
            yield Violation(
                SELINUX,
                f"{prefix}.seLinuxOptions.type",
                f"SELinux type not in the allowed list: {kind!r}",
            )
        for field in ("user", "role"):
            value = options.get(field)
            if value is not None and value != "":
                yield Violation(
                    SELINUX,
                    f"{prefix}.seLinuxOptions.{field}",
                    f"a custom SELinux {field} is forbidden: {value!r}",
                )


def _proc_mount(pod: _Pod) -> Iterator[Violation]:
    for container in pod.containers:
        value = container.security.get("procMount")
        if value is not None and value != "Default":
            yield Violation(
                PROC_MOUNT,
                f"{container.path}.securityContext.procMount",
                f"the default /proc masks are required: procMount={value!r}",
            )


def _seccomp_type(security: Mapping[str, Any]) -> object:
    return _mapping(security.get("seccompProfile")).get("type")


def _seccomp_baseline(pod: _Pod) -> Iterator[Violation]:
    scopes = [("spec.securityContext", pod.security)]
    scopes += [(f"{c.path}.securityContext", c.security) for c in pod.containers]
    for prefix, security in scopes:
        value = _seccomp_type(security)
        if value is not None and value not in BASELINE_SECCOMP_TYPES:
            yield Violation(
                SECCOMP,
                f"{prefix}.seccompProfile.type",
                f"seccomp profile must not be Unconfined: {value!r}",
            )


def _seccomp_restricted(pod: _Pod) -> Iterator[Violation]:
    # The pod's profile covers the containers that set none; the pod may set none if
    # every container sets its own.
    pod_value = _seccomp_type(pod.security)
    if pod_value is not None and pod_value not in RESTRICTED_SECCOMP_TYPES:
        yield Violation(
            SECCOMP,
            "spec.securityContext.seccompProfile.type",
            f"seccomp profile must be RuntimeDefault or Localhost: {pod_value!r}",
        )
    pod_covers = pod_value in RESTRICTED_SECCOMP_TYPES
    for container in pod.containers:
        value = _seccomp_type(container.security)
        path = f"{container.path}.securityContext.seccompProfile.type"
        if value is not None and value not in RESTRICTED_SECCOMP_TYPES:
            yield Violation(
                SECCOMP, path, f"seccomp profile must be RuntimeDefault or Localhost: {value!r}"
            )
        elif value is None and not pod_covers:
            yield Violation(
                SECCOMP,
                path,
                "no seccomp profile: set RuntimeDefault or Localhost here or in "
                "spec.securityContext.seccompProfile.type",
            )


def _sysctls(pod: _Pod) -> Iterator[Violation]:
    for index, sysctl in enumerate(_sequence(pod.security.get("sysctls"))):
        name = _mapping(sysctl).get("name")
        if name not in SAFE_SYSCTLS:
            yield Violation(
                SYSCTLS,
                f"spec.securityContext.sysctls[{index}].name",
                f"sysctl not in the safe subset: {name!r}",
            )


def _volume_types(pod: _Pod) -> Iterator[Violation]:
    for path, volume in pod.volumes:
        # Set means present and not null: `emptyDir: {}` is an emptyDir.
        if any(volume.get(source) is not None for source in RESTRICTED_VOLUME_SOURCES):
            continue
        kinds = sorted(key for key, value in volume.items() if key != "name" and value is not None)
        yield Violation(
            VOLUME_TYPES,
            path,
            f"volume {volume.get('name')!r} is of a type restricted does not allow: "
            f"{kinds or 'none set'}",
        )


def _privilege_escalation(pod: _Pod) -> Iterator[Violation]:
    for container in pod.containers:
        value = container.security.get("allowPrivilegeEscalation")
        if value is not False:
            yield Violation(
                PRIVILEGE_ESCALATION,
                f"{container.path}.securityContext.allowPrivilegeEscalation",
                f"allowPrivilegeEscalation must be false: {value!r}",
            )


def _running_as_non_root(pod: _Pod) -> Iterator[Violation]:
    # The pod's true covers the containers that leave it unset; a container's own
    # value wins over the pod's, and an explicit false is never allowed.
    pod_value = pod.security.get("runAsNonRoot")
    if pod_value is not None and pod_value is not True:
        yield Violation(
            RUNNING_AS_NON_ROOT,
            "spec.securityContext.runAsNonRoot",
            f"runAsNonRoot must be true: {pod_value!r}",
        )
    for container in pod.containers:
        value = container.security.get("runAsNonRoot")
        path = f"{container.path}.securityContext.runAsNonRoot"
        if value is not None and value is not True:
            yield Violation(RUNNING_AS_NON_ROOT, path, f"runAsNonRoot must be true: {value!r}")
        elif value is None and pod_value is not True:
            yield Violation(
                RUNNING_AS_NON_ROOT,
                path,
                "runAsNonRoot is not set: set it true here or in spec.securityContext",
            )


def _running_as_non_root_user(pod: _Pod) -> Iterator[Violation]:
    scopes = [("spec.securityContext", pod.security)]
    scopes += [(f"{c.path}.securityContext", c.security) for c in pod.containers]
    for prefix, security in scopes:
        value = security.get("runAsUser")
        if value is not None and not isinstance(value, bool) and value == 0:
            yield Violation(
                RUNNING_AS_NON_ROOT_USER, f"{prefix}.runAsUser", "runAsUser must not be 0 (root)"
            )


def _capabilities_restricted(pod: _Pod) -> Iterator[Violation]:
    for container in pod.containers:
        capabilities = _mapping(container.security.get("capabilities"))
        dropped = [str(item) for item in _sequence(capabilities.get("drop"))]
        if "ALL" not in dropped:
            yield Violation(
                CAPABILITIES,
                f"{container.path}.securityContext.capabilities.drop",
                f"must drop ALL capabilities: drop={dropped}",
            )
        extra = [
            cap
            for cap in _added_capabilities(container)
            if cap not in RESTRICTED_ADDABLE_CAPABILITIES
        ]
        if extra:
            yield Violation(
                CAPABILITIES,
                f"{container.path}.securityContext.capabilities.add",
                f"only NET_BIND_SERVICE may be added back: {extra}",
            )
