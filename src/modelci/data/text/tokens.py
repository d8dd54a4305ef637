"""A text as words, and as the normalized form its duplicates are found by.

One definition everywhere a text is taken apart without a model's own tokenizer: the data check's
token counts, vocabulary and profile, and the light text model's tokenizer (frameworks/text), whose
exported ONNX graph splits texts the same way, so that what the check counts is what the model reads.

A word is a run of letters, numbers and underscores, after the ASCII letters are lowercased. Only
ASCII: the exported graph lowercases with ONNX's StringNormalizer in the "C" locale, the one locale
every machine has (others need a language pack where the model is served), which changes ASCII
letters alone; "École" and "école" are two words.

NOTE: imports only the standard library.
"""

from __future__ import annotations

import re
import string
import unicodedata

WORD = re.compile(r"\w+")  # NOTE: Unicode letters and numbers, and underscore (str.isalnum, or "_")
# NOTE: the same words in RE2's syntax, whose \w is ASCII alone (the ONNX graph's). Each side classifies characters
# by its own Unicode tables: Python 3.11's are Unicode 14, ONNX Runtime's RE2 newer, so letters added since (818
# code points, e.g. the Kawi script) are words in the graph and not here; parity shows it if a text holds them.
WORD_RE2 = r"[\p{L}\p{N}_]+"
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def words(text: str) -> list[str]:
    """The text's words: ASCII letters lowercased, then each run of word characters."""
    return WORD.findall(text.translate(_ASCII_LOWER))


def counted_words(text: str, kept: int) -> tuple[int, list[str]]:
    """How many words the text has, and the first `kept` of them, without holding all of them at once."""
    count, first = 0, []
    for match in WORD.finditer(text.translate(_ASCII_LOWER)):
        if count < kept:
            first.append(match.group())
        count += 1
    return count, first


def normalized(text: str) -> str:
    """The text duplicates are compared by: NFKC, case folded, whitespace collapsed and stripped."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())
