"""How each constraint is worded: IFEval's phrasing plus paraphrases, in disjoint train and test template sets.

Train prompts use IFEval's own description pattern (`if_verifiable.ifeval.instructions`, Zhou et al. 2023) and two
paraphrases; test prompts use two further paraphrases that never occur in train, so a test score measures
following the *constraint*, not a memorised sentence (issue #15 item 1). A template is a `str.format` string over
the constraint's kwargs plus the derived fields of `template_fields` (quoted keyword lists, relation words,
ordinals, language names). Template ids are `<instruction id>@<split>.<index>`.

Paraphrases keep the checker's semantics exactly: "less than N" is "fewer than"/"under" N, never "at most" N.
"""

from __future__ import annotations

from typing import Any

from if_verifiable.ifeval.instructions_util import LANGUAGE_CODES

from alignkit.errors import DataError

_BULLET_EXAMPLE = "\n* This is point 1. \n* This is point 2"
_SECTION_EXAMPLE = "\n{section_spliter} 1\n[content of section 1]\n{section_spliter} 2\n[content of section 2]"
_OPTIONS = "('My answer is yes.', 'My answer is no.', 'My answer is maybe.')"
_OPTIONS_LIST = '"My answer is yes.", "My answer is no." or "My answer is maybe."'

# instruction id -> {"train": [IFEval phrasing, paraphrase, paraphrase], "test": [paraphrase, paraphrase]}
TEMPLATES: dict[str, dict[str, list[str]]] = {
    "keywords:existence": {
        "train": ["Include keywords {kw_list} in the response.",
                  "Make sure your answer uses the words {kw_quoted}.",
                  "Your reply must mention {kw_quoted}."],
        "test": ["Be sure to work the words {kw_quoted} into what you write.",
                 "The words {kw_quoted} have to appear somewhere in your text."]},
    "keywords:frequency": {
        "train": ["In your response, the word {keyword} should appear {relation} {frequency} times.",
                  'Use the word "{keyword}" {rel_a} {frequency} times.',
                  'The word "{keyword}" must occur {rel_b} {frequency} times in your answer.'],
        "test": ['Count your uses of "{keyword}": it should show up {rel_c} {frequency} times.',
                 'Mention "{keyword}" {rel_a} {frequency} times in the text you write.']},
    "keywords:forbidden_words": {
        "train": ["Do not include keywords {fw_list} in the response.",
                  "Avoid the words {fw_quoted} in your answer.",
                  "Never use the words {fw_quoted}."],
        "test": ["Write it without ever using {fw_quoted}.",
                 "The words {fw_quoted} are off limits in your text."]},
    "keywords:letter_frequency": {
        "train": ["In your response, the letter {letter} should appear {let_relation} {let_frequency} times.",
                  'The letter "{letter}" must appear {rel_a} {let_frequency} times in your answer.',
                  'Use the letter "{letter}" {rel_b} {let_frequency} times.'],
        "test": ['Watch the letter "{letter}": it has to occur {rel_c} {let_frequency} times.',
                 'Your text should contain the letter "{letter}" {rel_a} {let_frequency} times.']},
    "language:response_language": {
        "train": ["Your ENTIRE response should be in {lang} language, no other language is allowed.",
                  "Reply only in {lang}.",
                  "Write your whole answer in {lang} and use no other language."],
        "test": ["Every word of what you write must be {lang}.",
                 "Do not answer in English: use {lang} for the entire text."]},
    "length_constraints:number_sentences": {
        "train": ["Your response should contain {relation} {num_sentences} sentences.",
                  "Use {rel_a} {num_sentences} sentences.",
                  "Your answer must have {rel_b} {num_sentences} sentences."],
        "test": ["Keep the sentence count {rel_c} {num_sentences}.",
                 "Write {rel_a} {num_sentences} sentences in total."]},
    "length_constraints:number_paragraphs": {
        "train": ["There should be {num_paragraphs} paragraphs. "
                  "Paragraphs are separated with the markdown divider: ***",
                  "Write exactly {num_paragraphs} paragraphs and separate them with the markdown divider ***.",
                  "Your answer must have {num_paragraphs} paragraphs, with *** on its own between them."],
        "test": ["Split your text into {num_paragraphs} paragraphs; put the divider *** between paragraphs.",
                 "Use exactly {num_paragraphs} paragraphs, divided from each other by ***."]},
    "length_constraints:number_words": {
        "train": ["Answer with {relation} {num_words} words.",
                  "Your response must be {rel_a} {num_words} words long.",
                  "Use {rel_b} {num_words} words."],
        "test": ["Keep the length {rel_c} {num_words} words.",
                 "Make the whole text {rel_a} {num_words} words."]},
    "length_constraints:nth_paragraph_first_word": {
        "train": ["There should be {num_paragraphs} paragraphs. Paragraphs and only paragraphs are separated with "
                  "each other by two new lines as if it was '\\n\\n' in python. "
                  "Paragraph {nth_paragraph} must start with word {first_word}.",
                  "Write {num_paragraphs} paragraphs separated by blank lines. "
                  'The {nth_word} paragraph must begin with the word "{first_word}".',
                  "Your answer needs {num_paragraphs} paragraphs with one empty line between them, and paragraph "
                  '{nth_paragraph} has to start with "{first_word}".'],
        "test": ["Use {num_paragraphs} paragraphs (a blank line between each). "
                 'Start the {nth_word} paragraph with the word "{first_word}".',
                 'Give {num_paragraphs} paragraphs separated by empty lines; the first word of paragraph '
                 '{nth_paragraph} must be "{first_word}".']},
    "detectable_content:number_placeholders": {
        "train": ["The response must contain at least {num_placeholders} placeholders represented by square "
                  "brackets, such as [address].",
                  "Include at least {num_placeholders} placeholders in square brackets, like [name].",
                  "Leave at least {num_placeholders} blanks written as square-bracket placeholders such as [date]."],
        "test": ["Put at least {num_placeholders} fill-in fields in square brackets, for example [city].",
                 "Your text needs at least {num_placeholders} bracketed placeholders such as [time]."]},
    "detectable_content:postscript": {
        "train": ["At the end of your response, please explicitly add a postscript starting with "
                  "{postscript_marker}",
                  "End your answer with a postscript that starts with {postscript_marker}",
                  "Add a postscript beginning with {postscript_marker} at the end."],
        "test": ["Close with a short note that begins with {postscript_marker}",
                 "After the main text, write a postscript opening with {postscript_marker}"]},
    "detectable_format:number_bullet_lists": {
        "train": ["Your answer must contain exactly {num_bullets} bullet points. Use the markdown bullet points "
                  "such as:" + _BULLET_EXAMPLE,
                  "Give exactly {num_bullets} markdown bullet points, each line starting with *.",
                  "Use exactly {num_bullets} bullet points in markdown, like:" + _BULLET_EXAMPLE],
        "test": ["Format it as a list of exactly {num_bullets} markdown bullets (lines that begin with * ).",
                 "Your text should have {num_bullets} bullet points, no more and no fewer, each starting with *."]},
    "detectable_format:constrained_response": {
        "train": ["Answer with one of the following options: " + _OPTIONS,
                  "Then say whether you would recommend it, using one of these exact replies: " + _OPTIONS_LIST + ".",
                  "Finish by choosing one of the following answers: " + _OPTIONS],
        "test": ["Also say if it is worth it, and include exactly one of these sentences: " + _OPTIONS_LIST + ".",
                 "Give your verdict using one of these phrases word for word: " + _OPTIONS_LIST + "."]},
    "detectable_format:number_highlighted_sections": {
        "train": ["Highlight at least {num_highlights} sections in your answer with markdown, "
                  "i.e. *highlighted section*.",
                  "Use markdown to highlight at least {num_highlights} parts of your answer, like *this part*.",
                  "Mark at least {num_highlights} sections as highlighted with asterisks, e.g. *key idea*."],
        "test": ["Emphasise at least {num_highlights} phrases by wrapping them in single asterisks, as in "
                 "*important*.",
                 "Put at least {num_highlights} highlighted spans in your text using markdown like *this*."]},
    "detectable_format:multiple_sections": {
        "train": ["Your response must have {num_sections} sections. Mark the beginning of each section with "
                  "{section_spliter} X, such as:" + _SECTION_EXAMPLE,
                  "Organise your answer in {num_sections} sections, each starting with {section_spliter} "
                  "followed by its number.",
                  "Divide the answer into {num_sections} parts labelled {section_spliter} 1, {section_spliter} 2 "
                  "and so on."],
        "test": ["Write {num_sections} sections, and begin each one with a heading of the form "
                 "{section_spliter} N (N is the section number).",
                 "Your text needs {num_sections} numbered sections, each introduced by {section_spliter} and its "
                 "number."]},
    "detectable_format:json_format": {
        "train": ["Entire output should be wrapped in JSON format. You can use markdown ticks such as ```.",
                  "Return your whole answer as valid JSON.",
                  "Format the entire response as a JSON object."],
        "test": ["Everything you write must be one valid JSON value (markdown ``` fences are allowed).",
                 "Give the answer as JSON only, with no text outside it."]},
    "detectable_format:title": {
        "train": ["Your answer must contain a title, wrapped in double angular brackets, such as <<poem of joy>>.",
                  "Give your answer a title in double angular brackets, like <<my title>>.",
                  "Start with a title wrapped in << and >>."],
        "test": ["Include a heading enclosed in double angle brackets, for example <<a good day>>.",
                 "Put a title inside << >> somewhere in your text, such as <<notes>>."]},
    "combination:two_responses": {
        "train": ["Give two different responses. Responses and only responses should be separated by 6 asterisk "
                  "symbols: ******.",
                  "Write two different answers and separate them with six asterisks: ******.",
                  "Provide two distinct responses, divided by a line of 6 asterisks (******)."],
        "test": ["Offer two separate versions, with ****** (six asterisks) between them and nowhere else.",
                 "Produce two different replies; put exactly ****** between the two."]},
    "combination:repeat_prompt": {
        "train": ["First repeat the request word for word without change, then give your answer (1. do not say "
                  "any words or characters before repeating the request; 2. the request you need to repeat does "
                  "not include this sentence)",
                  "Begin by repeating the request above word for word (without this sentence), then answer it.",
                  "Copy the request exactly as written, leaving out this sentence, and then respond to it."],
        "test": ["Before answering, restate the request verbatim (everything before this sentence), with nothing "
                 "in front of it.",
                 "Start your reply with an exact copy of the request that precedes this sentence, then answer."]},
    "startend:end_checker": {
        "train": ["Finish your response with this exact phrase {end_phrase}. "
                  "No other words should follow this phrase.",
                  'End your answer with the exact phrase "{end_phrase}" and nothing after it.',
                  'The last words of your response must be "{end_phrase}".'],
        "test": ['Make "{end_phrase}" the final words of your text, with nothing following.',
                 'Conclude with exactly "{end_phrase}" and write nothing after that.']},
    "change_case:capital_word_frequency": {
        "train": ["In your response, words with all capital letters should appear {relation} {frequency} times.",
                  "Use {rel_a} {frequency} words written in ALL CAPITAL letters.",
                  "Your answer must contain {rel_b} {frequency} fully capitalised words."],
        "test": ["Include {rel_c} {frequency} words in all caps.",
                 "The number of all-uppercase words in your text should be {rel_a} {frequency}."]},
    "change_case:english_capital": {
        "train": ["Your entire response should be in English, and in all capital letters.",
                  "Write your whole answer in English using only capital letters.",
                  "Respond in English, in ALL CAPS."],
        "test": ["Every letter of your English text must be uppercase.",
                 "Use English and write everything in upper case."]},
    "change_case:english_lowercase": {
        "train": ["Your entire response should be in English, and in all lowercase letters. "
                  "No capital letters are allowed.",
                  "Write your whole answer in English using only lowercase letters.",
                  "Respond in English, in all lowercase, with no capital letters."],
        "test": ["Every letter of your English text must be lower case; do not capitalise anything.",
                 "Use English and keep every single letter lowercase."]},
    "punctuation:no_comma": {
        "train": ["In your entire response, refrain from the use of any commas.",
                  "Do not use any commas in your answer.",
                  "Write your response without a single comma."],
        "test": ["Avoid commas completely.",
                 "No commas are allowed anywhere in your text."]},
    "startend:quotation": {
        "train": ["Wrap your entire response with double quotation marks.",
                  "Put your whole answer inside double quotes.",
                  "Enclose the entire response in double quotation marks."],
        "test": ['Begin and end your text with a double quote character (").',
                 "Your full reply must sit between a pair of double quotation marks."]},
}

_REL_A = {"at least": "at least", "less than": "fewer than"}
_REL_B = {"at least": "no fewer than", "less than": "under"}
_REL_C = {"at least": "a minimum of", "less than": "strictly below"}
_ORDINALS = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}


def quoted(words: list[str]) -> str:
    """`"a"`, `"a" and "b"`, `"a", "b" and "c"`."""
    items = [f'"{w}"' for w in words]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def template_fields(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The kwargs plus the derived fields templates may use."""
    out = dict(kwargs)
    for key, prefix in (("keywords", "kw"), ("forbidden_words", "fw")):
        if key in kwargs:
            out[f"{prefix}_list"] = ", ".join(kwargs[key])
            out[f"{prefix}_quoted"] = quoted(list(kwargs[key]))
    rel = kwargs.get("relation", kwargs.get("let_relation", kwargs.get("capital_relation")))
    if rel is not None:
        out.update(rel_a=_REL_A[rel], rel_b=_REL_B[rel], rel_c=_REL_C[rel])
        out.setdefault("relation", rel)
    if "capital_frequency" in kwargs:
        out["frequency"] = kwargs["capital_frequency"]
    if "language" in kwargs:
        out["lang"] = LANGUAGE_CODES[kwargs["language"]]
    if "nth_paragraph" in kwargs:
        out["nth_word"] = _ORDINALS[kwargs["nth_paragraph"]]
    return out


def template_ids(split: str) -> list[str]:
    """Every template id of a split (`train` or `test` wording)."""
    return [f"{cid}@{split}.{i}" for cid, by in TEMPLATES.items() for i in range(len(by[split]))]


def template_text(template_id: str) -> str:
    """The format string of a template id."""
    try:
        cid, rest = template_id.rsplit("@", 1)
        split, index = rest.split(".")
        return TEMPLATES[cid][split][int(index)]
    except (KeyError, ValueError, IndexError) as e:
        raise DataError(f"unknown constraint template {template_id!r} (expected '<instruction id>@train.<i>' or "
                        f"'@test.<i>' of alignkit.data.suite_gen.wording.TEMPLATES)", field="templates") from e


def render_constraint(template_id: str, constraint: dict[str, Any]) -> str:
    """One constraint's sentence in the wording of `template_id`."""
    if not template_id.startswith(constraint["id"] + "@"):
        raise DataError(f"template {template_id!r} does not word constraint {constraint['id']!r}", field="templates")
    try:
        return template_text(template_id).format(**template_fields(constraint["kwargs"]))
    except KeyError as e:
        raise DataError(f"constraint {constraint['id']!r}: kwargs {sorted(constraint['kwargs'])} lack {e} "
                        f"needed by template {template_id!r}", field="constraints") from e
