"""amphora_health.lost_at: heartbeat streams seen breaking or going quiet (fast failover); amphora.assigned_by:
the flow that took a spare amphora from the pool

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 06:20:00.000000
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("amphora_health", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "lost_at",
                sa.DateTime()
                .with_variant(mysql.DATETIME(fsp=6), "mariadb")
                .with_variant(mysql.DATETIME(fsp=6), "mysql"),
                nullable=True,
            )
        )
    with op.batch_alter_table("amphora", schema=None) as batch_op:
        batch_op.add_column(sa.Column("assigned_by", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("amphora", schema=None) as batch_op:
        batch_op.drop_column("assigned_by")
    with op.batch_alter_table("amphora_health", schema=None) as batch_op:
        batch_op.drop_column("lost_at")
