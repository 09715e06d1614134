"""A backup whose file no longer matches its checksum is marked so wherever it is listed,
whether a restore or a verification caught it; it verifies again once the file is back.

Real jobs (worker processes) on a SQLite target, through the panel (TestClient) and the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import page_soup
from test_web_backups import Panel, make_panel  # noqa: F401 - make_panel is a fixture

from admin.backups import records
from admin.backups.files import sha256_of
from admin.cli import main as cli_main


def _tamper(path: Path) -> bytes:
    original = path.read_bytes()
    path.write_bytes(original + b"changed behind the panel's back")
    return original


def _listed(panel: Panel, backup_id: int) -> tuple[str, str]:
    """(the list row's state text, the backup page's state text)."""
    row = page_soup(panel.client.get("/backups")).select_one(
        f'tr[data-backup-id="{backup_id}"] .backup-state'
    )
    facts = page_soup(panel.client.get(f"/backups/{backup_id}")).select_one(".backup-state-line")
    assert row is not None and facts is not None
    return row.get_text(" ", strip=True), facts.get_text(" ", strip=True)


def _cli_status(
    panel: Panel,
    backup_id: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> str:
    settings = panel.settings
    for name, value in {
        "DATABASE_URL": settings.database_url,
        "ADMIN_DATABASE_URL": settings.admin_database_url,
        "VAR_DIR": str(settings.var_dir),
        "BACKUP_DIR": str(settings.backup_dir),
        "ALEMBIC_CONFIG": str(settings.alembic_config),
        "SECRET_KEY": settings.secret_key or "",
    }.items():
        monkeypatch.setenv(name, value)
    assert cli_main(["backups", "list"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()[1:]]
    return next(row[2] for row in rows if row[0] == str(backup_id))


def test_a_changed_file_caught_by_a_restore_is_marked_everywhere(
    make_panel: Callable[..., Panel],  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    panel = make_panel()
    panel.sign_in("operator")
    backup = panel.take_backup()
    assert _listed(panel, backup.id)[0].startswith("✓ verified")
    path = panel.settings.backup_dir / (backup.file_name or "")
    _tamper(path)

    restore = panel.job_from(
        panel.post(
            f"/backups/{backup.id}/restore",
            {"mode": "new", "new_database": "copy.sqlite3", "confirm": "crm.sqlite3"},
            f"/backups/{backup.id}",
        )
    )

    assert restore.status == "failed" and "has changed since it was taken" in (restore.error or "")
    row = panel.backup(backup.id)
    assert row.status == "failed" and row.found_sha256 == sha256_of(path)
    assert records.file_changed(row)
    in_list, on_page = _listed(panel, backup.id)
    assert "checksum mismatch" in in_list and "checksum mismatch" in on_page
    assert _cli_status(panel, backup.id, monkeypatch, capsys) == "failed (checksum mismatch)"
    failed = panel.events("backup-failed")[-1]
    assert failed.backup_id == backup.id and failed.job_id == restore.id
    # No longer offered for a restore, nor counted as the last verified backup.
    assert page_soup(panel.client.get(f"/backups/{backup.id}")).select_one("#restore") is None


def test_a_changed_file_caught_by_a_verification_is_marked_until_it_matches_again(
    make_panel: Callable[..., Panel],  # noqa: F811 - the fixture imported above
) -> None:
    panel = make_panel()
    panel.sign_in("operator")
    backup = panel.take_backup()
    path = panel.settings.backup_dir / (backup.file_name or "")
    original = _tamper(path)

    check = panel.job_from(panel.post(f"/backups/{backup.id}/verify"))

    assert check.status == "failed"
    assert records.file_changed(panel.backup(backup.id))
    assert all("checksum mismatch" in text for text in _listed(panel, backup.id))
    # The file put back as it was taken: verified again, and the mark is gone.
    path.write_bytes(original)
    again = panel.job_from(panel.post(f"/backups/{backup.id}/verify"))
    assert again.status == "succeeded", again.error
    row = panel.backup(backup.id)
    assert row.status == "verified" and row.found_sha256 is None
    assert all("checksum mismatch" not in text for text in _listed(panel, backup.id))
