"""Aliases with their append-only history, rehearsals, approvals, and eval runs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "aliases",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("version_id", sa.String(64), nullable=False),
        sa.Column("moves", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_aliases"),
        sa.ForeignKeyConstraint(["version_id"], ["versions.version_id"], name="fk_aliases_version_id"),
    )
    op.create_table(
        "alias_history",
        sa.Column("alias", sa.String(255), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("from_version", sa.String(64), nullable=True),
        sa.Column("to_version", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("time", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("evidence", sa.LargeBinary(), nullable=False),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("alias", "seq", name="pk_alias_history"),
    )
    op.create_index("ix_alias_history_to_version", "alias_history", ["to_version"])
    op.create_table(
        "rehearsals",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("alias", sa.String(255), nullable=False),
        sa.Column("from_version", sa.String(64), nullable=True),
        sa.Column("to_version", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("time", sa.String(64), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("report", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rehearsals"),
    )
    op.create_index("ix_rehearsals_alias_to_version", "rehearsals", ["alias", "to_version"])
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("version_id", sa.String(64), nullable=False),
        sa.Column("alias", sa.String(255), nullable=False),
        sa.Column("approver", sa.String(255), nullable=False),
        sa.Column("time", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_approvals"),
    )
    op.create_index("ix_approvals_version_alias", "approvals", ["version_id", "alias"])
    op.create_table(
        "eval_runs",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("version_id", sa.String(64), nullable=False),
        sa.Column("evalset", sa.String(255), nullable=False),
        sa.Column("evalset_snapshot", sa.String(64), nullable=False),
        sa.Column("created_at", sa.String(64), nullable=False),
        sa.Column("environment", sa.String(64), nullable=True),
        sa.Column("body", sa.String(64), nullable=False),
        sa.Column("summary", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name="pk_eval_runs"),
    )
    op.create_index("ix_eval_runs_version_id", "eval_runs", ["version_id"])


def downgrade() -> None:
    op.drop_index("ix_eval_runs_version_id", table_name="eval_runs")
    op.drop_table("eval_runs")
    op.drop_index("ix_approvals_version_alias", table_name="approvals")
    op.drop_table("approvals")
    op.drop_index("ix_rehearsals_alias_to_version", table_name="rehearsals")
    op.drop_table("rehearsals")
    op.drop_index("ix_alias_history_to_version", table_name="alias_history")
    op.drop_table("alias_history")
    op.drop_table("aliases")
