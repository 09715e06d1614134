"""A small project with one risk per revision (and the CRM's), for the safety tests."""

from __future__ import annotations

from projects import Rev

PG_OFFLINE = "postgresql+psycopg2://lint@localhost/lint"

# Each revision carries the upgrade badges named in RISKY_UPGRADE (on PostgreSQL) and no other.
RISKY = [
    Rev(
        "r01base00001",
        None,
        "create t",
        "op.create_table('t', sa.Column('id', sa.Integer, primary_key=True), "
        "sa.Column('name', sa.String(50)), sa.Column('c', sa.Integer))",
        "op.drop_table('t')",
    ),
    Rev(
        "r02dropcol01",
        "r01base00001",
        "drop t.c",
        "op.drop_column('t', 'c')",
        "op.add_column('t', sa.Column('c', sa.Integer))",
    ),
    Rev(
        "r03backfill1",
        "r02dropcol01",
        "backfill names",
        "op.execute(\"UPDATE t SET name = 'x' WHERE name IS NULL\")",
        "op.execute(\"UPDATE t SET name = NULL WHERE name = 'x'\")",
    ),
    Rev(
        "r04index0001",
        "r03backfill1",
        "index t.name",
        "op.create_index('ix_t_name', 't', ['name'])",
        "op.drop_index('ix_t_name', table_name='t')",
    ),
    Rev(
        "r05concurr01",
        "r04index0001",
        "index t.id concurrently",
        "with op.get_context().autocommit_block():\n"
        "    op.create_index('ix_t_id', 't', ['id'], postgresql_concurrently=True)",
        "with op.get_context().autocommit_block():\n"
        "    op.drop_index('ix_t_id', table_name='t', postgresql_concurrently=True)",
    ),
    Rev(
        "r06noreturn1",
        "r05concurr01",
        "rename for good",
        "op.create_table('u', sa.Column('id', sa.Integer, primary_key=True))",
        "raise NotImplementedError('u cannot be taken back. Restore a backup')",
    ),
    Rev(
        "r07livedb001",
        "r06noreturn1",
        "read rows in python",
        "rows = op.get_bind().execute(sa.text('SELECT id FROM t')).fetchall()",
        "pass",
    ),
    Rev(
        "r08notnull01",
        "r07livedb001",
        "names required",
        "op.alter_column('t', 'name', nullable=False, existing_type=sa.String(50))",
        "op.alter_column('t', 'name', nullable=True, existing_type=sa.String(50))",
    ),
    Rev(
        "r09narrow001",
        "r08notnull01",
        "shorter names",
        "op.alter_column('t', 'name', type_=sa.String(10), existing_type=sa.String(50))",
        "op.alter_column('t', 'name', type_=sa.String(50), existing_type=sa.String(10))",
    ),
    Rev(
        "r10volatile1",
        "r09narrow001",
        "random weights",
        "op.add_column('t', sa.Column('w', sa.Float, server_default=sa.text('random()')))",
        "op.drop_column('t', 'w')",
    ),
    Rev(
        "r11nodown001",
        "r10volatile1",
        "create v, no way back",
        "op.create_table('v', sa.Column('id', sa.Integer, primary_key=True))",
        "pass",
    ),
    Rev(
        "r12truncate1",
        "r11nodown001",
        "empty t",
        "op.execute('TRUNCATE t')",
        "pass",
    ),
]
RISKY_HEAD = RISKY[-1].id

IRR, DES, DATA, LOCK, NONTX, LIVE = (
    "irreversible",
    "destructive",
    "data migration",
    "long lock",
    "non-transactional",
    "needs a live database",
)
RISKY_UPGRADE: dict[str, set[str]] = {
    "r01base00001": set(),
    "r02dropcol01": {DES},
    "r03backfill1": {DATA},
    "r04index0001": {LOCK},
    "r05concurr01": {NONTX},
    "r06noreturn1": {IRR},
    "r07livedb001": {LIVE},
    "r08notnull01": {LOCK},
    "r09narrow001": {DES, LOCK},
    "r10volatile1": {LOCK},
    "r11nodown001": {IRR},
    "r12truncate1": {DES},
}
