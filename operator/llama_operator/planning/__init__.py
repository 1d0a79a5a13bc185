"""Planning: from a model and the GPU pools to a plan (pool, GPUs, parallelism, precision).

What a model is (``facts``, ``catalog``), what the GPUs and pools are (``gpus``, ``pools``),
what each engine release can do and allocates (``engine_profiles``), the memory arithmetic
(``sizing``) and the search for the cheapest plan that fits (``planner``, in steps:
``plan_request``, ``search``, ``diagnosis`` when nothing fits). ``config`` is the
operator's own configuration; it lives here because its pools and engine images are the
planner's inputs, and every layer above reads it. Pure: no I/O, no framework.
"""
