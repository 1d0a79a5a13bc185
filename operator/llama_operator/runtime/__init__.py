"""Runtime: the running operator. Kopf handlers and daemons, and our own metrics.

``handlers`` registers the Kopf handlers (each a few lines around ``reconcile``);
``autoscaling_loop`` is the built-in autoscaler's tick; ``canary_probe`` measures canaries
for the rollout; ``finalizers`` releases the finalizer on uninstall; ``operator_metrics``
serves the operator's own Prometheus metrics.
"""
