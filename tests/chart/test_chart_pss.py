"""The operator's own pods, as the Helm chart renders them, meet Pod Security "restricted".

For every named value set in ``chartkit.VALUE_SETS`` (standalone and peering, namespaced,
monitors, custom), every pod the chart would create (its Deployment or StatefulSet, and
any other workload it renders) is checked with ``tests/pss.py``, so the chart installs
into a namespace labelled ``pod-security.kubernetes.io/enforce: restricted``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import chartkit
import pytest

import pss


def pods(objects: list[dict[str, Any]]) -> list[tuple[Mapping[str, Any], Mapping[str, Any], str]]:
    return [template for obj in objects for template in pss.pod_templates(obj)]


@pytest.mark.parametrize("values", sorted(chartkit.VALUE_SETS))
def test_chart_pods_meet_restricted(values: str) -> None:
    objects = chartkit.render(chartkit.VALUE_SETS[values])
    found = pods(objects)
    # The operator's workload is among them: the check below has a pod to look at.
    workload = chartkit.workload(objects)
    assert f"{workload['kind']}/{workload['metadata']['name']} spec.template" in {
        where for _, _, where in found
    }
    problems = [
        f"{where}: {violation.rule} at {violation.path}: {violation.message}"
        for metadata, spec, where in found
        for violation in pss.violations(metadata, spec, "restricted")
    ]
    assert problems == [], "\n".join(problems)


def test_the_check_sees_the_chart_pod() -> None:
    """The check above can fail: the chart's pod, loosened, is reported."""
    workload = chartkit.workload(chartkit.render())
    pod = workload["spec"]["template"]["spec"]
    pod["securityContext"]["runAsUser"] = 0
    pod["containers"][0]["securityContext"]["capabilities"] = {"add": ["SYS_ADMIN"]}
    [(metadata, spec, _)] = list(pss.pod_templates(workload))
    assert sorted((v.rule, v.path) for v in pss.violations(metadata, spec)) == [
        (pss.CAPABILITIES, "spec.containers[0].securityContext.capabilities.add"),
        (pss.CAPABILITIES, "spec.containers[0].securityContext.capabilities.drop"),
        (pss.CAPABILITIES_BASELINE, "spec.containers[0].securityContext.capabilities.add"),
        (pss.RUNNING_AS_NON_ROOT_USER, "spec.securityContext.runAsUser"),
    ]
