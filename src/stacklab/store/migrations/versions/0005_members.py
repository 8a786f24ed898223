"""members: the processes of a deployment (web, worker, scheduler) with their heartbeats; named leases
(one scheduler at a time); where each terminal session lives (re-attach from another web process)

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "members",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=300), nullable=True),
        sa.Column("host", sa.String(length=64), nullable=True),
        sa.Column("queue", sa.String(length=200), nullable=True),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column("load", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("heartbeat_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_members_role_heartbeat", "members", ["role", "heartbeat_at"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "terminal_sessions",
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("env_id", sa.String(length=16), nullable=False),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("member_id", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("session_id"),
    )
    op.create_index("ix_terminal_sessions_env_node", "terminal_sessions", ["env_id", "node"])
    op.create_index("ix_terminal_sessions_member_id", "terminal_sessions", ["member_id"])


def downgrade() -> None:
    op.drop_index("ix_terminal_sessions_member_id", table_name="terminal_sessions")
    op.drop_index("ix_terminal_sessions_env_node", table_name="terminal_sessions")
    op.drop_table("terminal_sessions")
    op.drop_table("leases")
    op.drop_index("ix_members_role_heartbeat", table_name="members")
    op.drop_table("members")
