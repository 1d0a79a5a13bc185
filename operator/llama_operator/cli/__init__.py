"""The ``llama-operator`` command: plan and render without a cluster, or run the operator.

``plan`` and ``render`` run exactly the pipeline the operator runs (``reconcile.desired``)
on LlamaDeployment files, so what they print is what the operator would do. ``run``
starts the Kopf operator with the handlers of ``llama_operator.runtime.handlers``; any Kopf
option after ``run`` passes through. ``release-finalizers`` removes the operator's
finalizer from the LlamaDeployments once the operator is gone (``runtime.finalizers``).

``main`` is the console script. The commands live by what they need: ``offline`` (plan,
render, licenses, crds; what they read and run in ``inputs``, what ``plan`` reports in
``entries`` and ``text``) and ``cluster`` (run, release-finalizers); ``arguments`` is the
command line that binds them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import yaml

from llama_operator.cli import arguments, cluster
from llama_operator.clients import hub
from llama_operator.planning import config, pools


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        # Everything after `run` belongs to Kopf, in order (argparse would reorder it).
        return cluster.run_operator(argv[1:])
    parser = arguments.parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    hub.bound_requests()  # plan and render may read Hub cards: never wait forever
    try:
        result: int = args.func(args)
    except (OSError, yaml.YAMLError, config.ConfigError, pools.CatalogueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
