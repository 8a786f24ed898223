"""usage limits: extra time staff grant (usage_grants), when a running lab reaches its limit
(environments.usage_limit_at), a learner's environments of a course by index, and an index that reads one
environment's observed transitions in time order (replacing the env_id index it begins with)

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_grants",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("course", sa.String(length=200), nullable=False),
        sa.Column("learner", sa.String(length=200), nullable=False),
        sa.Column("lab_id", sa.String(length=64), nullable=False),
        sa.Column("seconds", sa.Double(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("granted_by", sa.String(length=200), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_usage_grants_learner", "usage_grants", ["course", "learner", "at"])
    with op.batch_alter_table("environments") as batch:
        batch.add_column(sa.Column("usage_limit_at", sa.Double(), nullable=True))
    op.create_index("ix_environments_course_learner", "environments", ["course", "learner"])
    # The new index first: MariaDB keeps the foreign key on env_id served by it when the old one goes.
    op.create_index("ix_transitions_env_kind_at", "transitions", ["env_id", "kind", "at"])
    op.drop_index("ix_transitions_env_id", table_name="transitions")


def downgrade() -> None:
    op.create_index("ix_transitions_env_id", "transitions", ["env_id"])
    op.drop_index("ix_transitions_env_kind_at", table_name="transitions")
    op.drop_index("ix_environments_course_learner", table_name="environments")
    with op.batch_alter_table("environments") as batch:
        batch.drop_column("usage_limit_at")
    op.drop_index("ix_usage_grants_learner", table_name="usage_grants")
    op.drop_table("usage_grants")
