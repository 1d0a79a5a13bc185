"""Every object rendered from every example is a valid Kubernetes object.

Validated with the official OpenAPI schemas shipped in ``kubernetes-validate``, in
strict mode (unknown fields fail), against Kubernetes 1.30 (the oldest supported) and
the newest version the package ships.
"""

from __future__ import annotations

import pathlib
from typing import Any

import kubernetes_validate
import pytest
import yaml

from llama_operator import api, reconcile
from llama_operator.licensing import terms
from llama_operator.planning import catalog, config, facts, planner
from llama_operator.serving import builders

EXAMPLES = sorted((pathlib.Path(__file__).parents[2] / "manifests" / "examples").glob("*.yaml"))
OLDEST = "1.30"
NEWEST = kubernetes_validate.latest_version()
VERSIONS = sorted({OLDEST, NEWEST})


def render(path: pathlib.Path) -> list[dict[str, Any]]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    spec = api.parse_spec(document["spec"])
    model = facts.resolve(model=spec.model, catalog_entry=catalog.lookup(spec.model.id))
    available = config.default_pools()
    plan = planner.plan(
        planner.request_for(
            spec=spec, model=model, available=available, settings=config.OperatorConfig()
        )
    )
    [pool] = [pool for pool in available if pool.name == plan.pool]
    return builders.build_all(
        name=document["metadata"]["name"],
        namespace=document["metadata"]["namespace"],
        uid="6f1c2a8e-0000-4000-8000-000000000001",
        spec=spec,
        plan=plan,
        pool=pool,
        settings=config.OperatorConfig(),
        detection=terms.detect(model_id=spec.model.id, override=None),
    )


def test_examples_exist() -> None:
    assert len(EXAMPLES) >= 5


def test_newest_version_is_newer_than_oldest() -> None:
    # Guards the parametrization: two distinct versions are really checked.
    assert tuple(int(part) for part in NEWEST.split(".")[:2]) > (1, 30)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.stem)
def test_rendered_objects_validate(example: pathlib.Path, version: str) -> None:
    objects = render(example)
    assert [obj["kind"] for obj in objects] == ["ConfigMap", "Deployment", "Service", "Service"]
    for obj in objects:
        checked = kubernetes_validate.validate(obj, version, strict=True)
        assert checked == ".".join(version.split(".")[:2])


@pytest.mark.parametrize("version", VERSIONS)
def test_validator_rejects_a_broken_object(version: str) -> None:
    # The check above is only worth something if the schemas refuse bad objects.
    deployment = render(EXAMPLES[0])[1]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["ports"][0]["containerPort"] = "8000"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, version, strict=True)
    del container["ports"][0]["containerPort"]
    container["ports"][0]["bogus"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, version, strict=True)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.stem)
def test_every_child_the_operator_renders_validates(example: pathlib.Path, version: str) -> None:
    """What `render` prints (the reconcile's own rendering, fallbacks included)."""
    document = yaml.safe_load(example.read_text(encoding="utf-8"))
    meta = document["metadata"]
    settings = config.OperatorConfig()
    wanted = reconcile.desired(
        name=meta["name"],
        namespace=meta["namespace"],
        uid="6f1c2a8e-0000-4000-8000-000000000001",
        raw_spec=document["spec"],
        settings=settings,
        available=config.default_pools(),
        fetch=None,
    )
    backups = reconcile.plan_fallbacks(
        wanted,
        name=meta["name"],
        namespace=meta["namespace"],
        uid="6f1c2a8e-0000-4000-8000-000000000001",
        raw_spec=document["spec"],
        settings=settings,
        available=config.default_pools(),
        fetch=None,
        card=None,
    )
    children = reconcile.steady_children(
        wanted,
        name=meta["name"],
        namespace=meta["namespace"],
        uid="6f1c2a8e-0000-4000-8000-000000000001",
        settings=settings,
        backups=backups,
    )
    assert len(children) >= 4
    for obj in children:
        kubernetes_validate.validate(obj, version, strict=True)
