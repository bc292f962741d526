"""TALR's weights over the whole optimizer step: the update must not depend on how the step's 8 sequences are split
across accumulation steps and processes.

The reference is the straightforward path (full logits, :func:`talr.losses.talr_loss`) on all 8 sequences at once.
SGD without clipping makes the update exactly ``-lr * gradient``, so a wrong normaliser cannot hide behind Adam's
scale invariance.
"""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from talr.config import config_from_dict
from talr.data.formats import CausalLMCollator, tokenize_examples
from talr.io import write_jsonl
from talr.models import load_model
from talr.trainer import TalrTrainer, training_arguments

SPLITS = [(8, 1), (2, 4), (1, 8)]  # (per-device batch, accumulation steps)


def _examples():
    # unequal lengths, so micro-batches pad differently from the full batch
    return [
        {"messages": [{"role": "user", "content": f"Add {i} and {i * 7 + 1}." + " Please." * (i % 3)},
                      {"role": "assistant", "content": f"The answer is {i * 8 + 1}." + " Yes!" * (i % 4)}]}
        for i in range(8)
    ]


def _update(model_dir, workdir, batch_size, accumulation, loss_head="fused", normalize_over="step", method="talr"):
    data = write_jsonl(_examples(), workdir / "train.jsonl")
    config = config_from_dict({
        "model": str(model_dir), "output_dir": str(workdir / "run"), "method": method,
        "data": {"train": str(data), "max_length": 64},
        "talr": {"normalize_over": normalize_over},
        "training": {"learning_rate": 1.0, "max_steps": 1, "autocast": "none", "warmup_ratio": 0.0,
                     "lr_scheduler": "constant", "max_grad_norm": 0.0, "per_device_batch_size": batch_size,
                     "gradient_accumulation_steps": accumulation, "loss_head": loss_head, "logging_steps": 1},
    })
    model, tokenizer = load_model(model_dir)
    with torch.no_grad():  # a random tiny model predicts nearly uniformly; sharper logits make TALR's weights uneven
        model.get_output_embeddings().weight.mul_(30)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    features, _ = tokenize_examples(_examples(), tokenizer, 64)
    trainer = TalrTrainer(
        model=model, args=training_arguments(config, workdir / "run"), train_dataset=features,
        data_collator=CausalLMCollator(tokenizer.pad_token_id), processing_class=tokenizer, run_config=config,
    )
    trainer.args.optim = "sgd"
    trainer.train()
    return torch.cat([(model.state_dict()[k] - before[k]).flatten() for k in sorted(before)])


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def reference_update(tiny_model_dir, tmp_path_factory):
    return _update(tiny_model_dir, tmp_path_factory.mktemp("ref"), 8, 1, loss_head="reference")


@pytest.mark.parametrize("batch_size,accumulation", SPLITS)
def test_update_is_independent_of_the_accumulation_split(tiny_model_dir, tmp_path, reference_update,
                                                         batch_size, accumulation):
    update = _update(tiny_model_dir, tmp_path, batch_size, accumulation)
    assert _rel(update, reference_update) <= 1e-5


def test_micro_batch_normalisation_does_depend_on_the_split(tiny_model_dir, tmp_path, reference_update):
    """The check above is sensitive: normalising per micro-batch gives a different update."""
    update = _update(tiny_model_dir, tmp_path, 2, 4, normalize_over="micro_batch")
    assert _rel(update, reference_update) > 1e-3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, model_dir, workdir):
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world),
                       "RANK": str(rank), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(world)})
    torch.set_num_threads(1)
    from pathlib import Path

    out = {}
    for batch_size, accumulation in [(4, 1), (2, 2)]:  # 2 processes x batch x accumulation = 8 sequences
        rundir = Path(workdir) / f"rank{rank}-{batch_size}x{accumulation}"
        rundir.mkdir(parents=True)
        out[(batch_size, accumulation)] = _update(model_dir, rundir, batch_size, accumulation)
    if rank == 0:
        torch.save(out, Path(workdir) / "updates.pt")


def test_two_gloo_processes_give_the_single_process_update(tiny_model_dir, tmp_path, reference_update):
    mp.start_processes(_worker, args=(2, _free_port(), str(tiny_model_dir), str(tmp_path)), nprocs=2,
                       start_method="spawn")
    updates = torch.load(tmp_path / "updates.pt")
    assert set(updates) == {(4, 1), (2, 2)}
    for split, update in updates.items():
        assert _rel(update, reference_update) <= 1e-5, split
