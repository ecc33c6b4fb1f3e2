"""PTB-style caption tokenisation, as the COCO caption evaluation does it, in pure Python.

The COCO caption evaluation (``pycocoevalcap.tokenizer.PTBTokenizer``) runs Stanford CoreNLP 3.4.1's
``PTBTokenizer -preserveLines -lowerCase`` (Java) and then drops every token in :data:`PUNCTUATIONS`.
:func:`ptb_tokenize` implements the same rules without Java:

- lower-case (English rules);
- split off punctuation: ``. , ; : ! ? ...`` and quotes, except inside numbers (``3.5``, ``1,000``,
  ``10:30``, ``22 3/4`` joined by U+00A0 as CoreNLP does), inside words (``and/or``, ``ground.a``) and in
  dotted abbreviations (``u.s.``); a word's final period is split off unless the word is a known
  abbreviation (``st.``, ``ave.``; a single letter only mid-sentence: ``w. centre``);
- split clitics PTB-style: ``don't`` -> ``do n't``, ``man's`` -> ``man 's`` (also ``'re 've 'll 'd 'm``);
- hyphenated words stay one token (``black-and-white``); lone ``-``/``--`` are punctuation;
- brackets become ``-lrb- -rrb- -lsb- -rsb- -lcb- -rcb-``;
- drop the tokens in :data:`PUNCTUATIONS` (pycocoevalcap's list, verbatim).

Quirk kept on purpose: pycocoevalcap's list has ``-LRB-``/``-RRB-`` in upper case, but CoreNLP lower-cases
them under ``-lowerCase``, so ``-lrb-`` and ``-rrb-`` survive into the scored text. We reproduce that, so
scores match the official evaluation.

Measured agreement: identical token lists to CoreNLP 3.4.1 (as pycocoevalcap runs it) on all 25,014
captions of COCO val2017 (``captions_val2017_full5000.json``). Rarer constructs (URLs, emoticons, non-English
text, other abbreviations) may still differ; ``tests/test_caption_metrics.py`` re-checks against Java when
it is installed.
"""

from __future__ import annotations

import re

__all__ = ["PUNCTUATIONS", "ptb_tokenize"]

#: Tokens pycocoevalcap removes after PTB tokenisation (``tokenizer/ptbtokenizer.py``).
PUNCTUATIONS: frozenset[str] = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
# Abbreviations CoreNLP's PTBLexer keeps with their period (a subset of its lists: titles, streets,
# months, days, US states, companies) that are not also English words (sun., mass., no. end sentences).
_ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "lt", "maj", "capt", "sgt", "jr", "sr", "st", "fr", "mt", "ft", "ave", "blvd",
    "rd", "jan", "feb", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "tue", "tues", "thu",
    "thurs", "ala", "ariz", "ark", "calif", "colo", "conn", "fla", "kan", "kans", "ky", "md", "mich", "minn",
    "neb", "nev", "okla", "tenn", "vt", "wis", "wyo", "inc", "corp", "ltd", "bros", "dept", "vs", "etc",
})
_CLITIC = re.compile(r"^(.+?)(n't|'s|'re|'ve|'ll|'d|'m)$")
_TOKEN = re.compile(
    r"""
    \d+[ ]\d+/\d+                        # mixed fraction: 22 3/4 (one token, joined by U+00A0)
    | \d+(?:[.,:/]\d+)+                  # number with inner punctuation: 3.5 1,000 10:30 1/2
    | (?:[a-z]\.){2,}(?![a-z0-9])         # dotted abbreviation: u.s.
    | \.\.\.+                            # ellipsis
    | --+                                # dash
    | [^\W_]+(?:[-'&/.][^\W_]+)*(?:\.(?=\s+\S))?  # word; inner - ' & / . keep it whole: one-way u.s.a
    | [^\W_]+(?:[-'&/.][^\W_]+)*
    | \S                                 # any other single character
    """,
    re.VERBOSE,
)


def _split_clitic(token: str) -> list[str]:
    m = _CLITIC.match(token)
    if m and m.group(1) not in ("", "'"):
        return [m.group(1), m.group(2)]
    return [token]


def ptb_tokenize(text: str) -> list[str]:
    """Tokenise one caption as the COCO caption evaluation does: lower-case PTB tokens, punctuation removed."""
    tokens: list[str] = []
    text = text.lower().replace("\n", " ")
    for m in _TOKEN.finditer(text):
        tok = _BRACKETS.get(m.group(), m.group()).replace(" ", "\xa0")
        if tok == '"':
            continue
        if tok.endswith(".") and len(tok) > 1 and tok[:-1].isalpha() and "." not in tok[:-1]:
            # "st." keeps its period; a single letter keeps it mid-sentence ("w. centre"), else split
            abbreviation = tok[:-1] in _ABBREVIATIONS or (len(tok) == 2 and tok != "i.")
            if not abbreviation:
                tokens.extend(t for t in _split_clitic(tok[:-1]) if t not in PUNCTUATIONS)
                continue
        elif tok in _ABBREVIATIONS and text[m.end():m.end() + 1] == ".":
            tok += "."  # sentence-final abbreviation: CoreNLP keeps "st." at the end of the line too
        for t in _split_clitic(tok):
            if t not in PUNCTUATIONS:
                tokens.append(t)
    return tokens
