"""warm pools: the provider a pool member is kept ready on (environments.pool, None for learners'
environments) and the hand-over's pending key rotation (environments.rotate_keys)

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.add_column(sa.Column("pool", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("rotate_keys", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.drop_column("rotate_keys")
        batch.drop_column("pool")
