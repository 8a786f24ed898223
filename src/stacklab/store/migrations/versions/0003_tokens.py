"""access tokens: environments' token generation (revocation) and the LMS JWT ids already used (replay)

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("environments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("token_generation", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "lms_token_ids",
        sa.Column("issuer", sa.String(length=200), nullable=False),
        sa.Column("jti", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("issuer", "jti"),
    )
    op.create_index("ix_lms_token_ids_expires_at", "lms_token_ids", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_lms_token_ids_expires_at", table_name="lms_token_ids")
    op.drop_table("lms_token_ids")
    with op.batch_alter_table("environments", schema=None) as batch_op:
        batch_op.drop_column("token_generation")
