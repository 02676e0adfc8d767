import os
from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError

from seasonrec.config import Settings, load_settings
from seasonrec.errors import SeasonrecError


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for key in list(os.environ):
        if key.startswith("SEASONREC__"):
            monkeypatch.delenv(key)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    return path


def _one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_default_config_loads_and_matches_documented_defaults():
    settings = load_settings(environ={})
    assert isinstance(settings, Settings)
    assert settings.feast.profile == "embedded"
    assert settings.generate.seed == 7


def test_yaml_values_are_applied(tmp_path):
    path = _write(tmp_path, "generate:\n  users: 123\n  start: 2020-02-01\nfeast:\n  project: other\n")
    settings = load_settings(path, environ={})
    assert settings.generate.users == 123
    assert settings.generate.start == date(2020, 2, 1)
    assert settings.feast.project == "other"
    # Keys the file leaves out keep their defaults.
    assert settings.generate.items == Settings().generate.items


def test_empty_file_gives_defaults(tmp_path):
    assert load_settings(_write(tmp_path, ""), environ={}) == Settings()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("paths:\n  data_dir: data\n  dataa_dir: oops\n", "paths.dataa_dir"),
        ("colour: red\n", "colour"),
        ("feast:\n  profil: redis\n", "feast.profil"),
    ],
)
def test_unknown_key_is_rejected_naming_the_key(tmp_path, text, key):
    path = _write(tmp_path, text)
    with pytest.raises(SeasonrecError) as excinfo:
        load_settings(path, environ={})
    message = _one_line_error(excinfo)
    assert key in message
    assert str(path) in message


def test_env_override_sets_nested_key(tmp_path):
    path = _write(tmp_path, "feast:\n  profile: embedded\n")
    settings = load_settings(path, environ={"SEASONREC__FEAST__PROFILE": "redis"})
    assert settings.feast.profile == "redis"


def test_env_override_is_read_from_the_process_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SEASONREC__FEAST__PROFILE", "redis")
    monkeypatch.setenv("SEASONREC__GENERATE__USERS", "17")
    settings = load_settings(_write(tmp_path, "{}\n"))
    assert settings.feast.profile == "redis"
    assert settings.generate.users == 17


def test_env_override_keeps_sibling_keys_from_the_file(tmp_path):
    path = _write(tmp_path, "feast:\n  project: mine\n  profile: embedded\n")
    settings = load_settings(path, environ={"SEASONREC__FEAST__PROFILE": "redis"})
    assert settings.feast.project == "mine"


def test_unrelated_environment_variables_are_ignored(tmp_path):
    settings = load_settings(_write(tmp_path, "{}\n"), environ={"FEAST__PROFILE": "mongo", "SEASONREC_X": "1"})
    assert settings.feast.profile == "embedded"


def test_env_override_with_bad_value_is_rejected(tmp_path):
    with pytest.raises(SeasonrecError) as excinfo:
        load_settings(_write(tmp_path, "{}\n"), environ={"SEASONREC__FEAST__PROFILE": "mongo"})
    assert "feast.profile" in _one_line_error(excinfo)


def test_env_override_with_unknown_key_is_rejected(tmp_path):
    with pytest.raises(SeasonrecError) as excinfo:
        load_settings(_write(tmp_path, "{}\n"), environ={"SEASONREC__FEAST__PROFLE": "redis"})
    assert "feast.profle" in _one_line_error(excinfo)


def test_out_of_range_value_is_rejected(tmp_path):
    with pytest.raises(SeasonrecError) as excinfo:
        load_settings(_write(tmp_path, "generate:\n  users: 0\n"), environ={})
    assert "generate.users" in _one_line_error(excinfo)


def test_missing_file_is_a_user_error(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SeasonrecError) as excinfo:
        load_settings(missing, environ={})
    assert str(missing) in _one_line_error(excinfo)


@pytest.mark.parametrize("text", ["- just\n- a list\n", "key: [unclosed\n"])
def test_malformed_yaml_is_a_one_line_user_error(tmp_path, text):
    path = _write(tmp_path, text)
    with pytest.raises(SeasonrecError) as excinfo:
        load_settings(path, environ={})
    assert str(path) in _one_line_error(excinfo)


def test_settings_are_immutable():
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.feast.profile = "redis"
    assert settings.feast.profile == "embedded"


def test_relative_data_dir_resolves_against_project_root_and_absolute_stays(tmp_path):
    relative = load_settings(_write(tmp_path, "paths:\n  data_dir: somewhere\n"), environ={})
    assert relative.paths.root.is_absolute()
    assert relative.paths.canonical == relative.paths.root / "canonical"
    assert relative.paths.root.name == "somewhere"
    absolute = load_settings(_write(tmp_path, f"paths:\n  data_dir: {tmp_path}\n"), environ={})
    assert absolute.paths.raw == tmp_path / "raw"
