"""Answer normalization of the official VQA evaluation code, reproduced rule for rule.

Sources (read, not imported, so that the numbers can be checked against them):
- GT-Vision-Lab/VQA, PythonEvaluationTools/vqaEvaluation/vqaEval.py (`processPunctuation`,
  `processDigitArticle`, the tables below).
- LLaVA's llava/eval/m4c_evaluator.py `EvalAIAnswerProcessor` (from MMF/Pythia), used by
  scripts/convert_vqav2_for_submission.py before uploading to EvalAI.

Quirks kept on purpose because the official numbers depend on them:
- `periodStrip` is "(?!<=\\d)(\\.)(?!\\d)": the intended look-behind is written as a look-ahead
  for the literal "<=", so every period NOT followed by a digit is removed ("3.5" keeps its
  period, "end." loses it), and `re.UNICODE` is passed where `sub` expects `count`, so at most
  32 periods are removed.
- A punctuation mark is deleted (not replaced by a space) when the text has it next to a space
  or has a digit-comma-digit anywhere ("1,000" -> "1000"); otherwise it becomes a space.
- Contractions are looked up per word after lowercasing, so the capitalized keys ("Im") never
  fire; number words map to digits only up to "ten"; "none" maps to "0".
"""

from __future__ import annotations

import re

CONTRACTIONS: dict[str, str] = {
    "aint": "ain't",
    "arent": "aren't",
    "cant": "can't",
    "couldve": "could've",
    "couldnt": "couldn't",
    "couldn'tve": "couldn't've",
    "couldnt've": "couldn't've",
    "didnt": "didn't",
    "doesnt": "doesn't",
    "dont": "don't",
    "hadnt": "hadn't",
    "hadnt've": "hadn't've",
    "hadn'tve": "hadn't've",
    "hasnt": "hasn't",
    "havent": "haven't",
    "hed": "he'd",
    "hed've": "he'd've",
    "he'dve": "he'd've",
    "hes": "he's",
    "howd": "how'd",
    "howll": "how'll",
    "hows": "how's",
    "Id've": "I'd've",
    "I'dve": "I'd've",
    "Im": "I'm",
    "Ive": "I've",
    "isnt": "isn't",
    "itd": "it'd",
    "itd've": "it'd've",
    "it'dve": "it'd've",
    "itll": "it'll",
    "let's": "let's",
    "maam": "ma'am",
    "mightnt": "mightn't",
    "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've",
    "mightve": "might've",
    "mustnt": "mustn't",
    "mustve": "must've",
    "neednt": "needn't",
    "notve": "not've",
    "oclock": "o'clock",
    "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at",
    "shant": "shan't",
    "shed've": "she'd've",
    "she'dve": "she'd've",
    "she's": "she's",
    "shouldve": "should've",
    "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll",
    "somebodys": "somebody's",
    "someoned": "someone'd",
    "someoned've": "someone'd've",
    "someone'dve": "someone'd've",
    "someonell": "someone'll",
    "someones": "someone's",
    "somethingd": "something'd",
    "somethingd've": "something'd've",
    "something'dve": "something'd've",
    "somethingll": "something'll",
    "thats": "that's",
    "thered": "there'd",
    "thered've": "there'd've",
    "there'dve": "there'd've",
    "therere": "there're",
    "theres": "there's",
    "theyd": "they'd",
    "theyd've": "they'd've",
    "they'dve": "they'd've",
    "theyll": "they'll",
    "theyre": "they're",
    "theyve": "they've",
    "twas": "'twas",
    "wasnt": "wasn't",
    "wed've": "we'd've",
    "we'dve": "we'd've",
    "weve": "we've",
    "werent": "weren't",
    "whatll": "what'll",
    "whatre": "what're",
    "whats": "what's",
    "whatve": "what've",
    "whens": "when's",
    "whered": "where'd",
    "wheres": "where's",
    "whereve": "where've",
    "whod": "who'd",
    "whod've": "who'd've",
    "who'dve": "who'd've",
    "wholl": "who'll",
    "whos": "who's",
    "whove": "who've",
    "whyll": "why'll",
    "whyre": "why're",
    "whys": "why's",
    "wont": "won't",
    "wouldve": "would've",
    "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've",
    "yall": "y'all",
    "yall'll": "y'all'll",
    "y'allll": "y'all'll",
    "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've",
    "y'all'dve": "y'all'd've",
    "youd": "you'd",
    "youd've": "you'd've",
    "you'dve": "you'd've",
    "youll": "you'll",
    "youre": "you're",
    "youve": "you've",
}
NUMBER_MAP: dict[str, str] = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
ARTICLES: tuple[str, ...] = ("a", "an", "the")
PUNCT: tuple[str, ...] = (
    ";",
    "/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
)
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")  # vqaEval.py
EVALAI_COMMA_STRIP = re.compile(r"(?<=\d)(\,)+(?=\d)")  # m4c_evaluator.py (commas are gone by then)
# vqaEval.py calls PERIOD_STRIP.sub("", text, re.UNICODE): the flag lands in `count`.
_PERIOD_COUNT = int(re.UNICODE)


def process_punctuation(text: str, comma_strip: re.Pattern = COMMA_STRIP) -> str:
    """vqaEval.processPunctuation."""
    out = text
    has_digit_comma = comma_strip.search(text) is not None
    for p in PUNCT:
        if (p + " " in text or " " + p in text) or has_digit_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return PERIOD_STRIP.sub("", out, _PERIOD_COUNT)


def process_digit_article(text: str) -> str:
    """vqaEval.processDigitArticle: lowercase, number words -> digits, drop articles, contractions."""
    words = [NUMBER_MAP.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def clean_whitespace(text: str) -> str:
    """The first step the official loop applies to every answer (gt and result)."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def normalize(text: str) -> str:
    """processPunctuation then processDigitArticle (what the official code applies when it does)."""
    return process_digit_article(process_punctuation(text))


def evalai_answer_processor(text: str) -> str:
    """LLaVA/MMF EvalAIAnswerProcessor.__call__ (applied to predictions by protocol `llava`)."""
    item = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    item = item.replace("\n", " ").replace("\t", " ").strip()
    item = process_punctuation(item, comma_strip=EVALAI_COMMA_STRIP)
    return process_digit_article(item)
