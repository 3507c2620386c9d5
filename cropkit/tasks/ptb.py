"""The Penn Treebank, word level (Marcus et al. 1993, in the form of Mikolov et al. 2010): the paper's language
modelling data (Rachwan et al. 2022, §4.4, with the pointer sentinel mixture model, `cropkit.tasks.pointer`).

The standard files, one sentence per line, already lower-cased, numbers as ``N``, rare words as ``<unk>``:

    <data root>/ptb/ptb.train.txt   (887 521 words + 42 068 line ends)
    <data root>/ptb/ptb.valid.txt   ( 70 390 words +  3 370 line ends)
    <data root>/ptb/ptb.test.txt    ( 78 669 words +  3 761 line ends)

Each line is split on white space and closed by ``<eos>`` (as in Zaremba et al. 2014 and Merity et al. 2017), so the
vocabulary is the training text's 10 000 words (``<eos>`` included). Ids number the words by decreasing training
frequency, ties alphabetically (Zaremba's reader). A word of the validation or test text that the training text lacks
becomes ``<unk>`` (none does in the real files). Each split's token stream is cut into windows of T + 1 tokens at
stride T (`cropkit.tasks.domains.sequences`, as for ``pydoc``): input = the first T, target = the next token at every
position; T = 80, the length of the EarlyCroP reference code's PTB sequences. Runs report the test split; the
validation split is :func:`corpus`'s, for tuning. Nothing is downloaded: missing files raise a one-line
``FileNotFoundError`` that says where to put them and where to get them.
"""
from __future__ import annotations

import collections
import functools
from pathlib import Path

import torch

from cropkit.tasks.domains import sequences
from cropkit.tasks.loaders import tensor_loaders

FOLDER = "ptb"
FILES = {"train": "ptb.train.txt", "valid": "ptb.valid.txt", "test": "ptb.test.txt"}
URL = "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz"
SEQ_LEN = 80
EOS, UNK = "<eos>", "<unk>"


def words(path: Path) -> list[str]:
    """The file's words, each line closed by ``<eos>``."""
    return [w for line in path.read_text().splitlines() for w in line.split() + [EOS]]


@functools.lru_cache(maxsize=2)
def corpus(root: str | Path) -> dict:
    """{"train", "valid", "test": 1-D LongTensors of ids, "words": the vocabulary} (cached: treat as read-only)."""
    folder = Path(root) / FOLDER
    missing = [name for name in FILES.values() if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"ptb: {', '.join(missing)} not found in {folder}; put ptb.train.txt, ptb.valid.txt and ptb.test.txt "
            f"there (the data/ folder of {URL}, word-level Penn Treebank; nothing is downloaded for you)")
    text = {split: words(folder / name) for split, name in FILES.items()}
    counts = collections.Counter(text["train"])
    vocabulary = sorted(counts, key=lambda w: (-counts[w], w))
    if UNK not in counts:
        vocabulary.append(UNK)
    index = {w: i for i, w in enumerate(vocabulary)}
    ids = {split: torch.tensor([index.get(w, index[UNK]) for w in tokens], dtype=torch.long)
           for split, tokens in text.items()}
    return {**ids, "words": vocabulary}


def loader(batch_size, seed, limit, *, root, loading, **_):
    """`cropkit.tasks.data`'s loader for ``ptb``: the first ``limit`` training sequences (None: all), the test split
    whole."""

    c = corpus(str(root))
    x_train, y_train = sequences(c["train"], SEQ_LEN)
    x_test, y_test = sequences(c["test"], SEQ_LEN)
    return (tensor_loaders(x_train[:limit], y_train[:limit], x_test, y_test, batch_size, seed, **loading), (SEQ_LEN,),
            len(c["words"]))
