"""AV-digits captions: deterministic, naming the digit, with the test templates held out."""

from __future__ import annotations

import pytest

from zorro.demo.avdigits import DIGIT_WORDS, MANIFEST_COLUMNS
from zorro.demo.captions import TEST_TEMPLATES, TRAIN_TEMPLATES, caption


def test_every_caption_names_its_digit_and_repeats_exactly():
    for split in ("train", "test"):
        for i in range(200):
            digit = i % 10
            text = caption(split, i, digit)
            assert DIGIT_WORDS[digit] in text.lower() or str(digit) in text, text
            assert caption(split, i, digit) == text


def test_test_templates_are_never_used_in_training():
    assert not set(TRAIN_TEMPLATES) & set(TEST_TEMPLATES)
    train = {caption("train", i, 7) for i in range(500)}
    test = {caption("test", i, 7) for i in range(500)}
    assert not train & test
    assert len(train) == len(TRAIN_TEMPLATES) and len(test) == len(TEST_TEMPLATES)  # every template is used


def test_manifests_carry_the_caption_and_bad_input_is_refused():
    assert "text" in MANIFEST_COLUMNS
    with pytest.raises(ValueError, match="split"):
        caption("val", 0, 1)
    with pytest.raises(ValueError, match="digit"):
        caption("train", 0, 10)
