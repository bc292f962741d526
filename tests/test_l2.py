import pytest
import torch
from safetensors import safe_open

from talr.config import config_from_dict
from talr.io import write_jsonl
from talr.models import load_model
from talr.regularizers import L2ToInit
from talr.trainer import train


def _examples(n=16):
    return [{"prompt": f"Double {i}.", "completion": f"It is {2 * i}."} for i in range(n)]


def _config(tmp_path, model_dir, data_file, name, method="sft", **extra):
    return config_from_dict({
        "model": str(model_dir), "output_dir": str(tmp_path / name), "method": method,
        "data": {"train": str(data_file), "max_length": 64},
        "training": {"learning_rate": 1e-2, "max_steps": 5, "per_device_batch_size": 4, "autocast": "none",
                     "warmup_ratio": 0.0, "lr_scheduler": "constant", "logging_steps": 5},
        **extra,
    })


def test_penalty_and_its_gradient_match_the_formula(tiny_model_dir):
    model, _ = load_model(tiny_model_dir)
    weight = 0.7
    regularizer = L2ToInit(model, weight)
    params = [p for p in model.parameters() if p.requires_grad]
    count = sum(p.numel() for p in params)
    assert regularizer.count == count
    theta0 = [p.detach().clone().double() for p in params]
    torch.manual_seed(1)
    with torch.no_grad():
        for p in params:
            p.add_(0.01 * torch.randn_like(p))

    penalty = regularizer.penalty(model)
    penalty.backward()

    expected = weight * sum(((p.detach().double() - t) ** 2).sum() for p, t in zip(params, theta0)) / count
    torch.testing.assert_close(penalty.double(), expected, rtol=1e-5, atol=0)
    for p, t in zip(params, theta0):
        torch.testing.assert_close(p.grad.double(), 2 * weight * (p.detach().double() - t) / count,
                                   rtol=1e-5, atol=1e-12)


def test_penalty_counts_only_trainable_parameters(tiny_model_dir):
    model, _ = load_model(tiny_model_dir)
    model.model.embed_tokens.weight.requires_grad_(False)
    regularizer = L2ToInit(model, 1.0)
    assert regularizer.count == sum(p.numel() for p in model.parameters() if p.requires_grad)
    with torch.no_grad():
        model.model.embed_tokens.weight.add_(1.0)  # frozen: not penalised
    assert regularizer.penalty(model).item() == 0.0


def test_zero_weight_trains_bit_identically_to_sft(tmp_path, tiny_model_dir):
    data_file = write_jsonl(_examples(), tmp_path / "train.jsonl")
    sft = train(_config(tmp_path, tiny_model_dir, data_file, "sft"))
    l2 = train(_config(tmp_path, tiny_model_dir, data_file, "l2", method="l2", l2={"weight": 0.0}))
    with safe_open(sft / "model" / "model.safetensors", "pt") as a, \
            safe_open(l2 / "model" / "model.safetensors", "pt") as b:
        assert set(a.keys()) == set(b.keys())  # theta0 is not saved with the model
        for name in a.keys():
            assert torch.equal(a.get_tensor(name), b.get_tensor(name)), name


def test_positive_weight_pulls_towards_init(tmp_path, tiny_model_dir):
    data_file = write_jsonl(_examples(), tmp_path / "train.jsonl")
    base, _ = load_model(tiny_model_dir)

    def distance(run_dir):
        trained, _ = load_model(run_dir)
        return sum(((a - b) ** 2).sum() for a, b in zip(trained.parameters(), base.parameters())).item()

    free = distance(train(_config(tmp_path, tiny_model_dir, data_file, "free")))
    # weight * 2 * delta / P must rival the loss gradient to matter: scale with P
    pulled = distance(train(_config(tmp_path, tiny_model_dir, data_file, "pulled", method="l2",
                                    l2={"weight": 1e5})))
    assert pulled < 0.5 * free


def test_reference_stays_out_of_the_optimizer(tmp_path, tiny_model_dir):
    from talr.data.formats import CausalLMCollator, tokenize_examples
    from talr.trainer import TalrTrainer, training_arguments

    config = _config(tmp_path, tiny_model_dir, write_jsonl(_examples(), tmp_path / "t.jsonl"), "opt", method="l2")
    model, tokenizer = load_model(tiny_model_dir)
    features, _ = tokenize_examples(_examples(), tokenizer, 64)
    regularizer = L2ToInit(model, 1.0)
    trainer = TalrTrainer(model=model, args=training_arguments(config, tmp_path / "opt"), train_dataset=features,
                          data_collator=CausalLMCollator(tokenizer.pad_token_id), processing_class=tokenizer,
                          run_config=config, regularizer=regularizer)
    trainer.create_optimizer()
    in_optimizer = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert in_optimizer == {id(p) for p in model.parameters() if p.requires_grad}
    assert not any(id(t) in in_optimizer for t in regularizer.reference)
    assert len(model.state_dict()) == len(load_model(tiny_model_dir)[0].state_dict())


def test_negative_weight_is_rejected(tiny_model_dir):
    model, _ = load_model(tiny_model_dir)
    with pytest.raises(ValueError, match="must be >= 0"):
        L2ToInit(model, -1.0)


def test_squared_distance_gradient_passes_gradcheck():
    from talr.regularizers import _SquaredDistance

    param = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    ref = torch.randn(5, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: _SquaredDistance.apply(p, ref), (param,))
