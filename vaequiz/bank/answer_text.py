"""How rubric phrasings and patterns read free text: words, stems, sentences, clauses,
negation, bare lists of terms, spelling tolerance and the canonical math form.

The bank's lint and the short-answer grader share these rules, so what lint says a phrasing
matches is what the grader matches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable

GAP_WORDS = 6
"""``a ... b`` in a phrasing: at most this many words between the parts, in one sentence."""
NEGATION_WORDS = frozenset(
    "not no none never neither nor cannot dont doesnt isnt arent wasnt werent cant wont didnt "
    "shouldnt wouldnt couldnt hasnt havent".split()
)
NEGATING_PREFIXES = frozenset({"non"})
""""non-differentiable": negates only the word it is joined to."""
NEGATION_SEQUENCES = (("no", "longer"), ("nothing", "to", "do", "with"))
NOT_NEGATING_NEXT = frozenset({"only", "just", "merely", "simply"})
""""not only X but Y" asserts X."""
CLAUSE_WORDS = frozenset(
    "but however whereas while although though because since so therefore thus hence which "
    "instead rather yet whereby".split()
)
CLAUSE_PUNCTUATION = re.compile(r"[,;:—–]|\s-\s")
ARTICLES = frozenset({"the", "a", "an"})
SUBJECTS = frozenset("it this that they we you he she which there".split())
"""After "and"/"or", one of these starts a new clause: "we don't overfit and it regularises"."""

_VERBS = frozenset(
    """is are was were be been being am has have had do does did can could will would should must
    may might shall it this they we you he she keeps keep pulls pull makes make forces force
    prevents prevent stops stop lets let allows allow gives give measures measure compares compare
    encourages encourage pushes push maps map encodes encode decodes decode reconstructs learns
    learn flows generates generate controls control becomes become adds add multiplies multiply
    draws draw moves move costs ensures ensure acts act works work lands land reduces reduce
    increases increase passes pass goes go gets get takes take depends depend matches stays stay
    shrinks spreads leads lead causes cause helps help avoids avoid needs need uses use turns
    compresses compress rewrites rewrite becomes tries try wants want says say means shows show
    scales scale shifts shift stretches stretch puts put sits sit carries carry""".split()
)
_VERB_SUFFIX = re.compile(r"(?:is|iz)(?:e|es|ed|ing)$|(?:ifies|ified)$")

WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


# --------------------------------------------------------------------------- words


def stem(word: str) -> str:
    """A small deterministic stemmer applied alike to answers and phrasings.

    British -ise/-our spellings become -ize/-or; then one suffix of -ations, -ation, -ings,
    -ing, -ers, -er, -ed, -ies, -es, -ly, -s, -e is removed while at least three letters stay (and
    a doubled final consonant is undone: ``overfitting`` -> ``overfit``).
    ``regularises``, ``regularizing``, ``regularised`` -> ``regulariz``; ``samples``,
    ``sampling`` -> ``sampl``.
    """
    w = word.lower().replace("’", "'")
    w = re.sub(r"'s$", "", w).replace("'", "")
    if len(w) <= 3 or not w.isalpha():
        return w
    w = re.sub(r"is(e|es|ed|ing|ation|ations|er|ers)$", r"iz\1", w)
    if len(w) > 5:
        w = re.sub(r"(?<=.)our", "or", w)
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    for suffix in ("ations", "ation", "ings", "ing", "ers", "er", "ed", "es", "ly", "s", "e"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            if suffix == "s" and w.endswith(("ss", "us", "is")):
                return w
            w = w[: -len(suffix)]
            if suffix in ("ing", "ings", "ed", "er", "ers") and re.search(r"([b-df-hj-km-np-rtv-y])\1$", w):
                w = w[:-1]  # overfitting, stopped -> overfit, stop
            return w
    return w


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance (a swap of two letters is one edit), capped at limit+1."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1]


def allowed_edits(word: str) -> int:
    """One spelling mistake in words of 5+ letters, two in words of 9+."""
    return 2 if len(word) >= 9 else 1 if len(word) >= 5 else 0


@dataclass(frozen=True)
class Token:
    raw: str
    stem: str
    start: int
    end: int

    @property
    def lower(self) -> str:
        return self.raw.lower().replace("’", "'")

    @property
    def bare(self) -> str:
        return self.lower.replace("'", "")


def tokenize(text: str) -> list[Token]:
    return [Token(m.group(0), stem(m.group(0)), m.start(), m.end()) for m in WORD.finditer(text)]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Sentences: split after . ! ? followed by space ("0.5*x" stays whole), at blank lines and
    before list items; a single line break inside a sentence (wrapped text) does not split it."""
    spans, start = [], 0
    for match in re.finditer(r"(?<=[.!?])\s+|\n\s*\n\s*|\n(?=\s*(?:[-*•]|\d+[.)])\s)", text):
        if text[start:match.start()].strip():
            spans.append((start, match.start()))
        start = match.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans


# --------------------------------------------------------------------------- math


_MATH_REWRITES: tuple[tuple[str, str], ...] = (
    (r"\\(?:mathcal|mathbf|mathrm|operatorname)\{(\w+)\}", r"\1"),
    (r"\\varepsilon|\\epsilon|ε|ϵ|epsilon", "eps"),
    (r"\\mu|μ", "mu"),
    (r"\\sigma|σ", "sigma"),
    (r"\\beta|β", "beta"),
    (r"\\odot|\\cdot|\\times|\\ast|⊙|·|×|∗|•", "*"),
    (r"\\sim|∼", "~"),
    (r"\\exp", "exp"),
    (r"\\log", "log"),
    (r"−", "-"),
    (r"½|\\tfrac12|\\frac12|\\frac\{1\}\{2\}|1/2", "0.5"),
    (r"[\s$\\{}]", ""),
    (r"torch\.|np\.|math\.|f\.", ""),
    (r"log_?var(iance)?|log\(sigma\^?2\)|logsigma\^?2|log_sigma_sq|lv\b", "logvar"),
    (r"exp\((0\.5\*logvar|logvar\*0\.5|logvar/2|0\.5logvar)\)|sqrt\(exp\(logvar\)\)|sqrt\(var\)"
     r"|exp\(logvar\)\*\*0\.5|\bstd(dev)?\b|\bsd\b", "sigma"),
    (r"randn_like\([^()]*\)|randn\([^()]*\)|normal_\(\)", "eps"),
)


@lru_cache(maxsize=4096)
def math_form(text: str) -> str:
    """Math in one canonical spelling: lower case, no spaces, Greek and LaTeX as names
    (``mu``, ``sigma``, ``eps``, ``beta``), every product as ``*``, ``exp(0.5*logvar)`` and
    ``std`` as ``sigma``, ``randn_like(...)`` as ``eps``.

    ``z = μ + σ·ε`` and ``z = mu + torch.exp(0.5 * logvar) * eps`` -> ``z=mu+sigma*eps``.
    """
    out = text.lower()
    for pattern, replacement in _MATH_REWRITES:
        out = re.sub(pattern, replacement, out)
    return out


# --------------------------------------------------------------------------- phrasings


@dataclass(frozen=True)
class Phrasing:
    """A rubric phrasing as stems; ``...`` separates parts with a gap of a few words."""

    text: str
    parts: tuple[tuple[str, ...], ...]
    raw_words: tuple[tuple[str, ...], ...]


@lru_cache(maxsize=4096)
def compile_phrasing(text: str) -> Phrasing:
    parts, raws = [], []
    for chunk in text.split("..."):
        tokens = [t for t in tokenize(chunk) if t.bare not in ARTICLES]
        if tokens:
            parts.append(tuple(t.stem for t in tokens))
            raws.append(tuple(t.bare for t in tokens))
    return Phrasing(text, tuple(parts), tuple(raws))


def has_negation(words: list[str]) -> bool:
    """Whether a negation cue occurs among lower-cased words (apostrophes kept)."""
    return any(_is_cue(words, i) for i in range(len(words)))


def _is_cue(words: list[str], i: int) -> bool:
    word = words[i]
    if word.endswith("n't") or word.replace("'", "") in NEGATION_WORDS:
        nxt = words[i + 1] if i + 1 < len(words) else ""
        return not (word == "not" and nxt in NOT_NEGATING_NEXT)
    for sequence in NEGATION_SEQUENCES:
        if tuple(words[i : i + len(sequence)]) == sequence:
            return True
    return False


@dataclass
class Match:
    """One occurrence of a phrasing or pattern in an answer."""

    phrasing: str
    sentence: str
    quoted: str
    fuzzy: bool = False
    negated: bool = False
    listed: bool = False
    as_math: bool = False
    """Matched in the sentence's math form (``quoted`` is in that form)."""


@dataclass
class Sentence:
    text: str
    offset: int
    tokens: list[Token]
    content: list[int]
    """Indices into ``tokens`` of the words that matching looks at (articles skipped)."""
    clause_of: list[int]
    """Clause number of each token."""
    bare_list: bool
    clause_begin: list[int] = field(default_factory=list)
    """Index of the first token of each token's clause."""
    cues_before: list[int] = field(default_factory=list)
    """cues_before[i]: negation cues among tokens[:i] (so any span is counted in O(1))."""
    cue: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        words = [t.lower for t in self.tokens]
        self.cue = [_is_cue(words, i) for i in range(len(words))]
        self.cues_before = [0]
        for flag in self.cue:
            self.cues_before.append(self.cues_before[-1] + flag)
        self.clause_begin = []
        for i, clause in enumerate(self.clause_of):
            same = i > 0 and self.clause_of[i - 1] == clause
            self.clause_begin.append(self.clause_begin[i - 1] if same else i)


def _clauses(text: str, tokens: list[Token], offset: int) -> list[int]:
    clause, numbers = 0, []
    for i, token in enumerate(tokens):
        if i > 0:
            between = text[tokens[i - 1].end - offset : token.start - offset]
            joins_clause = tokens[i - 1].bare in ("and", "or") and token.bare in SUBJECTS
            if CLAUSE_PUNCTUATION.search(between) or token.bare in CLAUSE_WORDS or joins_clause:
                clause += 1
        numbers.append(clause)
    return numbers


def has_verb(words: Iterable[str]) -> bool:
    """Whether any word is a verb, auxiliary or subject pronoun of a small closed list, or ends
    like a verb (-ise, -izes, -ified); "doesn't" and other contractions count."""
    for word in words:
        w = word.lower().replace("’", "'")
        if w in _VERBS or "'" in w or w in NEGATION_WORDS or _VERB_SUFFIX.search(w):
            return True
    return False


def is_bare_list(text: str) -> bool:
    """Two or more items separated by commas, semicolons, slashes or line breaks, each at most
    four words, and no verb anywhere: "KL, regularization, prior, overfitting"."""
    items = [i for i in re.split(r"[,;/\n•]|\s-\s|^\s*[-*]\s", text) if i.strip(" .!?-*\t")]
    items = [re.sub(r"^\s*(and|or|&)\s+", "", i.strip(" .!?-*\t")) for i in items]
    if len(items) < 2:
        return False
    words = [w for item in items for w in WORD.findall(item)]
    return all(len(WORD.findall(item)) <= 4 for item in items) and not has_verb(words)


def analyse(text: str) -> list[Sentence]:
    spans = sentence_spans(text)
    whole_list = is_bare_list(text)
    sentences = []
    for start, end in spans:
        chunk = text[start:end]
        tokens = [Token(t.raw, t.stem, t.start + start, t.end + start) for t in tokenize(chunk)]
        content = [i for i, t in enumerate(tokens) if t.bare not in ARTICLES]
        sentences.append(
            Sentence(chunk, start, tokens, content, _clauses(text, tokens, 0), whole_list or is_bare_list(chunk))
        )
    return sentences


def _word_matches(answer: Token, stem_: str, raw: str) -> tuple[bool, bool]:
    """(matches, only through spelling tolerance). Tolerance follows the shorter of the two words
    compared, as written and as stems, so "vae" is never a misspelt "variation"."""
    if answer.stem == stem_ or answer.bare == raw:
        return True, False
    if answer.bare[:1] != raw[:1] or not answer.bare.isalpha():
        return False, False
    for mine, theirs in ((answer.bare, raw), (answer.stem, stem_)):
        edits = min(allowed_edits(mine), allowed_edits(theirs))
        if edits and edit_distance(mine, theirs, edits) <= edits:
            return True, True
    return False, False


def _part_at(sentence: Sentence, position: int, part: tuple[str, ...], raws: tuple[str, ...]) -> bool | None:
    """Whether ``part`` matches at content position ``position``: None no, else fuzzy flag."""
    if position + len(part) > len(sentence.content):
        return None
    fuzzy = False
    for k, (stem_, raw) in enumerate(zip(part, raws)):
        ok, through_typo = _word_matches(sentence.tokens[sentence.content[position + k]], stem_, raw)
        if not ok:
            return None
        fuzzy |= through_typo
    return fuzzy


def _negated(sentence: Sentence, first: int, last: int, matched: set[int]) -> bool:
    """A negation cue from the start of the first matched word's clause up to the last matched
    word, outside the phrase itself."""
    begin = sentence.clause_begin[first]
    cues = sentence.cues_before[last + 1] - sentence.cues_before[begin]
    prefixed = first > 0 and sentence.tokens[first - 1].bare in NEGATING_PREFIXES and first - 1 not in matched
    return prefixed or cues > sum(sentence.cue[i] for i in matched)


def find_phrasing(sentence: Sentence, phrasing: Phrasing) -> Iterable[Match]:
    """Every occurrence of the phrasing in the sentence (parts in order, gaps of GAP_WORDS)."""
    if not phrasing.parts:
        return
    parts = list(zip(phrasing.parts, phrasing.raw_words))
    for start in range(len(sentence.content)):
        fuzzy = _part_at(sentence, start, *parts[0])
        if fuzzy is None:
            continue
        positions = [range(start, start + len(parts[0][0]))]
        cursor = start + len(parts[0][0])
        for part, raws in parts[1:]:
            for gap in range(GAP_WORDS + 1):
                found = _part_at(sentence, cursor + gap, part, raws)
                if found is not None:
                    fuzzy |= found
                    positions.append(range(cursor + gap, cursor + gap + len(part)))
                    cursor += gap + len(part)
                    break
            else:
                break
        else:
            matched = {sentence.content[p] for span in positions for p in span}
            first, last = min(matched), max(matched)
            quoted = sentence.text[
                sentence.tokens[first].start - sentence.offset : sentence.tokens[last].end - sentence.offset
            ]
            yield Match(
                phrasing.text, sentence.text.strip(), quoted, fuzzy,
                _negated(sentence, first, last, matched), sentence.bare_list,
            )


def find_pattern(sentence: Sentence, pattern: str) -> Iterable[Match]:
    """A regular expression over the sentence as written, then over its math form."""
    raw = re.search(pattern, sentence.text, re.IGNORECASE)
    if raw is not None:
        before = sentence.text[: raw.start()]
        clause_start = max((m.end() for m in CLAUSE_PUNCTUATION.finditer(before)), default=0)
        words = [w.lower().replace("’", "'") for w in WORD.findall(before[clause_start:])]
        yield Match(pattern, sentence.text.strip(), raw.group(0), False, has_negation(words), sentence.bare_list)
        return
    canonical = re.search(pattern, math_form(sentence.text), re.IGNORECASE)
    if canonical is not None:
        yield Match(pattern, sentence.text.strip(), canonical.group(0), False, False, sentence.bare_list, True)
