"""The whole story a team lives through, end to end through the command line and the runtime API.

v1 goes to prod; v2 is promoted after a rehearsal; an incident; ``rollback prod`` returns to v1
with the report printed; v3 adds an irreversible migration, so a plain rollback is refused and a
forced one with a reason is accepted; ``history prod`` shows every step.
"""

from __future__ import annotations

import tether
from tests.lifecycle.conftest import DeployProject


def _serving(deploy: DeployProject) -> str:
    return tether.resolve("prod", project_dir=deploy.root, refresh_seconds=0).version_id


def test_the_whole_deploy_story(deploy: DeployProject) -> None:
    v1 = deploy.commit("v1: support bot")
    deploy.run("promote", v1, "--to", "prod", "--reason", "launch")
    assert _serving(deploy) == v1

    v2 = deploy.prompt_version("You are helpful. Never promise refunds.\n", "v2: stricter prompt")
    refused = deploy.run("promote", v2, "--to", "prod", code=1)
    assert "rehearsal gate" in refused.stderr
    rehearsal = deploy.run("rollback", "prod", "--rehearse", "--from", v2)
    assert "rehearsal passed" in rehearsal.stdout
    deploy.run("promote", v2, "--to", "prod", "--reason", "fewer refund escalations", "--expect", v1)
    assert _serving(deploy) == v2

    # The incident: v2 refuses legitimate refunds. Roll back.
    rolled = deploy.run("rollback", "prod", "--reason", "incident 42: refunds refused")
    assert f"Reversibility check {v2[:12]} -> {v1[:12]}: reversible" in rolled.stdout
    assert "system (prompt, changed)" in rolled.stdout
    assert _serving(deploy) == v1
    assert tether.resolve("prod", project_dir=deploy.root, refresh_seconds=0).prompt("system") == "You are helpful.\n"

    deploy.write("migrations/003_up.sql", "ALTER TABLE tickets ADD COLUMN refund_state text;\n")
    deploy.run("add", "migration", "refund_state", "migrations/003_up.sql")
    v3 = deploy.commit("v3: track refund state (no down migration)")
    rehearsal = deploy.run("rollback", "prod", "--rehearse", "--from", v3)
    assert "a real rollback will need --force --reason" in rehearsal.stdout
    deploy.run("promote", v3, "--to", "prod", "--reason", "refund tracking")
    assert _serving(deploy) == v3

    plain = deploy.run("rollback", "prod", code=1)
    assert "IRREVERSIBLE" in plain.stdout and "rollback refused: irreversible: refund_state" in plain.stderr
    assert _serving(deploy) == v3
    forced = deploy.run("rollback", "prod", "--force", "--reason", "incident 43: column dropped by the DBA")
    assert "forced: irreversible findings overridden" in forced.stdout
    assert _serving(deploy) == v1

    history = deploy.run("history", "prod").stdout
    lines = [line for line in history.splitlines() if line.startswith(("prod@", "rehearsal"))]
    assert [line.split()[0] for line in lines] == [
        "prod@{4}",  # v1 launched
        "rehearsal",  # v2 -> v1 rehearsed
        "prod@{3}",  # v2 promoted
        "prod@{2}",  # rollback to v1
        "rehearsal",  # v3 -> v1 rehearsed
        "prod@{1}",  # v3 promoted
        "prod@{0}",  # forced rollback to v1
    ]
    for text in ("launch", "incident 42", "incident 43", "FORCED", "overridden: refund_state"):
        assert text in history
    moves = deploy.history()["moves"]
    assert [(m["action"], m["from"], m["to"]) for m in moves] == [
        ("promote", None, v1),
        ("promote", v1, v2),
        ("rollback", v2, v1),
        ("promote", v1, v3),
        ("rollback", v3, v1),
    ]
    assert deploy.json("show", "prod@{1}")["version_id"] == v3
