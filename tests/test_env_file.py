"""Which settings file a command reads: found the same from any folder (cron's $HOME, an operator's shell)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli

from tuttle_prep.commands import common

LOCK_KEY = "from-the-env-file/data-prep.lock"


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with no .env, made the current one (as $HOME is for cron)."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def _checkout(tmp_path: Path) -> Path:
    checkout = tmp_path / "opt-tuttle-prep"
    checkout.mkdir()
    (checkout / ".env").write_text(f"TUTTLE_LOCK_KEY={LOCK_KEY}\n", encoding="utf-8")
    return checkout


def test_status_from_another_folder_reads_the_checkout_s_env(bucket, tmp_path, elsewhere, monkeypatch):
    monkeypatch.setattr(common, "REPO_FOLDER", _checkout(tmp_path))

    result = run_cli("status")

    assert f"run lock s3://{bucket.name}/{LOCK_KEY}: free" in result.stdout, result.output


def test_tuttle_env_file_names_the_settings_file_from_any_folder(bucket, tmp_path, elsewhere, monkeypatch):
    monkeypatch.setenv("TUTTLE_ENV_FILE", str(_checkout(tmp_path) / ".env"))

    result = run_cli("status")

    assert f"run lock s3://{bucket.name}/{LOCK_KEY}: free" in result.stdout, result.output


def test_the_current_folder_s_env_still_comes_first(bucket, tmp_path, elsewhere, monkeypatch):
    monkeypatch.setattr(common, "REPO_FOLDER", _checkout(tmp_path))
    (elsewhere / ".env").write_text("TUTTLE_LOCK_KEY=here/data-prep.lock\n", encoding="utf-8")

    result = run_cli("status")

    assert f"run lock s3://{bucket.name}/here/data-prep.lock: free" in result.stdout, result.output


def test_a_tuttle_env_file_that_does_not_exist_is_one_sentence_exit_2(bucket, tmp_path, elsewhere, monkeypatch):
    monkeypatch.setenv("TUTTLE_ENV_FILE", str(tmp_path / "nosuch.env"))

    result = run_cli("status")

    assert result.exit_code == 2
    assert f"TUTTLE_ENV_FILE={tmp_path / 'nosuch.env'} does not exist" in result.stderr
    assert "Traceback" not in result.output
