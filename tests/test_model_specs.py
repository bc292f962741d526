"""Unknown models fail before anything loads, in one line naming what was tried; a cached hub id is accepted."""

import pytest
from huggingface_hub import constants

from talr import cli
from talr.config import config_from_dict, save_config
from talr.models import ModelNotFoundError, check_model_spec, resolve_model_path


@pytest.fixture()
def hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def _cache_repo(cache, repo_id, files=("config.json",)):
    """A hub repository laid out as huggingface_hub caches it."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    for name in files:
        (snapshot / name).write_text("{}")


def test_unknown_hub_id_offline_fails_in_one_line_naming_what_was_tried(hub_cache):
    with pytest.raises(ModelNotFoundError) as caught:
        check_model_spec("no/such-model-xyz")
    message = str(caught.value)
    assert "\n" not in message
    for tried in ("'no/such-model-xyz' not found", "smollm2-135m-instruct", "folder", str(hub_cache),
                  "HF_HUB_OFFLINE is set"):
        assert tried in message


def test_a_cached_hub_id_is_accepted_offline(hub_cache):
    _cache_repo(hub_cache, "org/cached-model")
    check_model_spec("org/cached-model")
    assert resolve_model_path("org/cached-model") == "org/cached-model"


def test_an_invalid_repository_id_is_refused_without_the_network(hub_cache, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(ModelNotFoundError, match="not a valid repository id"):
        check_model_spec("no such model")


def test_online_the_hub_is_asked_and_its_error_becomes_one_line(hub_cache, monkeypatch):
    import transformers

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    asked = []

    def unreachable(name, *args, **kwargs):
        asked.append(name)
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.\nCheck your internet "
                      "connection or see how to run the library in offline mode.")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", unreachable)
    with pytest.raises(ModelNotFoundError) as caught:
        check_model_spec("no/such-model-xyz")
    assert asked == ["no/such-model-xyz"]
    assert "\n" not in str(caught.value) and str(caught.value).endswith(
        "the hub (We couldn't connect to 'https://huggingface.co' to load the files.)")


def test_talr_train_with_an_unknown_model_fails_before_writing_anything(tmp_path, hub_cache, capsys):
    config = config_from_dict({"model": "no/such-model-xyz", "output_dir": str(tmp_path / "run"),
                               "data": {"train": str(tmp_path / "train.jsonl")}})
    save_config(config, tmp_path / "config.yaml")
    assert cli.main(["train", "-c", str(tmp_path / "config.yaml")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("talr train: error: model 'no/such-model-xyz' not found")
    assert not (tmp_path / "run").exists()


def test_a_missing_local_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_model_spec(str(tmp_path / "nowhere"))
