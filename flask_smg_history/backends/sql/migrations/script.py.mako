"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from alembic import context, op
import sqlalchemy as sa
${imports if imports else ""}

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}



def upgrade() -> None:
    prefix, schema = context.config.attributes["smg_prefix"], context.config.attributes["smg_schema"]
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    prefix, schema = context.config.attributes["smg_prefix"], context.config.attributes["smg_schema"]
    ${downgrades if downgrades else "pass"}
