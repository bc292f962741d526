"""General-capability probes that need no data files.

- ``GENERAL_PROMPTS``: a fixed list of varied general instructions (explanations, rewriting, arithmetic word
  problems, small Python functions, advice, summaries, ...). talr measures the code length of the base model's own
  greedy answers to them before and after fine-tuning.
- ``generate_ifeval_rows``: IFEval-style verifiable prompts in the schema of IFEval's ``input_data.jsonl``
  (``key``, ``prompt``, ``instruction_id_list``, ``kwargs``), built from lm-evaluation-harness's IFEval instruction
  registry: a base task plus 1-3 mutually compatible instructions whose text is the checker's own
  ``build_description(**kwargs)``, so lm-eval's IFEval checkers score the rows unchanged.
"""

from __future__ import annotations

import contextlib
import io
import random
from dataclasses import dataclass
from types import ModuleType
from typing import Callable

GENERAL_PROMPTS: tuple[tuple[str, str], ...] = (
    # Short factual explanations
    ("explain-01", "Explain in a few sentences why the sky looks blue during the day."),
    ("explain-02", "What causes the seasons on Earth? Answer briefly."),
    ("explain-03", "Explain what photosynthesis is to a ten-year-old."),
    ("explain-04", "What is the difference between weather and climate?"),
    ("explain-05", "Briefly explain how a vaccine helps the body fight a disease."),
    ("explain-06", "Why does ice float on water?"),
    ("explain-07", "What is inflation in economics? Give a simple example."),
    ("explain-08", "Explain the difference between a virus and a bacterium."),
    ("explain-09", "How does a refrigerator keep food cold?"),
    ("explain-10", "What is the purpose of the Internet Protocol (IP) address of a computer?"),
    # Rewriting and editing
    ("rewrite-01", "Rewrite this sentence in a more formal tone: \"Hey, can you send me that report by tomorrow?\""),
    ("rewrite-02", "Correct the grammar in this sentence: \"She don't like going to the store on mondays.\""),
    ("rewrite-03", "Make this sentence shorter without changing its meaning: \"Due to the fact that it was raining "
                   "very heavily outside, we made the decision to stay inside the house.\""),
    ("rewrite-04", "Rewrite the following in the passive voice: \"The committee approved the new budget.\""),
    ("rewrite-05", "Turn this list into one fluent sentence: apples, bread, milk, eggs, coffee."),
    ("rewrite-06", "Paraphrase this sentence: \"Regular exercise improves both physical and mental health.\""),
    ("rewrite-07", "Rewrite this message so it sounds friendlier: \"Your order is late because you entered the wrong "
                   "address.\""),
    ("rewrite-08", "Translate this sentence into simple English: \"The aforementioned individual was apprehended "
                   "subsequent to the incident.\""),
    # Arithmetic word problems
    ("math-01", "A bakery sells muffins for $3 each. How much do 7 muffins cost? Show your reasoning."),
    ("math-02", "Tom has 24 marbles. He gives a quarter of them to his sister. How many marbles does he have left?"),
    ("math-03", "A train travels at 60 miles per hour for 2.5 hours. How far does it go?"),
    ("math-04", "A shirt costs $40 and is on sale for 25% off. What is the sale price?"),
    ("math-05", "Sara reads 15 pages a day. How many days does she need to finish a 240-page book?"),
    ("math-06", "A rectangle is 8 cm long and 5 cm wide. What are its area and perimeter?"),
    ("math-07", "There are 3 boxes with 12 pencils each. If 9 pencils are broken, how many good pencils are there?"),
    ("math-08", "If a recipe for 4 people needs 300 grams of rice, how much rice is needed for 10 people?"),
    # Simple Python functions
    ("code-01", "Write a Python function that returns the largest number in a list."),
    ("code-02", "Write a Python function that checks whether a string is a palindrome."),
    ("code-03", "Write a Python function that counts the vowels in a string."),
    ("code-04", "Write a Python function that returns the factorial of a non-negative integer."),
    ("code-05", "Write a Python function that removes duplicate items from a list while keeping their order."),
    ("code-06", "Write a Python function that converts a temperature from Celsius to Fahrenheit."),
    ("code-07", "Write a Python function that returns the n-th Fibonacci number."),
    ("code-08", "Write a Python function that reverses the order of words in a sentence."),
    # Advice
    ("advice-01", "Give three tips for getting better sleep."),
    ("advice-02", "How can I prepare for a job interview? List a few practical steps."),
    ("advice-03", "What are some simple ways to save money on groceries?"),
    ("advice-04", "Suggest a few ways to stay focused while studying at home."),
    ("advice-05", "How should a beginner start learning to play the guitar?"),
    ("advice-06", "What should I pack for a weekend hiking trip?"),
    ("advice-07", "Give some advice for someone who wants to start running regularly."),
    ("advice-08", "How can I politely decline an invitation to a party?"),
    # Summaries
    ("summary-01", "Summarize in one sentence: \"The city council met on Tuesday to discuss the new park. Residents "
                   "asked for more trees and a playground. The council agreed to review the plans next month.\""),
    ("summary-02", "Summarize the main idea: \"Bees pollinate many of the crops we eat. Without them, farmers would "
                   "need to pollinate plants by hand, which is slow and expensive. Protecting bee habitats therefore "
                   "matters for our food supply.\""),
    ("summary-03", "Give a two-sentence summary of the story of Cinderella."),
    ("summary-04", "Summarize this email: \"Hi team, the meeting on Friday is moved to 3 pm because the client "
                   "arrives late. Please bring your updated slides. Thanks, Ana.\""),
    ("summary-05", "Summarize the plot of Romeo and Juliet in three sentences."),
    ("summary-06", "Summarize the benefits of drinking enough water each day."),
    # Short writing
    ("write-01", "Write a short poem about the ocean."),
    ("write-02", "Write a thank-you note to a neighbor who watered your plants while you were away."),
    ("write-03", "Write a short product description for a reusable water bottle."),
    ("write-04", "Write the opening paragraph of a story about a robot that learns to paint."),
    ("write-05", "Write a short birthday message for a coworker."),
    ("write-06", "Write a haiku about winter."),
    # Classification, lists and comparisons
    ("reason-01", "Is a tomato a fruit or a vegetable? Explain your answer."),
    ("reason-02", "Sort these numbers from smallest to largest: 42, 7, 19, 3, 28."),
    ("reason-03", "Name three renewable sources of energy and one advantage of each."),
    ("reason-04", "Which is heavier, a kilogram of feathers or a kilogram of iron? Explain."),
    ("reason-05", "Classify the sentiment of this review as positive or negative: \"The food was cold and the "
                  "service was slow.\""),
    ("reason-06", "Compare cats and dogs as pets in a few sentences."),
)


def general_prompt_rows() -> list[dict]:
    """The general prompts as ``[{"id": ..., "prompt": ...}]`` rows."""
    return [{"id": prompt_id, "prompt": prompt} for prompt_id, prompt in GENERAL_PROMPTS]


# ---------------------------------------------------------------------------------------------------------------
# IFEval-style prompts


@dataclass(frozen=True)
class _Topic:
    task: str
    words: tuple[str, ...]  # single lowercase words that fit the task, for keyword-type instructions


_TOPICS: tuple[_Topic, ...] = (
    _Topic("Write a short blog post about the benefits of urban gardening.", ("garden", "soil", "city", "vegetables")),
    _Topic("Write a cover letter for a junior data analyst position at a retail company.",
           ("data", "analysis", "team", "experience")),
    _Topic("Explain how solar panels turn sunlight into electricity.", ("energy", "sunlight", "panel", "electricity")),
    _Topic("Write a story about a lighthouse keeper who finds a message in a bottle.",
           ("lighthouse", "bottle", "storm", "message")),
    _Topic("Write a product description for a pair of waterproof hiking boots.", ("boots", "trail", "comfort", "rain")),
    _Topic("Write a poem about autumn in a small town.", ("leaves", "autumn", "street", "harvest")),
    _Topic("Give advice to a student preparing for their first job interview.",
           ("interview", "practice", "confidence", "questions")),
    _Topic("Describe a typical day in the life of a zookeeper.", ("animals", "feeding", "morning", "visitors")),
    _Topic("Write an email to a landlord asking to fix a leaking kitchen tap.", ("tap", "kitchen", "repair", "water")),
    _Topic("Explain the rules of chess to a complete beginner.", ("chess", "king", "board", "move")),
    _Topic("Write a review of a fictional Italian restaurant called Luna.", ("pasta", "service", "dessert", "menu")),
    _Topic("Write a speech for a high school graduation ceremony.", ("future", "friends", "graduation", "teachers")),
    _Topic("Describe the water cycle.", ("evaporation", "rain", "clouds", "ocean")),
    _Topic("Write a short biography of a fictional inventor named Clara Reyes.",
           ("invention", "workshop", "patent", "engine")),
    _Topic("Write a travel guide entry for a weekend in Lisbon.", ("tram", "museum", "river", "food")),
    _Topic("Explain why regular exercise is important for older adults.", ("exercise", "balance", "health", "walking")),
    _Topic("Write a limerick about a cat who loves to sleep.", ("cat", "nap", "sofa", "dream")),
    _Topic("Write a pitch for a mobile app that helps people drink more water.",
           ("app", "reminder", "hydration", "users")),
    _Topic("Describe how to bake a simple loaf of bread.", ("flour", "dough", "oven", "yeast")),
    _Topic("Write a letter to your future self ten years from now.", ("future", "goals", "memories", "change")),
    _Topic("Summarize the history of the bicycle.", ("bicycle", "wheels", "design", "history")),
    _Topic("Write a dialogue between a customer and a librarian about finding a mystery novel.",
           ("library", "novel", "mystery", "shelf")),
    _Topic("Explain what a budget is and why families use one.", ("budget", "money", "savings", "expenses")),
    _Topic("Write an advertisement for a community yoga class.", ("yoga", "breathing", "class", "relax")),
    _Topic("Describe the life cycle of a butterfly.", ("caterpillar", "butterfly", "egg", "wings")),
    _Topic("Write a short essay on the importance of reading to children.", ("books", "reading", "children", "stories")),
    _Topic("Write a weather report for a snowy day in the mountains.", ("snow", "mountains", "wind", "temperature")),
    _Topic("Explain how to care for a houseplant.", ("plant", "water", "light", "leaves")),
    _Topic("Write a funny story about a dog who wants to become a chef.", ("dog", "kitchen", "recipe", "chef")),
    _Topic("Write a proposal for adding a bike lane to a busy street.", ("bike", "safety", "street", "traffic")),
    _Topic("Describe the benefits and drawbacks of working from home.", ("home", "office", "work", "schedule")),
    _Topic("Write an invitation to a neighborhood picnic.", ("picnic", "park", "food", "neighbors")),
    _Topic("Explain how a bill becomes a law in a parliament.", ("law", "vote", "parliament", "debate")),
    _Topic("Write a short mystery story set on a night train.", ("train", "detective", "night", "clue")),
    _Topic("Give tips for keeping a small apartment tidy.", ("apartment", "storage", "clean", "space")),
    _Topic("Write a song about friendship.", ("friend", "together", "laughter", "road")),
)

_YES_NO_QUESTIONS: tuple[str, ...] = (
    "Is it a good idea to drink coffee right before going to sleep?",
    "Can penguins fly?",
    "Is the Pacific Ocean larger than the Atlantic Ocean?",
    "Should a beginner run a marathon without any training?",
    "Is it safe to look directly at the sun during an eclipse?",
    "Do plants need sunlight to grow?",
    "Is Mount Everest the tallest mountain above sea level?",
    "Would a paper boat survive a storm at sea?",
)

_END_PHRASES = ("Any other questions?", "Is there anything else I can help with?",
                "Let me know if you have additional questions.", "Thank you for reading.", "That is all for now.")
_RELATIONS = ("less than", "at least")

# Pairs IFEval's own conflict table allows but that cannot (or can hardly) be satisfied together: length limits of
# different kinds, case changes against case-sensitive section markers, a title or section marker where a paragraph
# must start with a given word, and letter/word-level English constraints against answers in another language.
_EXTRA_CONFLICTS: tuple[tuple[str, str], ...] = (
    ("length_constraints:number_words", "length_constraints:number_sentences"),
    ("length_constraints:number_words", "length_constraints:number_paragraphs"),
    ("length_constraints:number_words", "length_constraints:nth_paragraph_first_word"),
    ("length_constraints:number_sentences", "length_constraints:nth_paragraph_first_word"),
    ("change_case:english_capital", "detectable_format:multiple_sections"),
    ("change_case:english_lowercase", "detectable_format:multiple_sections"),
    ("detectable_format:title", "length_constraints:nth_paragraph_first_word"),
    ("detectable_format:multiple_sections", "length_constraints:nth_paragraph_first_word"),
    ("language:response_language", "keywords:letter_frequency"),
    ("language:response_language", "change_case:capital_word_frequency"),
    ("language:response_language", "length_constraints:nth_paragraph_first_word"),
)


class _TopicWords:
    """A topic's words handed out without repeats, so that keyword instructions in one prompt never contradict each
    other (a word both required and forbidden); ``pending`` instructions still to serve get at least one word each."""

    def __init__(self, rng: random.Random, words: tuple[str, ...], pending: int):
        self.words = rng.sample(words, len(words))
        self.pending = pending

    def take(self, rng: random.Random, low: int, high: int) -> list[str]:
        self.pending -= 1
        count = rng.randint(low, min(high, len(self.words) - self.pending))
        taken, self.words = self.words[:count], self.words[count:]
        return taken


_WORD_INSTRUCTIONS = ("keywords:existence", "keywords:frequency", "keywords:forbidden_words",
                      "length_constraints:nth_paragraph_first_word")

_Sampler = Callable[[random.Random, _TopicWords, str], dict]


def _kwargs_samplers(language_codes: tuple[str, ...]) -> dict[str, _Sampler]:
    """instruction id -> (rng, topic words, base task) -> kwargs for that checker's ``build_description``."""

    def relation_count(low_at_least: int, high_at_least: int, low_less: int, high_less: int, key: str,
                       rel_key: str) -> _Sampler:
        def sample(rng: random.Random, words: _TopicWords, task: str) -> dict:
            relation = rng.choice(_RELATIONS)
            low, high = (low_at_least, high_at_least) if relation == "at least" else (low_less, high_less)
            return {rel_key: relation, key: rng.randint(low, high)}
        return sample

    def nth_paragraph(rng: random.Random, words: _TopicWords, task: str) -> dict:
        paragraphs = rng.randint(2, 5)
        return {"num_paragraphs": paragraphs, "nth_paragraph": rng.randint(1, paragraphs),
                "first_word": words.take(rng, 1, 1)[0]}

    def letter(rng: random.Random, words: _TopicWords, task: str) -> dict:
        # "At least" for common letters, "less than" for rare ones: both can be met by a normal English answer.
        if rng.random() < 0.5:
            return {"letter": rng.choice("aeinorst"), "let_frequency": rng.randint(5, 20), "let_relation": "at least"}
        return {"letter": rng.choice("jqxz"), "let_frequency": rng.randint(1, 3), "let_relation": "less than"}

    def keyword_frequency(rng: random.Random, words: _TopicWords, task: str) -> dict:
        relation = rng.choice(_RELATIONS)
        frequency = rng.randint(1, 4) if relation == "at least" else rng.randint(2, 4)
        return {"keyword": words.take(rng, 1, 1)[0], "frequency": frequency, "relation": relation}

    def capital_words(rng: random.Random, words: _TopicWords, task: str) -> dict:
        relation = rng.choice(_RELATIONS)
        frequency = rng.randint(1, 10) if relation == "at least" else rng.randint(2, 12)
        return {"capital_frequency": frequency, "capital_relation": relation}

    no_args = lambda rng, words, task: {}  # noqa: E731 - checkers that take no arguments
    return {
        "keywords:existence": lambda rng, words, task: {"keywords": words.take(rng, 1, 2)},
        "keywords:frequency": keyword_frequency,
        "keywords:forbidden_words": lambda rng, words, task: {"forbidden_words": words.take(rng, 1, 3)},
        "keywords:letter_frequency": letter,
        "language:response_language": lambda rng, words, task: {"language": rng.choice(language_codes)},
        "length_constraints:number_sentences": relation_count(3, 12, 3, 10, "num_sentences", "relation"),
        "length_constraints:number_paragraphs": lambda rng, words, task: {"num_paragraphs": rng.randint(2, 5)},
        "length_constraints:number_words": relation_count(100, 400, 50, 300, "num_words", "relation"),
        "length_constraints:nth_paragraph_first_word": nth_paragraph,
        "detectable_content:number_placeholders": lambda rng, words, task: {"num_placeholders": rng.randint(1, 6)},
        "detectable_content:postscript": lambda rng, words, task: {"postscript_marker": rng.choice(("P.S.", "P.P.S"))},
        "detectable_format:number_bullet_lists": lambda rng, words, task: {"num_bullets": rng.randint(2, 6)},
        "detectable_format:constrained_response": no_args,
        "detectable_format:number_highlighted_sections": lambda rng, words, task: {"num_highlights": rng.randint(1, 4)},
        "detectable_format:multiple_sections": lambda rng, words, task: {
            "section_spliter": rng.choice(("Section", "SECTION")), "num_sections": rng.randint(2, 5)},
        "detectable_format:json_format": no_args,
        "detectable_format:title": no_args,
        "combination:two_responses": no_args,
        "combination:repeat_prompt": lambda rng, words, task: {"prompt_to_repeat": task},
        "startend:end_checker": lambda rng, words, task: {"end_phrase": rng.choice(_END_PHRASES)},
        "change_case:capital_word_frequency": capital_words,
        "change_case:english_capital": no_args,
        "change_case:english_lowercase": no_args,
        "punctuation:no_comma": no_args,
        "startend:quotation": no_args,
    }


def ifeval_registry() -> ModuleType:
    """lm-evaluation-harness's ``instructions_registry`` module, imported without a network download.

    Importing lm-eval's IFEval code runs ``nltk.download("punkt_tab")`` when that tokenizer is not installed. Offline
    the download fails (after a network attempt that can block for a long time where connections hang) and the import
    still succeeds; generating prompts only needs ``build_description``, which uses no nltk data, so the download is
    skipped for this import. Checking responses with the sentence- or word-counting checkers does need ``punkt_tab``.
    """
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab")
        missing = False
    except LookupError:
        missing = True
    download = nltk.download
    if missing:
        nltk.download = lambda *args, **kwargs: False
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # lm-eval prints "Downloaded punkt_tab" even when it did not
            from lm_eval.tasks.ifeval import instructions_registry
    finally:
        nltk.download = download
    return instructions_registry


def _conflicts(registry: ModuleType) -> dict[str, set[str]]:
    """IFEval's conflict table made symmetric (on a copy), plus ``_EXTRA_CONFLICTS``."""
    table = {key: set(value) | {key} for key, value in registry.INSTRUCTION_CONFLICTS.items()}
    pairs = [(a, b) for a, values in registry.INSTRUCTION_CONFLICTS.items() for b in values] + list(_EXTRA_CONFLICTS)
    for a, b in pairs:
        table.setdefault(a, {a}).add(b)
        table.setdefault(b, {b}).add(a)
    return table


_INSTRUCTION_COUNT_WEIGHTS = (0.56, 0.33, 0.11)  # 1, 2, 3 instructions: the shares in IFEval's 541 prompts


def generate_ifeval_rows(n: int, seed: int = 0) -> list[dict]:
    """``n`` IFEval-style rows (``key``, ``prompt``, ``instruction_id_list``, ``kwargs``), seeded and deterministic.

    Each prompt is a base task followed by the descriptions the checkers build from the sampled kwargs; with
    ``combination:repeat_prompt`` the repeat instruction comes last and ``prompt_to_repeat`` is everything before it.
    Keys start at 100000 so they never collide with the real file's keys (1000-3757).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    registry = ifeval_registry()
    from lm_eval.tasks.ifeval import instructions_util

    samplers = _kwargs_samplers(tuple(sorted(instructions_util.LANGUAGE_CODES)))
    missing = sorted(set(registry.INSTRUCTION_DICT) - set(samplers))
    if missing:
        raise RuntimeError(f"no kwargs sampler for IFEval instruction(s) {missing}: lm-eval's registry has changed")
    conflicts = _conflicts(registry)
    instruction_ids = sorted(registry.INSTRUCTION_DICT)
    rows = []
    for index in range(n):
        rng = random.Random(f"talr-ifeval:{seed}:{index}")
        wanted = rng.choices((1, 2, 3), weights=_INSTRUCTION_COUNT_WEIGHTS)[0]
        chosen: list[str] = []
        while len(chosen) < wanted:
            allowed = [i for i in instruction_ids if not any(i in conflicts[c] for c in chosen)]
            if not allowed:
                break
            chosen.append(rng.choice(allowed))
        # The repeat instruction is applied last, to the prompt built so far.
        chosen.sort(key=lambda instruction_id: instruction_id == "combination:repeat_prompt")
        if "detectable_format:constrained_response" in chosen:
            topic = _Topic(rng.choice(_YES_NO_QUESTIONS), ())
        else:
            topic = rng.choice(_TOPICS)
        prompt = topic.task
        words = _TopicWords(rng, topic.words, sum(i in _WORD_INSTRUCTIONS for i in chosen))
        kwargs_list = []
        for instruction_id in chosen:
            kwargs = samplers[instruction_id](rng, words, prompt)
            checker = registry.INSTRUCTION_DICT[instruction_id](instruction_id)
            description = checker.build_description(**kwargs)
            # A new line where the text so far does not end a sentence (the paragraph description ends in "***").
            ends_sentence = prompt.endswith((".", "?", "!", ")", '"'))
            separator = "\n" if instruction_id == "combination:repeat_prompt" or not ends_sentence else " "
            prompt = f"{prompt}{separator}{description}"
            kwargs_list.append(kwargs)
        rows.append({"key": 100_000 + index, "prompt": prompt, "instruction_id_list": chosen, "kwargs": kwargs_list})
    return rows
