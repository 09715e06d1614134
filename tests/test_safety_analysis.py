"""Risk badges and squawk lint on real Alembic projects (offline SQL, no server needed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from reading_support import CRM_INI
from safety_support import DATA, DES, IRR, LIVE, LOCK, NONTX, PG_OFFLINE, RISKY, RISKY_UPGRADE

from admin import analysis, migrations
from admin.analysis import lint
from admin.analysis.statements import split
from admin.migrations import Direction

ALL_OPTIONS = lint.LintOptions()  # every squawk rule (the settings' default leaves some out)


@pytest.fixture
def risky(alembic_project: Callable[..., Path]) -> migrations.Project:
    return migrations.open_project(alembic_project(RISKY))


def kinds(risk: analysis.StepRisk) -> set[str]:
    return {b.kind.value for b in risk.badges}


def test_each_badge_is_on_the_revision_that_has_it_and_on_no_other(
    risky: migrations.Project, tmp_path: Path
) -> None:
    risks = analysis.analyze(risky, PG_OFFLINE, RISKY_UPGRADE, var_dir=tmp_path / "var")
    assert {rid: kinds(r.upgrade) for rid, r in risks.items()} == RISKY_UPGRADE
    for risk in risks.values():
        assert all(b.reason and "\n" not in b.reason for b in risk.upgrade.badges)


def test_reasons_name_what_the_step_does(risky: migrations.Project) -> None:
    risks = analysis.analyze(risky, PG_OFFLINE, [r.id for r in RISKY])
    drop = risks["r02dropcol01"].upgrade.badges[0]
    assert drop.reason == "drops column t.c and its data" and drop.objects == ("t.c",)
    assert "without CONCURRENTLY" in risks["r04index0001"].upgrade.badges[0].reason
    narrow = {b.kind.value: b for b in risks["r09narrow001"].upgrade.badges}
    assert narrow[DES].reason.startswith("narrows t.name from sa.String(50) to sa.String(10)")
    assert "volatile default" in risks["r10volatile1"].upgrade.badges[0].reason
    # A downgrade that raises: it fails (a plan crossing it cannot finish), named in the upgrade.
    down = risks["r06noreturn1"].downgrade
    assert kinds(down) == {IRR} and down.fails
    assert "raises NotImplementedError: u cannot be taken back" in down.badges[0].reason
    assert risks["r06noreturn1"].upgrade.badges[0].objects == ("r06noreturn1",)
    # A downgrade that does nothing after a schema change: irreversible, but it does not fail.
    nothing = risks["r11nodown001"]
    assert not nothing.downgrade.fails and nothing.upgrade.badges[0].objects == ()
    # Downgrades have badges of their own: dropping what the upgrade created is destructive.
    assert kinds(risks["r01base00001"].downgrade) == {DES}
    assert kinds(risks["r03backfill1"].downgrade) == {DATA}


def test_sqlite_sees_its_own_sql(risky: migrations.Project, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    risks = analysis.analyze(risky, url, [r.id for r in RISKY])
    # No long locks on SQLite, and an index there is not concurrent.
    assert kinds(risks["r04index0001"].upgrade) == set()
    assert LOCK not in kinds(risks["r10volatile1"].upgrade)
    assert kinds(risks["r02dropcol01"].upgrade) == {DES}


def test_the_crm_project(tmp_path: Path) -> None:
    project = migrations.open_project(CRM_INI)
    ids = [r.id for r in project.graph().revisions]
    pg = analysis.analyze(project, PG_OFFLINE, ids)
    assert kinds(pg["e47a90b3d6f1"].upgrade) == {IRR, DES}
    assert pg["e47a90b3d6f1"].downgrade.fails
    assert kinds(pg["5d0c7be2a918"].upgrade) == {DATA}
    assert kinds(pg["f19b3a6c4e85"].upgrade) == {NONTX}
    assert kinds(pg["196dfdb50f6c"].upgrade) == set()
    assert kinds(pg["b5f2c8d91e03"].upgrade) == set()
    sqlite = analysis.analyze(project, f"sqlite:///{tmp_path / 'crm.sqlite3'}", ids)
    # SQLite: no CONCURRENTLY, and batch mode needs the live table to drop a column.
    assert kinds(sqlite["f19b3a6c4e85"].upgrade) == set()
    assert kinds(sqlite["e47a90b3d6f1"].upgrade) == {IRR, DES, LIVE}


def test_results_are_cached_by_file_hash(
    alembic_project: Callable[..., Path], tmp_path: Path
) -> None:
    ini = alembic_project(RISKY[:2])
    project = migrations.open_project(ini)
    var = tmp_path / "var"
    first = analysis.analyze(project, PG_OFFLINE, ["r02dropcol01"], var_dir=var)
    path = project.graph().by_id["r02dropcol01"].path
    path.write_text(path.read_text().replace("op.drop_column('t', 'c')", "pass"))
    project.graph(max_age=0)
    second = analysis.analyze(project, PG_OFFLINE, ["r02dropcol01"], var_dir=var)
    # The edited file was analysed afresh, and its result kept on disk.
    assert (var / "analysis-cache.sqlite3").is_file()
    assert kinds(first["r02dropcol01"].upgrade) == {DES}
    assert kinds(second["r02dropcol01"].upgrade) == set()


def test_squawk_finds_the_drop_column_and_the_plain_index_never_the_version_table(
    risky: migrations.Project, tmp_path: Path
) -> None:
    ids = [r.id for r in RISKY]
    report = lint.lint(risky, PG_OFFLINE, ids, Direction.UPGRADE, ALL_OPTIONS)
    assert report.applies
    rules = {(f.revision, f.rule) for f in report.findings}
    assert ("r02dropcol01", "ban-drop-column") in rules
    assert ("r04index0001", "require-concurrent-index-creation") in rules
    assert not any("alembic_version" in f.statement for f in report.findings)
    drop = next(f for f in report.findings if f.rule == "ban-drop-column")
    assert drop.statement == "ALTER TABLE t DROP COLUMN c"
    assert report.unrendered == ("r07livedb001",)
    # Excluded rules are left out; SQLite targets are not linted.
    fewer = lint.lint(
        risky, PG_OFFLINE, ids, Direction.UPGRADE, lint.LintOptions(excluded=("ban-drop-column",))
    )
    assert "ban-drop-column" not in {f.rule for f in fewer.findings}
    sqlite = lint.lint(
        risky, f"sqlite:///{tmp_path / 'l.sqlite3'}", ids, Direction.UPGRADE, ALL_OPTIONS
    )
    assert not sqlite.applies and "PostgreSQL only" in (sqlite.reason or "")


def test_crm_findings(tmp_path: Path) -> None:
    project = migrations.open_project(CRM_INI)
    ids = [r.id for r in project.graph().revisions]
    report = lint.lint(project, PG_OFFLINE, ids, Direction.UPGRADE, ALL_OPTIONS)
    drops = [f for f in report.findings if f.rule == "ban-drop-column"]
    assert [(f.revision, f.statement) for f in drops] == [
        ("e47a90b3d6f1", "ALTER TABLE clients DROP COLUMN passport_number")
    ]
    assert not any("alembic_version" in f.statement for f in report.findings)


def test_statements_keep_their_lines_and_mark_the_bookkeeping() -> None:
    sql = (
        "BEGIN;\n\n-- Running upgrade  -> a\n\nCREATE TABLE alembic_version (v VARCHAR(32));\n\n"
        "ALTER TABLE t\n    DROP COLUMN c;\n\n"
        "INSERT INTO alembic_version (version_num) VALUES ('a');\n\nCOMMIT;\n"
    )
    found = split(sql)
    assert [(s.line, s.bookkeeping) for s in found] == [
        (1, False),
        (5, True),
        (7, False),
        (10, True),
        (12, False),
    ]


def test_the_span_of_revisions_is_what_lies_between_them(
    alembic_project: Callable[..., Path],
) -> None:
    from projects import BRANCHED

    from admin.analysis.rendering import span

    graph = migrations.open_project(alembic_project(BRANCHED)).graph()
    # a1 -> b2 -> (c3 | c4) -> m5 -> d6
    assert span(graph, ["c3c3c3c3c3c3", "d6d6d6d6d6d6"]) == (("d6d6d6d6d6d6",), ("c4c4c4c4c4c4",))
    assert span(graph, ["b2b2b2b2b2b2", "c3c3c3c3c3c3"]) == (("c3c3c3c3c3c3",), ("a1a1a1a1a1a1",))
    assert span(graph, ["a1a1a1a1a1a1", "b2b2b2b2b2b2"]) == (("b2b2b2b2b2b2",), ())
    # Two tops: no single plan holds them (the caller renders the whole history).
    assert span(graph, ["c3c3c3c3c3c3", "c4c4c4c4c4c4"])[0] == ("c3c3c3c3c3c3", "c4c4c4c4c4c4")


def test_many_revisions_render_as_one_plan_over_their_span_only(
    alembic_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from projects import Rev

    from admin.analysis.rendering import ONE_BY_ONE, rendered_steps

    count = 3 * ONE_BY_ONE
    line = [
        Rev(
            f"r{i:04d}",
            f"r{i - 1:04d}" if i else None,
            f"table {i}",
            f"op.create_table('t{i}', sa.Column('id', sa.Integer, primary_key=True))",
            f"op.drop_table('t{i}')",
        )
        for i in range(count)
    ]
    project = migrations.open_project(alembic_project(line))
    rendered: list[migrations.Plan] = []
    render = migrations.render

    def recorded(*args: object) -> migrations.SqlScript:
        rendered.append(args[1])  # type: ignore[arg-type]
        return render(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(migrations, "render", recorded)
    wanted = [f"r{i:04d}" for i in range(ONE_BY_ONE, 2 * ONE_BY_ONE + 1)]
    for direction in Direction:
        found = rendered_steps(project, wanted, PG_OFFLINE, direction)
        assert sorted(found) == wanted
        assert all(step.sql and step.error is None for step in found.values())
        # One plan, over the revisions asked for and nothing around them.
        assert sorted(rendered.pop().revision_ids) == wanted and not rendered
        assert f"t{ONE_BY_ONE}" in found[wanted[0]].sql  # type: ignore[operator]
