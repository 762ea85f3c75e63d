"""Initial schema: versions, their ordered parents, snapshots and branches.

Revision ID: 0001
Revises:
Create Date: 2024-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "versions",
        sa.Column("version_id", sa.String(64), nullable=False),
        sa.Column("content_digest", sa.String(64), nullable=False),
        sa.Column("created_at", sa.String(64), nullable=False),
        sa.Column("manifest", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("version_id", name="pk_versions"),
    )
    op.create_index("ix_versions_content_digest", "versions", ["content_digest"])

    op.create_table(
        "version_parents",
        sa.Column("version_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("version_id", "position", name="pk_version_parents"),
        sa.ForeignKeyConstraint(["version_id"], ["versions.version_id"], name="fk_version_parents_version_id"),
    )
    op.create_index("ix_version_parents_parent_id", "version_parents", ["parent_id"])

    op.create_table(
        "snapshots",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("digest", name="pk_snapshots"),
    )

    op.create_table(
        "branches",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("version_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_branches"),
        sa.ForeignKeyConstraint(["version_id"], ["versions.version_id"], name="fk_branches_version_id"),
    )


def downgrade() -> None:
    op.drop_table("branches")
    op.drop_table("snapshots")
    op.drop_index("ix_version_parents_parent_id", table_name="version_parents")
    op.drop_table("version_parents")
    op.drop_index("ix_versions_content_digest", table_name="versions")
    op.drop_table("versions")
