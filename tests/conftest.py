import pytest

from talr.testing import make_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Llama with a byte-level tokenizer and a ChatML chat template, saved like a hub checkpoint."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
def scoring_passes(monkeypatch):
    """The reference model's scoring passes (talr.reference_stats.score_tokens calls) made during the test."""
    from talr import reference_stats

    calls = []
    real = reference_stats.score_tokens

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(reference_stats, "score_tokens", counting)
    return calls
