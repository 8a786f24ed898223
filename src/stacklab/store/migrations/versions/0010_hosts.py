"""local labs on many hosts: environments.host (the LXC host holding the lab, whose worker drives it)
with an index on (host, observed) for each host's load and a lost host's labs

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.add_column(sa.Column("host", sa.String(length=64), nullable=True))
        batch.create_index("ix_environments_host", ["host", "observed"])


def downgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.drop_index("ix_environments_host")
        batch.drop_column("host")
