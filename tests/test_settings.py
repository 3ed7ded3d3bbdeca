"""Settings: the documented defaults, validation naming the variable, and the CLI's exit 2 with one sentence."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli

from tuttle_prep.errors import ConfigError
from tuttle_prep.settings import Settings, parse_split


def test_defaults_are_the_production_layout():
    s = Settings.from_env({})
    assert s.bucket == "media.angel-nft.com"
    assert s.manifests_prefix == "tuttle_twins/manifests/"
    assert s.ml_prefix == "tuttle_twins/ML/"
    assert s.source_prefix == "tuttle_twins/"
    assert s.img_size == "thumbnails"
    assert s.split == {"train": 0.7, "validate": 0.2, "test": 0.1}
    assert list(s.split) == ["train", "validate", "test"]
    assert s.split_seed.strip()
    assert s.split_group_seconds == 0
    assert s.split_stratify == "rarity"
    assert s.google_credentials_file is None


def test_optional_sheet_columns_are_rarity_headers_matched_as_in_sheets():
    env = {"TUTTLE_SHEET_OPTIONAL_COLUMNS": " jonny’s reclassification , SUPERVISED CLASSIFICATION,"}
    assert Settings.from_env(env).sheet_optional_columns == ("JONNY's RECLASSIFICATION", "SUPERVISED CLASSIFICATION")
    assert Settings.from_env({}).sheet_optional_columns == ()


def test_every_variable_is_read(tmp_path: Path):
    s = Settings.from_env(
        {
            "TUTTLE_BUCKET": "my-bucket",
            "TUTTLE_MANIFESTS_PREFIX": "/m",
            "TUTTLE_ML_PREFIX": "data/ML/",
            "TUTTLE_SOURCE_PREFIX": "src",
            "TUTTLE_IMG_SIZE": "high_res",
            "TUTTLE_SPLIT": " train = 0.8 , test=0.2 ",
            "TUTTLE_SPLIT_SEED": "reshuffle-2",
            "TUTTLE_SPLIT_GROUP_SECONDS": "3",
            "TUTTLE_SPLIT_STRATIFY": " None ",
            "TUTTLE_VERSIONS_KEEP": "30",
            "TUTTLE_VERSIONS_PINNED": " 20261101T023005Z-4f1c9a02b7e1.parquet, 20261201 ,",
            "GOOGLE_DRIVE_CREDENTIALS_FILE": str(tmp_path / "key.json"),
        }
    )
    assert (s.versions_keep, s.versions_pinned) == (30, ("20261101T023005Z-4f1c9a02b7e1", "20261201"))
    assert (s.bucket, s.manifests_prefix, s.ml_prefix, s.source_prefix) == ("my-bucket", "m/", "data/ML/", "src/")
    assert (s.img_size, s.split, s.split_seed, s.split_group_seconds) == (
        "high_res",
        {"train": 0.8, "test": 0.2},
        "reshuffle-2",
        3,
    )
    assert s.split_stratify == "none"
    assert s.google_credentials_file == tmp_path / "key.json"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TUTTLE_BUCKET": " "}, "TUTTLE_BUCKET"),
        ({"TUTTLE_IMG_SIZE": "huge"}, "TUTTLE_IMG_SIZE"),
        ({"TUTTLE_ML_PREFIX": "/"}, "TUTTLE_ML_PREFIX"),
        ({"TUTTLE_SPLIT_SEED": "  "}, "TUTTLE_SPLIT_SEED"),
        ({"TUTTLE_SPLIT_GROUP_SECONDS": "two"}, "TUTTLE_SPLIT_GROUP_SECONDS"),
        ({"TUTTLE_SPLIT_GROUP_SECONDS": "-1"}, "TUTTLE_SPLIT_GROUP_SECONDS"),
        ({"TUTTLE_SPLIT_STRATIFY": "class"}, "TUTTLE_SPLIT_STRATIFY must be one of rarity, none; got 'class'"),
        ({"TUTTLE_SPLIT": "train=0.7,validate=0.2"}, "add up to 1"),
        ({"TUTTLE_SPLIT": "train=0.7,validate=0.4,test=-0.1"}, "between 0 and 1"),
        ({"TUTTLE_SPLIT": "train=seventy,test=0.3"}, "not a number"),
        ({"TUTTLE_SPLIT": "train:1"}, "name=share"),
        ({"TUTTLE_SPLIT": "train=0.5,train=0.5"}, "named twice"),
        ({"TUTTLE_SPLIT": "tra/in=1"}, "name=share"),
        ({"TUTTLE_SPLIT": ","}, "no datasets"),
        ({"TUTTLE_VERSIONS_KEEP": "0"}, "TUTTLE_VERSIONS_KEEP must be at least 1"),
        ({"TUTTLE_VERSIONS_KEEP": "all"}, "TUTTLE_VERSIONS_KEEP must be a whole number"),
        ({"TUTTLE_VERSIONS_PINNED": "last-monday"}, "TUTTLE_VERSIONS_PINNED: 'last-monday' is not a version id"),
        ({"TUTTLE_SHEET_OPTIONAL_COLUMNS": "JONNY RECLASSIFICATION"}, "TUTTLE_SHEET_OPTIONAL_COLUMNS"),
    ],
)
def test_bad_values_name_the_variable(env, named):
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)


def test_split_keeps_the_order_given():
    assert list(parse_split("test=0.1,train=0.9")) == ["test", "train"]


def test_cli_exits_2_with_one_sentence_on_a_bad_setting(monkeypatch):
    monkeypatch.setenv("TUTTLE_SPLIT", "train=0.5,test=0.4")
    result = run_cli("sync", "--dry-run")
    assert result.exit_code == 2
    message = "configuration error: TUTTLE_SPLIT: shares must add up to 1, they add up to 0.9"
    assert message in result.stderr.splitlines()
    assert "Traceback" not in result.output


def test_env_file_is_read_and_the_environment_wins(tmp_path: Path, monkeypatch, bucket):
    env_file = tmp_path / "other.env"
    env_file.write_text("TUTTLE_IMG_SIZE=gigantic\nTUTTLE_SPLIT_SEED=from-file\n")
    result = run_cli("--env-file", str(env_file), "sync", "--dry-run")
    assert result.exit_code == 2 and "TUTTLE_IMG_SIZE" in result.stderr
    monkeypatch.setenv("TUTTLE_IMG_SIZE", "mid_res")
    result = run_cli("--env-file", str(env_file), "sync", "--dry-run")
    assert result.exit_code == 1  # past the settings, to the empty bucket
    assert "no manifests" in result.stderr


def test_a_missing_env_file_is_a_usage_error(tmp_path: Path):
    result = run_cli("--env-file", str(tmp_path / "nope.env"), "sync")
    assert result.exit_code == 2
    assert "nope.env does not exist" in result.stderr and "Traceback" not in result.output
