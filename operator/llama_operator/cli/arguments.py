"""The command line of ``llama-operator``: one sub-parser per command, each bound to the
function that runs it (``cli.offline``, ``cli.cluster``).

``cli.main`` parses with ``parser()``, except for ``run``, whose arguments it hands to
Kopf untouched.
"""

from __future__ import annotations

import argparse
from typing import TypeAlias

import llama_operator
from llama_operator.cli import cluster, offline
from llama_operator.planning import config
from llama_operator.runtime import finalizers


def parser() -> argparse.ArgumentParser:
    """Every command, in the order ``--help`` lists them."""
    result = argparse.ArgumentParser(
        prog="llama-operator",
        description="Size, deploy and run Llama-family LLM endpoints on Kubernetes.",
    )
    result.add_argument(
        "--version", action="version", version=f"llama-operator {llama_operator.__version__}"
    )
    sub = result.add_subparsers(dest="command", metavar="COMMAND")
    _add_plan(sub)
    _add_render(sub)
    _add_licenses(sub)
    _add_crds(sub)
    _add_release_finalizers(sub)
    _add_run(sub)
    return result


# What add_subparsers returns: argparse does not export the type.
_Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _add_plan(sub: _Commands) -> None:
    plan = sub.add_parser("plan", help="print the plan (and why) for each LlamaDeployment")
    _with_inputs(plan)
    plan.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")
    plan.set_defaults(func=offline.cmd_plan)


def _add_render(sub: _Commands) -> None:
    render = sub.add_parser("render", help="print every object the operator would create")
    _with_inputs(render)
    render.set_defaults(func=offline.cmd_render)


def _add_licenses(sub: _Commands) -> None:
    lic = sub.add_parser("licenses", help="list the model licences the operator knows")
    lic.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")
    lic.set_defaults(func=offline.cmd_licenses)


def _add_crds(sub: _Commands) -> None:
    crds = sub.add_parser("crds", help="print the CustomResourceDefinition")
    crds.set_defaults(func=offline.cmd_crds)


def _add_release_finalizers(sub: _Commands) -> None:
    release = sub.add_parser(
        "release-finalizers",
        help=f"remove {finalizers.FINALIZER} from LlamaDeployments (once no operator runs)",
    )
    release.add_argument(
        "-n",
        "--namespace",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="only the LlamaDeployments of NS (repeatable; default: all namespaces)",
    )
    release.add_argument(
        "--wait",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="check again for this long that the finalizer stays gone: a stopping "
        "operator may put it back once (default: 0, one pass)",
    )
    release.set_defaults(func=cluster.cmd_release_finalizers)


def _add_run(sub: _Commands) -> None:
    # Listed for --help only: main() hands everything after `run` to Kopf untouched.
    sub.add_parser(
        "run", help="run the operator (Kopf's options pass through, e.g. -n NS, --liveness URL)"
    )


def _with_inputs(p: argparse.ArgumentParser) -> None:
    """The options of the commands that run the pipeline on LlamaDeployment files."""
    p.add_argument(
        "-f",
        "--filename",
        required=True,
        action="append",
        help="LlamaDeployment YAML file or directory (repeatable; - for stdin)",
    )
    p.add_argument(
        "--pools", help="GPU pool catalogue YAML (default: operator config, else bundled)"
    )
    p.add_argument("--config", help=f"operator config YAML (default: ${config.CONFIG_ENV} if set)")
    p.add_argument(
        "--corrections",
        help=(
            "KV-cache corrections learnt from running pods: the calibration ConfigMap "
            "as `kubectl get configmap <release>-calibration -o yaml` prints it (or its "
            "data), so offline plans match what the operator would plan"
        ),
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return value
