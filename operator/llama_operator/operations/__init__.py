"""Operations: the decisions that keep an endpoint running, each a pure state machine.

``health`` reads pods' state; ``rollout`` (with ``canary_analysis``) runs canaries;
``failover`` moves traffic to a fallback model; ``replanning`` re-plans the primary on
another pool or with corrected sizing; ``autoscaling`` picks replica counts; ``capacity``
compares the KV cache engines allocated with the plan. Previous state, observations and the
clock in; the next state out. No I/O.
"""
