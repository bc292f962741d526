import pytest

from talr.testing import make_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Llama with a byte-level tokenizer and a ChatML chat template, saved like a hub checkpoint."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))
