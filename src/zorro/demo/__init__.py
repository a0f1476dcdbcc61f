"""Demo data for Zorro: the AV-digits data set (spoken + handwritten digits as mp4 clips).

This subpackage needs only numpy, PyAV, scikit-learn and eSpeak NG; it does not import
the model or the training code.
"""

from zorro.demo.avdigits import (
    ACCENTS,
    AVDIGITS_VERSION,
    DIGIT_WORDS,
    TEST_ACCENTS,
    VARIANTS,
    build_avdigits,
    load_manifest,
)
from zorro.demo.speech import EspeakNotFoundError, espeak_available, find_espeak

__all__ = [
    "ACCENTS",
    "AVDIGITS_VERSION",
    "DIGIT_WORDS",
    "TEST_ACCENTS",
    "VARIANTS",
    "build_avdigits",
    "load_manifest",
    "EspeakNotFoundError",
    "espeak_available",
    "find_espeak",
]
