"""away: when the lab page said the learner left (hidden, closed) or a unit view woke the lab (pre-resume),
which kind, and the idle limit that applies from then until the learner acts

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.add_column(sa.Column("away_at", sa.Double(), nullable=True))
        batch.add_column(sa.Column("away_kind", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("away_limit_s", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.drop_column("away_limit_s")
        batch.drop_column("away_kind")
        batch.drop_column("away_at")
