"""The deploy lifecycle: aliases, gated promotion, rehearsed and reversibility-checked rollback,
tiers, and the runtime API (``tether.resolve``).

Modules: :mod:`~tether.lifecycle.policy` (the ``[policy]`` table and tier gates),
:mod:`~tether.lifecycle.gates` (promotion gates and the pluggable eval check),
:mod:`~tether.lifecycle.reversibility` (the check before every rollback),
:mod:`~tether.lifecycle.deploy` (promote, rollback, rehearse, approve, history) and
:mod:`~tether.lifecycle.runtime` (``resolve`` and ``LiveVersion``).
"""
