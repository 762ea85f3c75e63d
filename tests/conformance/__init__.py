"""Conformance suite: the behavior every object store and metadata backend must show.

Each test is written once against the abstract interfaces; ``conftest.py`` parametrizes it over
the backends. Adding a backend means adding one factory there.
"""
