"""Compare-and-swap under real concurrency: separate processes promoting the same alias at once."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.lifecycle.conftest import DeployProject

WRITERS = 4


def _race(deploy: DeployProject, commands: list[list[str]]) -> list[subprocess.CompletedProcess[str]]:
    """Start every command as its own ``tether`` process at once; wait for all."""
    env = {**os.environ, "TETHER_AUTHOR": "Racer <race@example.com>"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tether.cli.main", "-C", str(deploy.root), *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for command in commands
    ]
    results = []
    for process, command in zip(processes, commands, strict=True):
        stdout, stderr = process.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(command, process.returncode, stdout, stderr))
    return results


def _versions(deploy: DeployProject, count: int) -> list[str]:
    return [deploy.prompt_version(f"candidate {index}\n") for index in range(count)]


@pytest.mark.slow
def test_concurrent_promotes_expecting_the_same_target_have_exactly_one_winner(
    make_deploy: Callable[[str], DeployProject],
) -> None:
    deploy = make_deploy("lite")
    base, *candidates = _versions(deploy, WRITERS + 1)
    deploy.run("promote", base, "--to", "prod")
    results = _race(deploy, [["promote", c, "--to", "prod", "--expect", base, "--json"] for c in candidates])
    winners = [r for r in results if r.returncode == 0]
    losers = [r for r in results if r.returncode != 0]
    assert len(winners) == 1, [r.stderr for r in results]
    assert all(r.returncode == 1 and ("not at" in r.stderr or "moved" in r.stderr) for r in losers), [r.stderr for r in losers]
    history = deploy.history()["moves"]
    assert len(history) == 2 and history[1]["from"] == base
    assert history[1]["to"] == json.loads(winners[0].stdout)["to"]


@pytest.mark.slow
def test_concurrent_promotes_never_lose_an_update(make_deploy: Callable[[str], DeployProject]) -> None:
    deploy = make_deploy("lite")
    base, *candidates = _versions(deploy, WRITERS + 1)
    deploy.run("promote", base, "--to", "prod")
    results = _race(deploy, [["promote", c, "--to", "prod", "--json"] for c in candidates])
    for result in results:
        assert result.returncode in (0, 1), result.stderr
        if result.returncode == 1:
            assert "moved while this command ran" in result.stderr or "moved concurrently" in result.stderr, result.stderr
    winners = {json.loads(r.stdout)["to"] for r in results if r.returncode == 0}
    history = deploy.history()["moves"]
    assert len(history) == 1 + len(winners)
    assert {move["to"] for move in history[1:]} == winners
    for previous, move in itertools.pairwise(history):
        assert move["from"] == previous["to"]  # each move replaced exactly what was there
        assert move["evidence"]["current"] == move["from"]  # ... and its gates judged that same state
    assert [move["seq"] for move in history] == list(range(1, len(history) + 1))
