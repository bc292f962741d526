"""The method protocol: config validation loads no training code, and a new loss weighting is one module plus one
registry line (no edit to trainer.py, config.py or sweep.py)."""

import subprocess
import sys
import textwrap

import pytest
import yaml

from talr.config import ConfigError, config_from_dict, load_config
from talr.methods import LOSS_WEIGHTINGS, PRESETS


def test_importing_the_config_and_the_registry_imports_no_torch():
    code = "import sys, talr.config, talr.methods; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registry_is_lazy_and_names_the_axis_when_a_name_is_unknown():
    assert "talr" in LOSS_WEIGHTINGS and LOSS_WEIGHTINGS["talr"] == "talr.methods.talr:TalrWeighting"
    assert LOSS_WEIGHTINGS.load("talr").scope == "batch"
    with pytest.raises(KeyError, match="method.loss: unknown value 'tarl'"):
        LOSS_WEIGHTINGS.load("tarl")


def test_a_preset_sets_its_sections_and_the_configs_own_keys_win(monkeypatch):
    monkeypatch.setitem(PRESETS, "talr_seq_test", {"method": {"loss": "talr", "regularizer": "none",
                                                               "adapter": "full", "averaging": "none"},
                                                    "talr": {"tau_scope": "sequence", "w_min": 0.05}})
    config = config_from_dict({"data": {"train": "x.jsonl"}, "method": "talr_seq_test", "talr": {"w_min": 0.2}})
    assert config.method.loss == "talr" and config.talr.tau_scope == "sequence" and config.talr.w_min == 0.2


TOY = '''
"""A toy weighting for the protocol test: every supervised token weighs `scale`."""
from dataclasses import dataclass

from talr.config import ConfigError
from talr.methods.base import TokenWeighting


@dataclass
class ToyOptions:
    scale: float = 1.0

    def check(self):
        if not self.scale > 0:
            raise ConfigError(f"scale: must be positive, got {self.scale}")


class ToyWeighting(TokenWeighting):
    scope = "labels"
    Options = ToyOptions

    def weights(self, logp, mask, side):
        return mask.to(logp.dtype) * self.config.options_for("toy").scale
'''


@pytest.fixture
def data_file(tmp_path):
    from talr.data.formats import write_jsonl

    examples = [{"messages": [{"role": "user", "content": f"Add {i} and {i + 1}."},
                              {"role": "assistant", "content": f"The answer is {2 * i + 1}."}]} for i in range(8)]
    return write_jsonl(examples, tmp_path / "train.jsonl")


@pytest.fixture
def toy_weighting(tmp_path, monkeypatch):
    (tmp_path / "toy_weighting.py").write_text(textwrap.dedent(TOY))
    monkeypatch.syspath_prepend(str(tmp_path))
    LOSS_WEIGHTINGS.register("toy", "toy_weighting:ToyWeighting")  # the one registry line
    yield
    LOSS_WEIGHTINGS._entries.pop("toy")
    LOSS_WEIGHTINGS._loaded.pop("toy", None)


def test_a_new_weighting_is_one_module_plus_one_registry_line(toy_weighting, tmp_path, tiny_model_dir, data_file):
    from talr.trainer import train

    with pytest.raises(ConfigError, match="toy.scale: must be positive"):
        config_from_dict({"data": {"train": "x.jsonl"}, "method": {"loss": "toy"}, "toy": {"scale": -1.0}})
    with pytest.raises(ConfigError, match="toy.scael: unknown key"):
        config_from_dict({"data": {"train": "x.jsonl"}, "method": {"loss": "toy"}, "toy": {"scael": 1.0}})

    runs = {}
    for scale in (1.0, 3.0):
        config = config_from_dict({
            "model": str(tiny_model_dir), "output_dir": str(tmp_path / f"run{scale}"), "seed": 0,
            "method": {"loss": "toy"}, "toy": {"scale": scale},
            "data": {"train": str(data_file), "max_length": 64},
            "probes": {"enabled": False},
            "training": {"max_steps": 1, "per_device_batch_size": 2, "logging_steps": 1, "autocast": "none",
                         "learning_rate": 1e-3, "save_model": False}})
        runs[scale] = train(config)
    saved = yaml.safe_load((runs[3.0] / "config.yaml").read_text())
    assert saved["toy"] == {"scale": 3.0}  # the method's options are written back under their own key
    assert load_config(runs[3.0] / "config.yaml").options_for("toy").scale == 3.0
    first_loss = {scale: [line for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line][0]
                  for scale, run in runs.items()}
    loss = {scale: yaml.safe_load(line)["loss"] for scale, line in first_loss.items()}
    assert loss[3.0] == pytest.approx(3.0 * loss[1.0], rel=1e-4)  # the trainer reduced the toy's weights
