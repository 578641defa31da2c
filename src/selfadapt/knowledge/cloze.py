"""Cloze Q→A pairs from a passage's own sentences: no model, so no invented question.

A 135M model's self-QA pairs questions with answers that do not go together ("How many people
worked on the engineering team? — 1871"), and its generic questions ("What is this passage
about?") teach that any question is answered from the document. A cloze pair cannot do
either: its question is a sentence of the passage with one name or number asked for, its
answer that name or number. Such pairs teach more of a document's facts than the model's own
self-QA (RESULTS.md, "Routing in ask, and cloze pairs").

The question is asked as a reader asks it, because that is the shape of what a person asks
afterwards and the adapter answers a question best in the shape it was trained on: the
wh-phrase is typed ("in what year", "how many workers", "by whom") and, where the clause is
simple enough to parse with patterns, fronted ("In what year was the tower built?", "Who paid
for the dome?" from "..., who paid for the dome", "Who restored the building?" from "the
building was restored by ..."); otherwise it stays in place ("The tower is what tall?"). A
sentence that opens with "It" names the document's title instead: "It was founded in what
year?" says nothing of what was founded (not an "It" that stands for nothing: "It became clear
that ...").
"""

from __future__ import annotations

import random
import re

from ..grading import normalize_answer

UNITS = r"metres|meters|km|kilometres|kilometers|miles|feet|per cent|percent|°C|°F"
# Numbers in words are asked for only as counts; "one" is left out ("one of his best seasons" counts nothing),
# and so are the scale words ("two hundred trains": two is not the count).
COUNT_WORDS = ("two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|"
               "seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety")
# Up to two words before a count's plural noun ("45 total touchdowns", "six Pro Bowl selections"), none of
# them a word that joins phrases or a scale ("7 and the players", "two thousand students" count no such thing).
MODIFIER = (r"(?!(?:and|or|of|the|a|an|in|on|at|to|for|with|by|from|as|than|against|among|after|before|during|"
            r"when|was|were|is|are|had|has|have|his|her|its|their|this|that|these|those|hundred|thousand|million|"
            r"billion)\b)[A-Za-z][\w-]*\s+")
# The plural noun a count counts ("his", "was" end in s and count nothing).
NOUN = (r"(?!(?:his|this|its|was|has|is|as|us|thus|less|across|unless|perhaps|always)\b|[a-z]*ss\b)[a-z]+s"
        r"|[A-Z][a-z]+s(?<![sui]s)\b(?!\s+[A-Z\d])|people|men|women|children")  # "fourteen Vice Presidents"
# A number: a year, a decade ("the 1960s"), a count of some plural noun, a measure with its unit, or a bare
# number (its commas only between digits: "1,104"; its sign, "−11.7 °C"; its currency, "$2 billion"; its scale,
# "3.5 million"; "85%"); a number in words only as a count ("six seats"); never part of a word or a compound
# ("forty-two", "mid-1994", "21-minute", "£1.3bn") or an end of a range ("6/7-13/14", "1817–1892"), nor of a
# name ("the Five Nations").
NUMBER = re.compile(rf"(?<![\w/–-])(?P<num>(?:(?:1[0-9]|20)\d0s|[$£€]?−?\d(?:[\d.]|,(?=\d))*|(?i:{COUNT_WORDS}))"
                    rf"(?:\s+(?:hundred|thousand|million|billion)\b)?)(?![\w'’-]|[/–.,]\d)"
                    rf"(?:\s+(?P<unit>{UNITS})(?!\w)|%|\s+(?P<noun>(?:{MODIFIER}){{0,2}}?(?:{NOUN}))\b)?")
DECADE = re.compile(r"(?:1[0-9]|20)\d0s")
YEAR = re.compile(r"(?:1[0-9]|20)\d\d")
MONTH = "January|February|March|April|May|June|July|August|September|October|November|December"
# A whole date is one fact: "20 December 1914", "January 1, 1968", "April 1970", "December 20" (a month alone
# is none).
DATE = re.compile(rf"\b(?:(?P<day>\d{{1,2}})\s+)?(?:{MONTH})(?:\s+(?P<day2>\d{{1,2}})\b(?![.,]\d))?"
                  rf"(?:,?\s+(?P<year>{YEAR.pattern})\b)?")
# A comma that cuts a sentence: not a number's ("1,104 yards") or a date's ("March 3, 1999").
COMMA = rf"(?:(?<!\d),|,(?!\d)(?!\s{YEAR.pattern}\b))"
NOT_CUT = rf"(?:[^,;]|(?<=\d),(?=\d)|(?<=\d),(?=\s{YEAR.pattern}\b))"
# Words that open an adverbial phrase or a subordinate clause, not a subject or a name.
OPENERS = {"In", "On", "At", "By", "For", "From", "Since", "To", "With", "During", "After", "Before", "When", "While",
           "Although", "Because", "If", "As", "Over", "Under", "Of", "And", "But"}
NOT_A_NAME = OPENERS | {"It", "He", "She", "They", "We", "There"}
DETERMINERS = {"The", "A", "An", "Its", "His", "Her", "Their", "This", "These", "Those"}
# Words that open a sentence before a capitalised word that is no first name ("Many Kenyans moved ...",
# "Between 1990 and 2000 ...", "Later Apple released ...").
QUANTIFIERS = {"Many", "Most", "Some", "Several", "All", "Both", "Each", "Every", "Few", "Other", "Such", "No", "Only",
               "Early", "Late", "Modern", "Ancient", "Former", "Another", "Between", "Among", "Around", "Until",
               "Throughout", "Through", "Within", "Without", "Upon", "Despite", "Following", "Like", "Unlike", "Near",
               "Across", "Against", "Along", "Beyond", "Toward", "Towards", "Including", "Though", "However", "Once",
               "Neither", "Either", "Today", "Later", "Then", "Also", "Thus", "About", "Sometimes", "Whereas", "Here",
               "Now", "Still", "Even", "Again", "Instead", "Meanwhile", "Nevertheless", "Nonetheless", "Furthermore",
               "Moreover", "Hence", "Therefore", "Indeed", "Overall", "Afterwards", "Afterward", "That", "Everyone",
               "Everybody", "None", "Nothing", "Something", "Everything", "Not", "Nor", "What"}
# Words that open a sentence as no subject of the verb after them ("First demonstrated in 1973, ...", "Left
# untreated, ...", "Little is known ..."), though a name may begin with one ("First TransPennine Express", "Little
# Rock").
NOT_A_SUBJECT = {"First", "Second", "Third", "Last", "Next", "Below", "Above", "Long", "Similar", "Left", "Provided",
                 "Based", "Founded", "Located", "Born", "Given", "Compared", "Built", "Considered", "Known", "Used",
                 "Called", "Named", "Situated", "You", "Who", "Which", "Where", "Why", "How", "Much", "Little"}
# The words a new sentence may open with after an initial-like "I." or "V." ("... World War I. He then ...").
STARTERS = "|".join(sorted(NOT_A_NAME | DETERMINERS | QUANTIFIERS))
# A run of capitalised words (a name; "Anselm and Piet Vellmar" is one, "Sam Chisholm and Rupert Murdoch" also
# two: ``_parts``), with its middle initials, particles and a closing roman numeral: "Donald F. Turner",
# "Parliament of the United Kingdom", "Johann von Staupitz", "World War I", "St. Augustine", "Dr. Smith".
WORD = r"[A-Z][\w'’-]+"
RUN = (rf"(?:(?:St|Dr|Mr|Mrs|Ms)\.\s+)?{WORD}(?:\s+(?:(?:of\s+the|of|the|de\s+la|de|von|van\s+der|van|and)\s+)?{WORD}"
       rf"|\s+[A-Z]\.(?=\s+[A-Z])(?!\s+(?:{STARTERS})\b)|\s+[IVX]\b(?![.'’]))*")
NAME = re.compile(rf"(?<!^)(?<![\w-]){RUN}")
# A name that is part of a hyphenated word ("post-World War I"): no name of its own.
HYPHENATED = re.compile(rf"\b[a-z]+-{RUN}")
# "It became clear that ...", "It is important to note ...": an "It" that stands for nothing, not the document's
# title ("It is known as Pumindian", "It is believed to be the oldest church" are the title's).
EXPLETIVE = re.compile(r"It\s+(?:is|was|has been|had been|became|becomes|seems|seemed|appears|appeared)\s+"
                       r"(?:(?:not|also|now|widely|generally|commonly|often|still)\s+)?(?:(?:clear|likely|unlikely|"
                       r"possible|impossible|necessary|important|evident|apparent|known|said|believed|thought|"
                       r"estimated|reported|decided|agreed|expected|argued|claimed|suggested|true|unclear|uncertain|"
                       r"difficult|easy|assumed|understood|accepted|speculated|alleged|rumoured|rumored|noted)\s+)?"
                       r"(?:that|whether|if|how|why)\b"
                       r"|It\s+(?:is|was|became)\s+(?:(?:not|also|now|still)\s+)?(?:possible|impossible|necessary|"
                       r"important|difficult|easy|hard|common|rare)\s+(?:for\s+\w+\s+)?to\b")
# The last word of a body's name that may hold an "and" ("Department of Housing and Urban Development").
BODIES = {"Affairs", "Commission", "Company", "Society", "Administration", "Community", "Act", "Party", "Department",
          "Development", "Council", "Committee", "Board", "Association", "Authority", "Institute", "Museum", "Area",
          "Services", "Industries", "Sciences", "Arts", "Technology", "Research", "Telecommunications", "Agency"}
# A term the sentence names ("in a process called chemotaxis", "known as the restriction modification system"), up to
# four words, not past a clause's function word; not a phrasal verb ("called for", "named after").
FUNCTION = ("and|or|but|nor|in|on|at|by|for|from|to|with|of|as|than|which|that|who|whom|whose|where|when|while|because|"
            "since|after|before|during|until|if|is|are|was|were|be|been|has|have|had|it|its|their|his|her|this|these|"
            "even|though|although|prior|so|such|then|also|only|not|very|now|him|them|themselves|himself|herself|itself|"
            "me|us|you|the|a|an")
TERM = re.compile(rf"\b(?:called|known\s+as|termed|named|referred\s+to\s+as|dubbed)\s+(?!(?:for|on|upon|off|up|out|in|"
                  rf"into|back|to|after|by|with|from|at|as)\b)(?P<the>(?:the|a|an)\s+)?(?!(?:{FUNCTION}|one|simply)\b|\w+(?:ing|ly)\b)"
                  rf"(?P<term>\w[\w'’-]*(?:\s+(?!(?:{FUNCTION})\b)\w[\w'’-]*){{0,3}})")
BY = re.compile(r"\bby(?:\s+the)?(?:\s+[a-z]+)?\s+$")  # "by", "by the engineer" just before a name
# The preposition that governs a span: "for the astronomer |Clara Wendt", "in |1902", "at |Kelder".
GOVERNED = re.compile(r"\b(?P<prep>in|on|at|by|for|from|since|to|with|into)(?:\s+(?:the|a|an))?(?:\s+[a-z]+)?\s+$")
# A simple clause: [In YEAR] subject auxiliary predicate ("In 1985 the building was restored by ...").
CLAUSE = re.compile(rf"^(?:In (?P<year>{YEAR.pattern}),?\s+)?"
                    rf"(?P<subj>(?!(?:{'|'.join(sorted(OPENERS))})\b){NOT_CUT}+?)\s+"
                    rf"(?P<aux>was|were|is|are|has been|have been|had been)\s+(?P<pred>{NOT_CUT}+)")
# The wh-phrase a cloze question asks with, not a relative pronoun of its sentence ("Kennedy, who had served …").
ASKED = re.compile(r"\b(?:what|how many \w+)\b|(?<!, )\b(?:whom|who|where)\b")
BOUNDARY = re.compile(r";\s*|,\s+(?:and|but)\s+")
# Past participles whose simple past differs, for "X was written by Y" → "Who wrote X?"; a regular -ed
# form or one of SAME is its own past; any other participle stays passive ("By whom was X hidden?").
PAST_OF = {"written": "wrote", "taken": "took", "given": "gave", "known": "knew", "shown": "showed", "drawn": "drew",
           "grown": "grew", "chosen": "chose", "driven": "drove", "begun": "began", "hidden": "hid", "seen": "saw",
           "stolen": "stole", "spoken": "spoke", "done": "did", "broken": "broke", "thrown": "threw", "sung": "sang"}
SAME = {"built", "made", "paid", "bought", "sold", "found", "held", "led", "kept", "taught", "brought", "sent",
        "won", "told", "lost", "left", "met", "run", "set", "put", "read"}
AUXILIARIES = {"was", "were", "is", "are", "has", "have", "had"}
PAST = set(PAST_OF.values()) | SAME | {"became", "came", "went", "ran", "had", "was", "were"}


def sentences(text: str) -> list[str]:
    """The text's sentences of four words or more, split after ".", "!" or "?" (or a quotation that ends with one,
    where a new sentence begins) but not after an initial or a title ("Donald F. Turner", "St. Augustine"), unless
    a sentence's opener follows ("... World War I. He then ...")."""
    end = (rf"(?:(?<=[.!?])(?:(?<![ (][A-Z]\.)(?<!\bSt\.)(?<!\b[DM]r\.)(?<!\bMrs\.)|(?=\s+(?:{STARTERS})\b))"
           rf"|(?<=[.!?][\"”])(?=\s+[A-Z\"“(\[]))\s+")
    return [s.strip() for s in re.split(end, " ".join(text.split())) if len(s.split()) >= 4]


def _spans(body: str, names: set[str]) -> list[tuple[int, int, str, str, str]]:
    """(start, end, answer, the wh-phrase that replaces body[start:end], its kind: "year", "date", "number" (a
    count), "measure" (a number with its unit), "term" or "name") for each name, number, date and named term; a
    sentence-initial name when its first word is one of ``names``, capitalised mid-sentence elsewhere ("Warsaw
    University of Technology is ...", not "Throughout the Middle Ages"), or it is the verb's subject (below). A
    name's own number is part of it ("Apollo 11"); a counted noun is no name ("fourteen Vice Presidents")."""
    out = [(m.start(), m.end(), m.group(), "what date" if m.group("day") or m.group("day2") else
             "what month and year", "date") for m in DATE.finditer(body)
           if m.group("day") or m.group("day2") or m.group("year")]
    dates = [(a, b) for a, b, *_ in out]

    def in_a_date(start: int) -> bool:
        return any(a <= start < b for a, b in dates)

    # "Warsaw University of Technology is ...", "Cameron congratulated ...": a sentence-initial name where its first
    # word is a name elsewhere, is directly followed by another capitalised word ("Michael Grade criticized ...") or
    # is one word, the subject of the verb after it: of an auxiliary, any word ("Montpellier was among ...",
    # "Neutrophils are ..."); of another verb, not before "by" ("Bills passed by the council go ...": a participle)
    # nor a noun by its ending ("Construction began in 1887": asked "Who began …?")
    named = []
    initial = re.match(RUN, body)
    first = 0
    if initial and not in_a_date(0):
        words = initial.group().split()
        verb = re.match(r"\s+([a-z]+)\b(\s+by\b)?", body[initial.end():])
        subject = verb and words[0] not in NOT_A_SUBJECT and (verb.group(1) in AUXILIARIES or (
            _is_verb(verb.group(1)) and not verb.group(2)
            and not words[0].endswith(("ing", "tion", "sion", "ment", "ness", "ity", "ism"))))
        if words[0] not in NOT_A_NAME | DETERMINERS | QUANTIFIERS and not words[0].endswith("ly") and \
                words[0].lower() not in COUNT_WORDS.split("|") + ["one"] and (
                words[0] in names or len(words) > 1 and (words[1][:1].isupper() or words[1] in ("von", "van", "de"))
                or len(words) == 1 and subject):
            first = initial.end()
            named += [_name(body, at, at + len(part), part, "what") for at, part in _parts(initial.group())]
    hyphenated = [(m.start(), m.end()) for m in HYPHENATED.finditer(body)]
    for m in NAME.finditer(body):
        if m.start() < first or in_a_date(m.start()) or any(a <= m.start() < b for a, b in hyphenated):
            continue  # the rest of the sentence-initial name, a date's month, or part of "post-World War I"
        for at, name in _parts(m.group()):
            start = m.start() + at
            by = BY.search(body[:start])  # "bought by the engineer Hedda Lorne": bought by whom
            named.append(_name(body, by.start() if by else start, start + len(name), name, "by whom" if by else "what"))
    numbered, counted = {}, []  # a name with its own number, "the Scotland Act 1998", "Apollo 11": one name
    for m in TERM.finditer(body):
        words = m.group("term").split()
        cut = next((i for i, w in enumerate(words) if i and _is_verb(w)), len(words))  # "chemotaxis attracted …"
        term = " ".join(words[:cut])
        start = m.start("the") if m.group("the") else m.start("term")
        if not any(a == m.start("term") for a, *_ in out + named) and not term[0].isdigit():  # not a name's twice
            out.append((start, m.start("term") + len(term), term, "what", "term"))
    for m in NUMBER.finditer(body):
        num = m.group("num").rstrip(",.")
        # "Apollo 13", "the Scotland Act 1998"; not "Hearst Television's 16 stations"
        after = re.search(r"([A-Z][\w'’-]+)(?<!['’]s)(?<!['’])\s$", body[:m.start()])
        if in_a_date(m.start()) or not num.lstrip("−$£€")[0].isdigit() and (
                not m.group("noun") or num[0].isupper() and m.start()):
            continue  # a date's; a number in words that counts nothing
        if after and not (m.group("noun") and m.group("noun").split()[-1].islower() or m.group("unit")) and \
                after.group(1) not in NOT_A_NAME | DETERMINERS | QUANTIFIERS:
            if num.isdigit():
                numbered[m.start() - 1] = m.start() + len(num)
            continue  # a name's own number: asked with its name
        if DECADE.fullmatch(num):  # "in the 1960s": in what decade
            the = re.search(r"\b[Tt]he $", body[:m.start()])
            out.append((the.start() if the else m.start(), m.start() + len(num), num, "what decade", "year"))
        elif YEAR.fullmatch(num):
            out.append((m.start(), m.start() + len(num), num, "what year", "year"))
        elif m.group("noun") and num[0] not in "$£€":  # "240 workers": how many workers
            out.append((m.start(), m.end(), num, f"how many {m.group('noun')}", "number"))
            counted.append(m.end("noun"))
        else:  # "142 kilometres", "$2 billion" (of whatever it is)
            answer = num if m.group("noun") else m.group().strip().rstrip(",.")
            out.append((m.start(), m.start() + len(answer), answer, "what", "measure"))
    # not a year to one word ("(Lowery 2000)", a citation), nor a number to "AD" or to two names ("Spain and Portugal")
    named = [(a, numbered[b], answer + body[b:numbered[b]], wh, kind) if b in numbered and not (
        " " not in answer and YEAR.fullmatch(body[b + 1:numbered[b]]) or answer in ("AD", "BC", "BCE", "CE")
        or " and " in answer) else (a, b, answer, wh, kind) for a, b, answer, wh, kind in named]
    # "fourteen Vice Presidents": the count is the fact, its noun no name
    return sorted(out + [n for n in named if n[1] not in counted])


def _parts(run: str) -> list[tuple[int, str]]:
    """The names in a run of capitalised words, with their offsets: the run, and where it may be two names, each
    too, since a reader's gold may be either: two joined by "and" ("Sam Chisholm and Rupert Murdoch", not "Anselm
    and Piet Vellmar", one family, nor "Bureau of Buddhist and Tibetan Affairs", one body), or an owner and the name
    of two words or more that it owns ("Robert R. Gilruth's Space Task Group", not "Jehovah's Witnesses")."""
    both = run.split(" and ")
    if len(both) == 2 and min(len(p.split()) for p in both) >= 2 and " of " not in both[0] and \
            both[1].split()[-1] not in BODIES:
        return [(0, run), (0, both[0]), (len(both[0]) + len(" and "), both[1])]
    owner = re.match(r"(.+?)['’]s (?=[A-Z]\S* \S)", run)
    if owner and owner.group(1).split()[-1] not in NOT_A_NAME | {"People", "Women", "Men", "Children"} and \
            owner.group(1).split()[0] not in ("St.", "Saint"):  # "St. Bartholomew's Day Massacre" is one
        return [(0, run), (0, owner.group()[:-1]), (owner.end(), run[owner.end():])]
    return [(0, run)]


def _name(body: str, start: int, end: int, name: str, wh: str) -> tuple[int, int, str, str, str]:
    """A name's span in ``body`` (from ``start``, which may hold its "by"); a possessive one before its noun ("on
    Astra's satellites", "by Denver's defense", "Gilruth's Space Task Group") is asked with "whose" in its own place
    and answered without its "'s", as a reader's gold answer is."""
    owner = re.sub(r"['’]s$", "", name)
    # "the Earth's lithosphere", "Robert R. Gilruth's Space Task Group": whose lithosphere, whose Space Task Group
    if owner != name and re.match(r"\s+[A-Za-z]", body[end:]):
        the = re.search(r"\b[Tt]he $", body[:end - len(name)])
        return the.start() if the else end - len(name), end, owner, "whose", "name"
    return start, end, name, wh, "name"


def _clauses(body: str) -> list[tuple[int, int]]:
    """(start, end) of each clause of a sentence: cut at ";", and at ", and"/", but" where a verb
    follows (not in a list: "her notebooks, and a photograph of the comet")."""
    cuts = [m for m in BOUNDARY.finditer(body)
            if m.group().startswith(";") or _has_verb(re.split(rf";|{COMMA}", body[m.end():])[0])]
    return list(zip([0] + [m.end() for m in cuts], [m.start() for m in cuts] + [len(body)]))


def _is_verb(word: str) -> bool:
    """A verb that can follow a subject: a simple past ("built", "founded") or a present auxiliary."""
    return word in PAST or word.endswith("ed") or word in ("is", "are", "has", "have")


def _has_verb(text: str) -> bool:
    return any(_is_verb(w) for w in text.split())


def _past(participle: str) -> str | None:
    """The simple past of a past participle ("rebuilt", "written" → "wrote"), where it is known."""
    stem, re_ = (participle[2:], "re") if participle.startswith("re") and len(participle) > 5 else (participle, "")
    if stem in PAST_OF:
        return re_ + PAST_OF[stem]
    return participle if stem in SAME or participle.endswith("ed") else None


def _question(s: str) -> str:
    s = " ".join(s.split()).strip(" ,")
    return s[:1].upper() + s[1:] + "?"


def fronted(clause: str, start: int, end: int, wh: str) -> str | None:
    """The question with its wh-phrase first, where a pattern parses the clause; else None."""
    if wh == "whose":
        return None  # "limited by whose defense" stays where it is
    answer, before, rest = clause[start:end], clause[:start], clause[end:]
    if re.match(r"\s+and\b", rest):
        return None  # "founded by Sam Chisholm and Rupert Murdoch": one of two stays where it is
    name = answer[:1].isupper() and wh in ("what", "by whom")
    rel = re.match(rf",\s+(who|which)\s+({NOT_CUT}+)", rest)  # "Rudolf Wendt, who paid for the dome": who paid ...
    # "a water lily from the Amazon, which flowers ...": "which" after a place in a prepositional phrase
    # is the head noun's ("the merchant Ada Voss, who ..." is the person's)
    if rel and rel.group(1) == "which" and GOVERNED.search(before):
        rel = None
    if rel and name:
        return _question(("Who " if rel.group(1) == "who" else "What ") + rel.group(2))
    # "Her assistant, Jonas Pell, built the clock": who built ...
    verb = re.match(rf",?\s+([a-z]+)\b({NOT_CUT}*)", rest)
    subject = not before.strip() or before.rstrip().endswith(",")  # not "the story The Chase released in 1966"
    if verb and name and wh == "what" and _is_verb(verb.group(1)) and (subject or before.strip() in DETERMINERS):
        person = before.strip() not in DETERMINERS and verb.group(1) not in AUXILIARIES  # "Jonas Pell built"
        return _question(("Who " if person else "What ") + verb.group(1) + verb.group(2))
    m = CLAUSE.match(clause)
    if not m or len(m.group("subj").split()) > 8 or start >= m.end("pred") or start < m.start("pred") and not (
            m.group("year") and start == m.start("year")):
        return None  # the span is not in the predicate ("... is the Palm House, a hall designed by X")
    if re.match(r"(?:a|an|the)\b", m.group("pred")):
        return None  # "X is a lily from the Amazon": a noun phrase, not a verb's phrase to front
    first, *more = m.group("subj").split(" ", 1)
    subj = " ".join([first.lower() if first in DETERMINERS | NOT_A_NAME - OPENERS else first, *more])
    aux = m.group("aux")
    aux1, aux2 = (aux.split(" ", 1) + [""])[:2]
    pred, year = m.group("pred"), m.group("year")
    if year and start == m.start("year"):  # "In 1985 the building was restored": in what year was ...
        return _question(f"In what year {aux1} {subj} {aux2} {pred}")
    p, pe = start - m.start("pred"), end - m.start("pred")
    right, when = pred[pe:], f" in {year}" if year else ""
    if wh == "by whom":  # the span holds its "by"
        prep, left = "by", pred[:p]
    elif (gov := GOVERNED.search(pred[:p])):
        prep, left = gov.group("prep"), pred[: gov.start()]
    else:
        return None
    if prep == "by" and aux in ("was", "were"):  # "the glassworks was bought by X in 1889": who bought ...
        participle, *obj = left.split()
        if past := _past(participle):
            them = {"they": "them", "he": "him", "she": "her", "we": "us"}.get(subj, subj)  # "They were licensed by X"
            return _question(" ".join(["who", past, them, *obj]) + f" {right}{when}")
    if wh in ("what year", "what date", "what month and year", "what decade"):
        wh = f"{prep} {wh}"
    elif prep in ("by", "for", "to", "with"):
        wh = f"{prep} whom"
    elif prep in ("in", "at", "on", "into", "from") and name and re.match(
            r"\s*(?:$|,|(?:in|on|at|to|from|for|with|by|during|since|after|before)\b)", right):
        # "in a cellar at Dunholm": where; not "on the Lothian regional list", a name used as a modifier
        wh = "from where" if prep == "from" else "where"
    else:
        return None
    return _question(f"{wh} {aux1} {subj} {aux2} {left} {right}{when}")


def cloze_pairs(text: str, title: str | None = None, limit: int = 24) -> list[tuple[str, str]]:
    """(question, answer) per name or number of each sentence, in order, at most ``limit``; with
    ``title``, a sentence-initial "It"/"Its" becomes the title, and no pair answers with the title
    itself: the question is asked under it ("Topic: ..."), so such a pair teaches the adapter to
    copy the topic, the answer it then gives to whatever it does not know."""
    return list(dict.fromkeys((q, a) for q, a, _, _ in _cloze(text, title)))[:limit]


def _cloze(text: str, title: str | None) -> list[tuple[str, str, int, str]]:
    """(question, answer, the sentence's index, the answer's kind) per name or number of each sentence, in
    order: ``cloze_pairs`` before its limit, and where each pair's fact is (``contrasted``)."""
    pairs: list[tuple[str, str, int, str]] = []
    names = {w for sentence in sentences(text) for m in NAME.finditer(sentence) for w in m.group().split()}
    for i, sentence in enumerate(sentences(text)):
        # "But Luther believed", "So Gilruth was given": Luther, Gilruth is the subject (not "So far, ...")
        body = re.sub(r"^(?:But|And|Yet|So(?=\s+[A-Z]))\s+", "", sentence.rstrip(".!?"))
        pronoun = re.match(r"Its?\b", body) if not EXPLETIVE.match(body) else None
        if title and pronoun:  # the title stands for "It": not a fact of the sentence to ask for
            name = title[:1].upper() + title[1:]
            body = (f"{name}'s" if pronoun.group() == "Its" else name) + body[pronoun.end():]
        clauses = _clauses(body)
        for start, end, answer, wh, kind in _spans(body, set() if title and pronoun else names):
            offset, stop = next((a, b) for a, b in clauses if a <= start < b)
            clause, s, e = body[offset:stop], start - offset, min(end, stop) - offset
            if not title or normalize_answer(answer) != normalize_answer(title):
                # a term stays where the sentence names it ("… in a process called what?")
                question = (fronted(clause, s, e, wh) if kind != "term" else None) or \
                    _question(f"{clause[:s]}{wh}{clause[e:]}")
                pairs.append((question, answer, i, kind))
    return pairs


def contrasted(pairs: list[tuple[str, str]], text: str, rng: random.Random,
               title: str | None = None) -> list[tuple[str, str]]:
    """Per cloze pair of ``text`` (``cloze_pairs(text, title)``), its question with two answers offered in
    ``rng``'s order, its own and the nearest other fact of the same kind (year, date, count, measure, term or name;
    nearest by sentence, the earlier on a tie), answered with its own; none where the document has no other such
    fact.
    An adapter taught each fact alone answers a reader's question with a neighbouring fact of the same kind
    ("When was the line completed?" with the year construction began): the gold span says which answer is
    right, not which one is wrong. Both candidates are the document's own spans, so nothing is invented."""
    facts = _cloze(text, title)
    where: dict[tuple[str, str], tuple[int, str]] = {}
    for q, a, i, kind in facts:
        where.setdefault((q, a), (i, kind))
    out = []
    for q, a in pairs:
        if (q, a) not in where:
            continue  # not a cloze pair of this text (a reworded one)
        i, kind = where[q, a]
        others = [(abs(j - i), n, b) for n, (_, b, j, k) in enumerate(facts)
                  if k == kind and normalize_answer(b) != normalize_answer(a)]
        if others:
            other = min(others)[2]
            first, second = (a, other) if rng.random() < 0.5 else (other, a)
            out.append((f"{q.rstrip('?')}, {first} or {second}?", a))
    return list(dict.fromkeys(out))


def reworded(question: str, title: str | None, text: str) -> str | None:
    """The cloze question as a reader would rather ask it, or None where nothing changes: "When" for
    a fronted "In what year", cut at the first comma after its wh-phrase ("Steam arrived in what
    year?" from "…, when the company bought …"), and the title by the short name the document itself
    uses ("the garden" for "Ravensby botanic garden"). The adapter answers a question best in the
    shape it was taught, and a user seldom asks in the sentence's own words; one rewording a pair,
    because each costs training time."""
    fronted_year = re.match(r"(?:In what (?:year|month and year|decade)|On what date) "
                            r"(?=(?:was|were|is|are|did|has|have|had)\b)", question)
    q = "When " + question[fronted_year.end():] if fronted_year else question
    wh = ASKED.search(q)
    cut = re.compile(COMMA).search(q, wh.end()) if wh else None
    if cut and len(re.sub(r"^(?:On|In|At|By|From|Since)\s+", "", q[:wh.start()]).split()
                   + q[wh.end():cut.start()].split()) >= 2:  # not "On what date?" from "On what date, the treaty …"
        q = q[:cut.start()] + "?"
    words = (title or "").split()
    short = f"the {words[-1].lower()}" if len(words) > 1 and words[-1].isalpha() else None
    if short and re.search(rf"\b{short}\b", text, re.I):  # not inside a longer name: "Orsk Valley Railway Trust"
        q = re.sub(rf"\b(?:the\s+)?{re.escape(title)}\b(?-i:(?!\s+[A-Z]))", short, q, flags=re.I)
    q = q[:1].upper() + q[1:]
    return q if q != question else None


def shortened(question: str) -> str | None:
    """A long cloze question cut to the words around its wh-phrase, after the sentence's subject, or None where
    the wh-phrase is already in the question's first part ("Pro Bowl quarterback Cam Newton, while recording
    a career-high and league-leading how many total touchdowns?" from a 40-word sentence). A long sentence
    gives many cloze questions that differ only where their answer was, so the adapter confuses them, and a
    reader asks a few of its words; the part after "who"/"which" is said of the name just before it."""
    wh = ASKED.search(question)
    if not wh:
        return None
    cuts = [0] + [m.end() for m in re.finditer(rf";|{COMMA}|[()]", question)] + [len(question)]
    k = max(i for i in range(len(cuts) - 1) if cuts[i] <= wh.start())
    if k == 0:
        return None
    part = re.sub(r"^(?:and|or|but)\s+", "", question[cuts[k]:cuts[k + 1]].strip(" ,;()?"))
    if len(part.split()) - len(wh.group().split()) < 2:
        return None  # "Apollo 13, what?": nothing left of the fact but its subject
    before = question[:cuts[k]].rstrip(" ,;(")
    names = list(NAME.finditer(before)) if re.match(r"(?:who|which)\b", part) else []
    if names:
        head = names[-1].group()
    else:
        words = question[:cuts[1]].strip(" ,;(").split()
        verb = next((i for i, w in enumerate(words) if _is_verb(w) or w in AUXILIARIES), len(words))
        if not verb or verb > 6 or words[0] in OPENERS or words[0].lower() in AUXILIARIES:
            return None  # no subject found before a verb: the question would name nothing
        head = " ".join(words[:verb])
    short = _question(f"{head}, {part}")
    return short if short != question else None
