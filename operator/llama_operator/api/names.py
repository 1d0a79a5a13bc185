"""The API's names: the resource's group and kind, the patterns its strings must match,
and the names the operator gives a LlamaDeployment's children.

The bottom of the ``api`` package: the spec models (``spec``, ``rollout_spec``,
``security_spec``) take their field patterns from here, ``validation`` its CEL rules
and error hints, and every layer above names variants (``PRIMARY``, ``CANARY``,
``fallback_variant``) and checks object names (``name_problem``) through it.
"""

from __future__ import annotations

import re

GROUP = "llamaops.dev"
VERSION = "v1alpha1"
KIND = "LlamaDeployment"
PLURAL = "llamadeployments"
SINGULAR = "llamadeployment"
SHORT_NAMES = ("llama",)
CATEGORIES = ("all", "llm")
API_VERSION = f"{GROUP}/{VERSION}"

PARAMETERS_PATTERN = r"^[0-9]+(\.[0-9]+)?[MBT]$"
MODEL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$"
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
# Gateway API's Hostname: lower-case DNS labels, optionally behind one leading wildcard.
HOSTNAME_PATTERN = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$"
# IPv4 or IPv6 CIDR, loosely: the API server checks the address itself.
CIDR_PATTERN = r"^[0-9a-fA-F:.]+/[0-9]{1,3}$"
# What the Kubernetes API accepts as the name of an object the spec refers to (a Secret, a
# PersistentVolumeClaim, a Gateway): an RFC 1123 subdomain. Validated before the name
# reaches an API path, where "../x" would name another resource under the operator's
# identity; clients.k8s.path_for escapes each segment as well.
OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A namespace (an RFC 1123 label).
NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# A key of a Secret's data, as the API server validates it.
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
# An image reference, by the distribution reference grammar (ReferenceRegexp of
# https://github.com/distribution/reference/blob/main/regexp.go, read at 00a09fa):
# [host[:port]/]path-component[/path-component...][:tag][@digest], where a path component is
# lower-case letters and digits joined by ".", "_", "__" or dashes, a tag is at most 128 word
# characters, "." and "-", and a digest is algorithm:hex (32 or more hex digits). Go's \w and
# [[:xdigit:]] are spelled out as classes: Kubernetes checks the CRD's pattern as ECMA-262
# (the API server with RE2) and pydantic with Rust's regex, which read \w as Unicode; these
# classes mean the same to all three. Not checked here: the name's 255-character limit
# (NameTotalLengthMax, reference.go); the field's maxLength bounds the whole reference.
_IMAGE_HOST_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IMAGE_HOST = (
    rf"(?:{_IMAGE_HOST_COMPONENT}(?:\.{_IMAGE_HOST_COMPONENT})*|\[(?:[a-fA-F0-9:]+)\])(?::[0-9]+)?"
)
_IMAGE_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
IMAGE_PATTERN = (
    rf"^(?:{_IMAGE_HOST}/)?{_IMAGE_PATH_COMPONENT}(?:/{_IMAGE_PATH_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
# What a failed match means, for the names above; other patterns keep pydantic's message.
PATTERN_HINTS = {
    OBJECT_NAME_PATTERN: (
        "must be a Kubernetes object name: lower-case letters, digits, '-' and '.', "
        "starting and ending with a letter or digit (RFC 1123 subdomain)"
    ),
    NAMESPACE_PATTERN: (
        "must be a namespace name: lower-case letters, digits and '-', starting and ending "
        "with a letter or digit, at most 63 characters (RFC 1123 label)"
    ),
    SECRET_KEY_PATTERN: "must be a Secret key: letters, digits, '-', '_' and '.'",
    IMAGE_PATTERN: (
        "must be an image reference, [registry[:port]/]repository[:tag][@digest] (e.g. "
        "vllm/vllm-openai:v0.34.0, registry:5000/team/vllm@sha256:<64 hex digits>): a "
        "lower-case repository path, a tag of at most 128 letters, digits, '_', '.' and '-', "
        "and no spaces or shell characters"
    ),
}

# The LlamaDeployment's own name: what its children can be called ---------------------
#
# The operator names every child after the LlamaDeployment: ``<name>`` (the entry Service,
# the HTTPRoute, the NetworkPolicy, the ScaledObject or HPA), ``<name>-<variant>`` (the
# Deployment and Service of ``primary``, ``canary`` and each ``fallback-N``) and
# ``<name>[-<variant>]-license`` (the licence ConfigMaps). Which of these names Kubernetes
# limits to 63 characters, and which it lets grow to 253:
#
# - A Service name must be a DNS-1035 label: [a-z]([-a-z0-9]*[a-z0-9])?, at most 63
#   characters (it becomes a DNS name, <service>.<namespace>.svc). Services are
#   ``<name>``, ``<name>-primary``, ``<name>-canary`` and ``<name>-fallback-N``.
#   https://kubernetes.io/docs/concepts/overview/working-with-objects/names/#rfc-1035-label-names
#   (ValidateServiceName = NameIsDNS1035Label in k8s.io/kubernetes pkg/apis/core/validation).
# - A label value is at most 63 characters: every child carries ``<name>`` in
#   app.kubernetes.io/instance and llamaops.dev/deployment (or fallback-of), KEDA labels
#   its HPA with the ScaledObject's name ``<name>``, the EndpointSlice controller labels
#   slices kubernetes.io/service-name=<service>.
#   https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set
# - Deployments, ConfigMaps, HTTPRoutes, NetworkPolicies, ScaledObjects and HPAs are DNS-1123
#   subdomains, up to 253 characters, so ``<name>-fallback-7-license`` does not bind. A
#   Deployment's pods are named by generateName from ``<deployment>-<pod-template-hash>-``,
#   which the API server cuts to 58 characters before the 5 random ones (names.
#   SimpleNameGenerator, maxGeneratedNameLength = 63 - 5), so a long Deployment name never
#   makes an invalid pod or host name.
#
# So the binding limit is the longest Service name: ``<name>-fallback-7`` with the most
# fallbacks a spec may have. tests/unit/test_child_names.py renders every child of a spec
# with every feature on at this length and checks each name and label value against the
# rule of its kind, so a new, longer suffix fails a test instead of an apply.
DNS_LABEL_MAX_LENGTH = 63
DNS_1035_LABEL_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
PRIMARY = "primary"
CANARY = "canary"
FALLBACK_PREFIX = "fallback-"
MAX_FALLBACKS = 8


def fallback_variant(index: int) -> str:
    """The variant name of fallback ``index`` (``fallback-0``, ``fallback-1``, ...).

    The one place a fallback's name is made; ``fallback_index`` is the one place it is read.
    """
    return f"{FALLBACK_PREFIX}{index}"


def fallback_index(variant: str) -> int | None:
    """The index of a fallback variant, or None for any other name (``primary``, ``canary``).

    Status written by an older or a hand-edited object may hold any string, so a name
    that is not ``fallback-<n>`` reads as no fallback rather than raising.
    """
    suffix = variant.removeprefix(FALLBACK_PREFIX)
    if suffix == variant or not suffix.isdigit():
        return None
    return int(suffix)


# Suffixes of the children whose names must be DNS-1035 labels (the Services).
SERVICE_SUFFIXES = (
    "",
    f"-{PRIMARY}",
    f"-{CANARY}",
    *(f"-{fallback_variant(index)}" for index in range(MAX_FALLBACKS)),
)
MAX_NAME_LENGTH = DNS_LABEL_MAX_LENGTH - max(len(suffix) for suffix in SERVICE_SUFFIXES)
NAME_FIX = (
    "delete it and create it again under a name of at most "
    f"{MAX_NAME_LENGTH} characters: lower-case letters, digits and '-', starting with a "
    "letter and ending with a letter or digit (a DNS-1035 label)"
)


def name_problem(name: str) -> str | None:
    """Why no child of a LlamaDeployment called ``name`` could exist, or None when all can.

    The CRD refuses such names on create (``validation.ROOT_CEL_RULES``); this is the
    operator's own check, for objects created under an older CRD or by an API server that
    skipped CEL.
    """
    if not re.fullmatch(DNS_1035_LABEL_PATTERN, name):
        why = (
            f"metadata.name {name!r} is not a DNS-1035 label, which the name of its Service "
            f"{name!r} must be"
        )
    elif len(name) > MAX_NAME_LENGTH:
        why = (
            f"metadata.name has {len(name)} characters; at most {MAX_NAME_LENGTH} leave room "
            "for the suffixes of its children (the longest Service name is "
            f"<name>-{fallback_variant(MAX_FALLBACKS - 1)}, and a Service name is a DNS-1035 "
            f"label of at most {DNS_LABEL_MAX_LENGTH} characters)"
        )
    else:
        return None
    return f"{why}. No child is created; {NAME_FIX}"


# Engine flags that would put a secret into the Deployment's arguments, where `kubectl
# describe`, the ReplicaSet history and anyone with read access to Deployments see it: every
# engine's secretFlags (data/engines.yaml; tests/unit/test_silent_contradictions.py holds
# the two together).
SECRET_FLAGS = ("--api-key", "--hf-token", "--ngrok-authtoken")
# An engineArg naming one of them in any spelling an engine's parser takes: alone or as
# --flag=value, with "_" for "-" (vLLM's FlexibleArgumentParser reads --api_key as --api-key),
# or cut to a prefix Python's argparse expands to the flag (vLLM leaves allow_abbrev on):
# --api-k and --hf-t are the shortest prefixes no other flag of `vllm serve` starts with
# (tests/engines/test_vllm_source.py checks that against every verified release); shorter
# ones are ambiguous, which argparse refuses itself. TGI's launcher (clap) takes long names
# exactly. ECMA-262 and RE2 alike: a CEL rule (validation.CEL_RULES) uses it with matches().
SECRET_FLAG_PATTERN = r"^--(api[-_]k(e(y)?)?|hf[-_]t(o(k(e(n)?)?)?)?|ngrok[-_]authtoken)(=|$)"
# Flags that make vLLM run more than one API server, which it refuses beside runtime LoRA
# updating (entrypoints/cli/serve.py, 0.34.0): --api-server-count (-asc; entrypoints/
# common/cli_args.py) and --data-parallel-size (-dp; engine/arg_utils.py), from which it
# defaults the count. With the prefixes argparse accepts: "--api-s" is the shortest that
# is not --api-key, "--data-parallel-si" the shortest that is not --data-parallel-start-rank.
SEVERAL_API_SERVERS_PATTERN = (
    r"^(--api[-_]s(e(r(v(e(r([-_](c(o(u(n(t)?)?)?)?)?)?)?)?)?)?)?|-asc"
    r"|--data[-_]parallel[-_]si(z(e)?)?|-dp)(=|$)"
)
