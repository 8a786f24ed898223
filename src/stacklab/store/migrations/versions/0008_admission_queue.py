"""admission queue: when an environment joined the line for a provider slot, which providers it can take and
when its page last asked (environments.queued_at, queue_providers, queue_seen_at); the pace slots are given
back at (provider_usage.released_at, release_gap_s) for the estimate

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.add_column(sa.Column("queued_at", sa.Double(), nullable=True))
        batch.add_column(sa.Column("queue_providers", sa.String(length=300), nullable=True))
        batch.add_column(sa.Column("queue_seen_at", sa.Double(), nullable=True))
    op.create_index("ix_environments_queued_at", "environments", ["queued_at"])
    with op.batch_alter_table("provider_usage") as batch:
        batch.add_column(sa.Column("released_at", sa.Double(), nullable=True))
        batch.add_column(sa.Column("release_gap_s", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("provider_usage") as batch:
        batch.drop_column("release_gap_s")
        batch.drop_column("released_at")
    op.drop_index("ix_environments_queued_at", table_name="environments")
    with op.batch_alter_table("environments") as batch:
        batch.drop_column("queue_seen_at")
        batch.drop_column("queue_providers")
        batch.drop_column("queued_at")
