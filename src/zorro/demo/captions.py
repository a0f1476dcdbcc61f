"""Captions for AV-digits: a short sentence naming each clip's digit, for the tri-modal demo.

Every clip gets one caption, drawn from templates that name the digit in different forms --
the word (``seven``), capitalised or upper case (``Seven``, ``SEVEN``) or the numeral (``7``) --
inside different phrases. The test split uses templates never seen in training, so a model
has to read the number, not recognise a training sentence. The choice is a pure function of
the split, the clip's index and its digit (a hash, not the build's random stream), so adding
captions leaves every clip's audio and video as they were.
"""

from __future__ import annotations

import hashlib

__all__ = ["TRAIN_TEMPLATES", "TEST_TEMPLATES", "caption"]

_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

#: Templates of the training split. ``{word}``, ``{Word}``, ``{WORD}`` and ``{digit}`` are the
#: digit as a word (three cases) and as a numeral.
TRAIN_TEMPLATES: tuple[str, ...] = (
    "someone says {word}",
    "the number {digit}",
    "{WORD}, spoken slowly",
    "a voice saying {word}",
    "digit {digit}",
    "you can hear {word}",
    "{Word}",
    "a handwritten {digit} and the word {word}",
    "it is a {word}",
    "{word} out loud",
    "{Word}!",
    "the spoken digit {digit}",
)

#: Templates held out for the test split.
TEST_TEMPLATES: tuple[str, ...] = (
    "listen: {word}",
    "this clip shows a {digit}",
    "{WORD} ({digit})",
    "the answer is {Word}",
)


def caption(split: str, index: int, digit: int) -> str:
    """The caption of clip ``index`` of ``split`` (``"train"`` or ``"test"``) showing ``digit`` (0-9)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not 0 <= int(digit) <= 9:
        raise ValueError(f"digit must be in 0..9, got {digit!r}")
    templates = TRAIN_TEMPLATES if split == "train" else TEST_TEMPLATES
    pick = int.from_bytes(hashlib.sha256(f"{split}/{index}".encode()).digest()[:8], "little") % len(templates)
    word = _WORDS[int(digit)]
    return templates[pick].format(word=word, Word=word.capitalize(), WORD=word.upper(), digit=int(digit))
