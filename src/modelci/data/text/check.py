"""The checks of a `type: text` column, batch by batch in the data check's one pass (data/scan.py).

Besides the rules every column has (`type`: values that are not text, such as a Parquet int column;
`not_null`), each a `Violation` on the column with its rows and sample texts cut to 80 characters:

- `empty`: empty or whitespace-only texts (an error unless the column is `nullable`);
- `min_length` / `max_length` (characters) and `min_tokens` / `max_tokens` (words, `tokens.words`);
- `encoding`: texts holding U+FFFD or a control character other than tab, newline and carriage return;
- `duplicates`: texts that repeat an earlier row's text, compared by the hash of `tokens.normalized`
  (the dataset's `duplicates` severity), and `leakage` (data/check.py): evaluation texts that are also
  training texts (the dataset's `leakage` severity); the hashes are kept in a `KeyStore`, so memory
  stays bounded;
- `unknown_words` (a warning, evaluation data): more than UNKNOWN_SHARE of its words are outside the
  training data's vocabulary (its TOP_WORDS most frequent words); the share is in data-report.json's
  `text` either way.

Empty and missing texts take part in none of the length, encoding, duplicate or vocabulary checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelci.data.columns import ColumnBatch
from modelci.data.profile import DatasetProfile
from modelci.data.rowhash import KeyStore
from modelci.data.rules import SAMPLES, ColumnChecker, Violation
from modelci.data.schema import Bounds, ColumnRule, DatasetRules
from modelci.data.text.measure import TextFacts, measure_texts
from modelci.data.text.profile import STATISTICS, TOP_WORDS, WORDS, TopCounter, WordsProfile, lengths

# NOTE: in text of the same language and kind, words outside a 20,000-word vocabulary are a few percent
# (names, typos, rare words); past 10%, the evaluation texts are likely of another language, domain or
# tokenization (markup, encoded text) than the training texts.
UNKNOWN_SHARE = 0.1
UNKNOWN_SHOWN = 100  # the evaluation data's most frequent unknown words counted, to name a few


@dataclass
class TextSummary:
    """What data-report.json says of one text column of one dataset."""

    column: str
    words: int
    vocabulary: int | None = None  # the training data's words looked up (evaluation data only)
    unknown_word_share: float | None = None  # of the words, those outside that vocabulary


@dataclass
class TextFound:
    """What outlives a pass of one text column: the normalized texts' keys (for leakage) and its summary."""

    keys: KeyStore
    counter: TopCounter
    summary: TextSummary

    def vocabulary(self) -> frozenset[str]:
        """The most frequent words, which another dataset's words are looked up in."""
        return frozenset(word for word, _ in self.counter.top(TOP_WORDS))


class TextChecker(ColumnChecker):
    """Every rule of one text column, over all of its batches, and its profile columns."""

    def __init__(self, rule: ColumnRule, dataset: DatasetRules, vocabulary: frozenset[str] | None = None) -> None:
        super().__init__(rule)
        self.dataset, self.vocabulary = dataset, vocabulary
        self.keys = KeyStore()
        self.counter = TopCounter(TOP_WORDS)
        self.words_profile = WordsProfile(self.counter)
        self.unknown = 0
        self.unknown_words = TopCounter(UNKNOWN_SHOWN)

    def feed(self, batch: ColumnBatch, first_row: int, profile: DatasetProfile | None) -> None:
        """Check one batch; with `profile`, add its lengths and words to the dataset's profile."""
        self.check(batch, first_row)
        facts = measure_texts(batch, self.vocabulary)
        text = facts.present & ~facts.blank
        for rule, message, mask, severity in self._masks(facts, text):
            self._tally(rule, message, severity).add(mask, batch, first_row, cut=True)
        self.keys.add(facts.keys[text], np.flatnonzero(text) + first_row)
        self.counter.add(facts.words)
        self.unknown += int(facts.unknown.sum())
        self.unknown_words.add(facts.unknown_words)
        if profile is not None:
            self._profile(profile, facts)

    def _masks(self, facts: TextFacts, text: np.ndarray) -> list[tuple[str, str, np.ndarray, str]]:
        """(rule, message, rows that break it, severity) for each text rule."""
        rule = self.rule
        found = [] if rule.nullable else [
            ("empty", "empty or whitespace-only texts in a column the schema says is never empty",
             facts.present & facts.blank, "error")]
        found += [(f"{side}_{unit}", f"texts of {what} than {bound} {noun}", text & broken, "error")
                  for unit, noun, values, bounds in (("length", "characters", facts.characters, rule.length),
                                                     ("tokens", "words", facts.tokens, rule.tokens))
                  for side, what, bound, broken in _outside(values, bounds)]
        found.append(("encoding", "texts holding U+FFFD (a byte the decoder could not read) or control characters: "
                                  "text read in the wrong encoding", text & facts.garbled, "error"))
        if self.vocabulary is not None:
            found.append(("unknown_words", "texts with words outside the training data's vocabulary",
                          text & (facts.unknown > 0), "warning"))
        return found

    def _profile(self, profile: DatasetProfile, facts: TextFacts) -> None:
        name = self.rule.name
        for statistic, values in zip(STATISTICS, (facts.characters, facts.tokens), strict=True):
            profile.add(f"{name}.{statistic}", lengths(values, facts.present))
        profile.columns.setdefault(f"{name}.{WORDS}", self.words_profile)
        self.words_profile.nulls += int(np.count_nonzero(~facts.present))

    def finish(self) -> list[Violation]:
        """Every violation found (the unknown words' only past UNKNOWN_SHARE), then the duplicate texts."""
        found = super().finish()
        share = self._unknown_share()
        unknown = self.found.get("unknown_words")
        if unknown is not None and unknown.rows:
            found.remove(unknown)
            if share is not None and share > UNKNOWN_SHARE:
                shown = ", ".join(word for word, _ in self.unknown_words.top(SAMPLES))
                unknown.message = (f"{share:.1%} of the words are outside the training data's vocabulary (its "
                                   f"{len(self.vocabulary or ()):,} most frequent words), more than "
                                   f"{UNKNOWN_SHARE:.0%}: the texts differ from the training texts (e.g. {shown})")
                found.append(unknown)
        severity = self.dataset.duplicates
        repeated = self.keys.duplicates() if severity != "ignore" else None
        if repeated is not None and repeated.rows:
            found.append(Violation(column=self.rule.name, rule="duplicates", rows=repeated.rows, severity=severity,
                                   message="texts that repeat an earlier row's text (ignoring case, "
                                           "Unicode forms and whitespace)", sample_rows=list(repeated.sample_rows)))
        return found

    def _unknown_share(self) -> float | None:
        return self.unknown / self.counter.total if self.vocabulary is not None and self.counter.total else None

    def found_text(self) -> TextFound:
        """What the data check keeps of this column after the pass."""
        summary = TextSummary(column=self.rule.name, words=self.counter.total)
        if self.vocabulary is not None:
            summary.vocabulary, summary.unknown_word_share = len(self.vocabulary), self._unknown_share()
        return TextFound(keys=self.keys, counter=self.counter, summary=summary)

    def close(self) -> None:
        super().close()
        self.keys.close()


def _outside(values: np.ndarray, bounds: Bounds) -> list[tuple[str, str, float, np.ndarray]]:
    """('min', 'fewer', bound, rows below) and ('max', 'more', bound, rows above), for the bounds given."""
    found = []
    if bounds.min is not None:
        found.append(("min", "fewer", bounds.min, values < bounds.min))
    if bounds.max is not None:
        found.append(("max", "more", bounds.max, values > bounds.max))
    return found
