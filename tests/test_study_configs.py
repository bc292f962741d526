"""The study's sweep configs (configs/sweeps/gpu_*.yaml, study_*.yaml) validate, and the GPU ones plan offline."""

import socket
from pathlib import Path

import pytest
import yaml

from talr.cli import main
from talr.config import ConfigError, load_config
from talr.paths import data_dir
from talr.sweep import grid_points, load_sweep_config

SWEEPS = Path(__file__).resolve().parents[1] / "configs" / "sweeps"
GPU_CONFIGS = ("gpu_esci.yaml", "gpu_math.yaml", "gpu_medcalc.yaml")
STUDY_CONFIGS = ("study_esci_smollm2.yaml", "study_math_smollm2.yaml")
needs_data = pytest.mark.skipif(not all((data_dir() / d).is_dir() for d in ("esci", "gsm8k", "medcalc_bench")),
                                reason="benchmark data folder not found")


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test: the plan must need no hub and no download."""
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")  # no cached model to lean on


@needs_data
@pytest.mark.parametrize("name", GPU_CONFIGS)
def test_gpu_config_plans_offline_one_command_per_point(name, tmp_path, monkeypatch, capsys, no_network):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", str(SWEEPS / name), "--plan"]) == 0
    commands = capsys.readouterr().out.splitlines()
    sweep = load_sweep_config(SWEEPS / name, check_model=False)
    points = grid_points(sweep)
    assert len(commands) == len(points) == 30  # sft, talr x 3 rates x 3 seeds; dft, l2, flow, lora x 3 rates
    for point, command in zip(points, commands):
        config = Path(point.config.output_dir) / "config.yaml"
        assert command == f"accelerate launch -m talr.cli train --resume --config {config}"
        planned = load_config(config)
        assert planned.model == "Qwen/Qwen2.5-1.5B-Instruct"
        assert planned.training.learning_rate == point.learning_rate
    lora = {p.learning_rate for p in points if p.method == "lora"}
    full = {p.learning_rate for p in points if p.method == "sft"}
    assert full == {1e-6, 5e-6, 2e-5}  # the paper's rates
    assert sorted(lora) == pytest.approx(sorted(10 * lr for lr in full))  # LoRA at 10x
    assert sweep.eval.max_new_tokens is None  # official generation budgets (IFEval 1,280)


@needs_data
def test_without_plan_an_uncached_hub_id_is_still_refused_offline(tmp_path, monkeypatch, no_network):
    from talr.models import ModelNotFoundError

    monkeypatch.setattr("talr.models._hub_offline", lambda: True)
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE"):
        load_sweep_config(SWEEPS / "gpu_esci.yaml", [f"out_dir={tmp_path}"])


@needs_data
@pytest.mark.parametrize("name", STUDY_CONFIGS)
def test_cpu_study_config_validates(name):
    sweep = load_sweep_config(SWEEPS / name, check_model=False)
    points = grid_points(sweep)
    for method in ("sft", "talr"):  # the two findings: both methods at four rates spanning 1e-6 to 1e-4
        rates = {p.learning_rate for p in points if p.method == method}
        assert len(rates) >= 4 and min(rates) <= 1e-6 and max(rates) >= 1e-4
    assert "general_panel" in sweep.eval.general


@needs_data
def test_the_esci_study_has_three_seeds_where_it_forgets_and_the_lora_combination():
    sweep = load_sweep_config(SWEEPS / "study_esci_smollm2.yaml", check_model=False)
    points = grid_points(sweep)
    for method in ("sft", "talr"):
        assert sorted(p.seed for p in points if p.method == method and p.learning_rate == 1e-4) == [0, 1, 2]
    assert {(p.method, p.learning_rate) for p in points if "lora" in p.method} == {("lora", 1e-3),
                                                                                 ("lora_talr", 1e-3)}
    assert len(points) == 14 and sweep.wise_ft.alphas == [0.5] and sweep.wise_ft.learning_rates == [1e-4]


def _raw_sweep(tmp_path, tiny_model_dir, by_method):
    (tmp_path / "train.jsonl").write_text('{"prompt": "Say 1.", "completion": "1"}\n')
    return {"name": "axes", "out_dir": str(tmp_path), "eval": {"domain": ["esci_ll"]},
            "grid": {"methods": ["sft", "lora"], "learning_rates": [1e-5, 1e-4], "seeds": [0, 1],
                     "by_method": by_method},
            "train": {"model": str(tiny_model_dir), "data": {"train": str(tmp_path / "train.jsonl")}}}


def test_a_method_gets_its_own_learning_rates_and_seeds(tmp_path, tiny_model_dir):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(_raw_sweep(tmp_path, tiny_model_dir,
                                              {"lora": {"learning_rates": [1e-3], "seeds": [0]}})))
    names = [p.name for p in grid_points(load_sweep_config(path))]
    assert names == ["sft_lr1e-05_seed0", "sft_lr1e-05_seed1", "sft_lr0.0001_seed0", "sft_lr0.0001_seed1",
                     "lora_lr0.001_seed0"]


def test_replicates_add_seeds_of_one_method_at_one_rate(tmp_path, tiny_model_dir):
    raw = _raw_sweep(tmp_path, tiny_model_dir, {})
    raw["grid"]["seeds"] = [0]
    raw["grid"]["replicates"] = [{"method": "sft", "learning_rate": 1e-4, "seeds": [0, 1, 2]},
                                 {"method": "lora", "learning_rate": 1e-3, "seeds": [1]}]
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    points = grid_points(load_sweep_config(path))
    assert [p.name for p in points] == ["sft_lr1e-05_seed0", "sft_lr0.0001_seed0", "lora_lr1e-05_seed0",
                                        "lora_lr0.0001_seed0", "sft_lr0.0001_seed1", "sft_lr0.0001_seed2",
                                        "lora_lr0.001_seed1"]  # the grid's own sft seed 0 is not repeated
    assert points[-1].config.training.learning_rate == 1e-3 and points[-1].config.seed == 1
    assert points[-1].config.method.adapter == "lora"


@pytest.mark.parametrize("replicate, message", [
    ({"method": "dft", "learning_rate": 1e-4, "seeds": [1]}, r"grid.replicates\[0\].method: 'dft' is not a grid"),
    ({"method": "sft", "learning_rate": -1.0, "seeds": [1]}, "-1.0 is not positive"),
    ({"method": "sft", "learning_rate": 1e-4}, "must each be non-empty"),
    ({"method": "sft", "rate": 1e-4, "seeds": [1]}, r"grid.replicates\[0\].rate: unknown key"),
])
def test_a_bad_replicate_is_refused(tmp_path, tiny_model_dir, replicate, message):
    raw = _raw_sweep(tmp_path, tiny_model_dir, {})
    raw["grid"]["replicates"] = [replicate]
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=message):
        load_sweep_config(path)


@pytest.mark.parametrize("by_method, message", [
    ({"dft": {"seeds": [0]}}, "'dft' is not a grid method"),
    ({"lora": {"learning_rates": [-1.0]}}, "grid.by_method.lora.learning_rates: -1.0 is not positive"),
    ({"lora": {"seeds": []}}, "grid.by_method.lora: learning_rates and seeds must each be non-empty"),
    ({"lora": {"rate": [1e-3]}}, "grid.by_method.lora.rate: unknown key"),
])
def test_a_bad_per_method_axis_is_refused(tmp_path, tiny_model_dir, by_method, message):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(_raw_sweep(tmp_path, tiny_model_dir, by_method)))
    with pytest.raises(ConfigError, match=message):
        load_sweep_config(path)


def test_wise_ft_averages_only_the_runs_it_names():
    from talr.sweep import GridPoint, WiseFtGrid

    def point(method, lr, seed):
        return GridPoint(f"{method}_lr{lr:g}_seed{seed}", method, lr, seed, config=None)

    grid = WiseFtGrid(alphas=[0.5], methods=["sft"], seeds=[0], learning_rates=[1e-4])
    assert grid.averages(point("sft", 1e-4, 0))
    assert not grid.averages(point("sft", 2e-5, 0))  # another rate
    assert not grid.averages(point("sft", 1e-4, 1))  # another seed
    assert not grid.averages(point("talr", 1e-4, 0))  # another method
    assert not WiseFtGrid(alphas=[], methods=["sft"]).averages(point("sft", 1e-4, 0))  # no alphas, no averages
    assert WiseFtGrid(alphas=[0.5]).averages(point("sft", 2e-5, 3))  # default: every sft run


def test_wise_ft_of_a_run_whose_model_was_deleted_is_skipped_with_a_warning(tmp_path, caplog):
    from talr.sweep import EvalConfig, GridPoint, SweepConfig, WiseFtGrid, _wise_ft_points

    run_dir = tmp_path / "runs" / "sft_lr0.0001_seed0"
    run_dir.mkdir(parents=True)  # finished and evaluated earlier; keep_models: false removed model/
    sweep = SweepConfig(eval=EvalConfig(domain=["esci_ll"]), wise_ft=WiseFtGrid(alphas=[0.5]))
    _wise_ft_points(GridPoint(run_dir.name, "sft", 1e-4, 0, config=None), run_dir, "base-model", sweep)
    assert "WiSE-FT alpha 0.5 skipped: the run's model/ is gone" in caplog.text
    assert not (run_dir.parent / "sft_lr0.0001_seed0_wise_ft0.5").exists()
