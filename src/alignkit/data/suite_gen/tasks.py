"""Base tasks of the constraint suite, composed procedurally: task form x topic x audience.

A base task is the instruction a constraint is appended to ("Write a short poem about honey bees for a curious
tourist."). Forms (20) and audiences (10) are shared by the splits; topics (130) are partitioned by a seeded
shuffle, so a test base task never shares its topic, let alone its text, with a train one (issue #15 item 1). Each
topic carries a few words a natural answer uses: keyword constraints draw from them (so "do not use X" is a real
constraint) and callers can use them to check that an answer still does the base task.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# id -> text; `{topic}` and `{audience}` are filled in. Every form reads naturally with a noun-phrase topic.
TASK_FORMS: dict[str, str] = {
    "blog": "Write a short blog post about {topic} for {audience}.",
    "poem": "Write a short poem about {topic} for {audience}.",
    "explain": "Explain {topic} to {audience}.",
    "email": "Write a brief email to {audience} about {topic}.",
    "tips": "Give {audience} some practical tips about {topic}.",
    "story": "Write a short story about {topic} that {audience} would enjoy.",
    "speech": "Write a short speech about {topic} for {audience}.",
    "diary": "Write a diary entry about {topic} to share with {audience}.",
    "advert": "Write a short advertisement about {topic} aimed at {audience}.",
    "news": "Write a short news report about {topic} for {audience}.",
    "letter": "Write a letter to {audience} about {topic}.",
    "summary": "Summarize the most important facts about {topic} for {audience}.",
    "dialogue": "Write a short dialogue between two friends about {topic}, meant for {audience}.",
    "social": "Write a social media post about {topic} for {audience}.",
    "faq": "Write a short FAQ about {topic} for {audience}.",
    "limerick": "Write a limerick about {topic} for {audience}.",
    "motivate": "Write a short motivational message about {topic} for {audience}.",
    "lesson": "Write a short lesson plan about {topic} for {audience}.",
    "review": "Write a short review of a day spent on {topic}, written for {audience}.",
    "pitch": "Write a short pitch that convinces {audience} to care about {topic}.",
}

AUDIENCES: tuple[str, ...] = (
    "a ten-year-old child", "a busy parent", "a new employee", "a retired teacher", "a curious tourist",
    "a group of high school students", "a close friend", "a skeptical reader", "a local newspaper's readers",
    "a complete beginner",
)


@dataclass(frozen=True)
class Topic:
    """A subject (a noun phrase) and words an answer about it would naturally contain (lowercase, one word each)."""

    text: str
    words: tuple[str, ...]


def _t(text: str, words: str) -> Topic:
    return Topic(text, tuple(words.split()))


TOPICS: tuple[Topic, ...] = (
    _t("a lost cat", "cat neighbour garden reward"), _t("weekend mornings", "coffee sunlight breakfast quiet"),
    _t("the blue color of the sky", "light scattering atmosphere sun"),
    _t("starting a first job", "manager learn questions team"), _t("a favourite teacher", "teacher lessons patience class"),
    _t("making a cup of tea", "water kettle leaves cup"), _t("reusable water bottles", "bottle steel plastic cold"),
    _t("rainbows", "rain colors sun sky"), _t("a robot who learns to paint", "robot paint canvas color"),
    _t("rainy afternoons indoors", "books games movie blanket"), _t("walking every day", "health heart energy walk"),
    _t("birthday parties", "birthday cake friends candles"), _t("how plants make food", "sunlight leaves water energy"),
    _t("a cozy neighbourhood cafe", "coffee staff pastries table"), _t("studying for exams", "notes sleep practice schedule"),
    _t("a busy Sunday market", "vendors fruit crowd stalls"), _t("missing an important meeting", "sorry meeting schedule notes"),
    _t("the importance of sleep", "sleep brain rest night"), _t("the ocean", "waves salt shore fish"),
    _t("growing tomatoes", "soil water pot seeds"), _t("the first day of school", "students school teacher friends"),
    _t("recycling", "waste plastic paper bins"), _t("autumn", "leaves weather harvest orange"),
    _t("grocery shopping", "milk bread list store"), _t("houseplants", "light water soil leaves"),
    _t("how bicycles work", "pedals chain wheels brakes"), _t("letters to a future self", "future hope dreams goals"),
    _t("a quiet forest walk", "trees birds path moss"), _t("healthy snacks", "nuts fruit yogurt energy"),
    _t("public libraries", "books free community librarian"), _t("running a first marathon", "finish race breathe miles"),
    _t("packing for a weekend trip", "bag clothes toothbrush charger"), _t("a school bake sale", "cookies sale cakes money"),
    _t("the water cycle", "evaporation clouds rain rivers"), _t("learning to cook", "recipe knife taste kitchen"),
    _t("mountain views", "valley clouds wind peaks"), _t("thoughtful gifts", "gift thank friend surprise"),
    _t("dogs as pets", "dogs loyal walks company"), _t("lighthouses", "light ships tower sea"),
    _t("saving money each month", "budget savings spending cash"), _t("good friendships", "trust listen kind honest"),
    _t("a sunny day", "sunny temperature breeze clouds"), _t("washing hands properly", "soap water seconds germs"),
    _t("a clever fox", "fox clever forest crow"), _t("reducing stress after work", "music walk breathe relax"),
    _t("train journeys through the countryside", "train fields window village"),
    _t("asking a coworker for help", "report deadline help data"), _t("the moon", "tides orbit night gravity"),
    _t("writing clear emails", "subject short clear reader"), _t("the local bakery", "bread oven warm sugar"),
    _t("honey bees", "flowers pollen honey hive"), _t("a sleepy owl", "owl night moon tree"),
    _t("a simple dinner for two", "pasta salad garlic candles"), _t("pet goldfish", "tank water food clean"),
    _t("welcoming a new neighbour", "welcome street neighbour cookies"), _t("volcanoes", "lava magma eruption mountain"),
    _t("bedtime routines", "dark screens routine bed"), _t("a snowy day in a small town", "snow children sled cold"),
    _t("a leaking kitchen tap", "tap leak kitchen repair"), _t("reading books", "stories imagination words pages"),
    _t("beach holidays", "beach sand sunset swim"), _t("board game nights", "dice cards friends rules"),
    _t("learning a new language", "words practice grammar speak"), _t("city parks", "grass benches trees families"),
    _t("composting at home", "compost soil worms scraps"), _t("the night sky", "stars planets telescope dark"),
    _t("riding the bus to work", "bus ticket seat stop"), _t("a family picnic", "basket sandwiches blanket park"),
    _t("taking care of teeth", "brush teeth dentist floss"), _t("summer thunderstorms", "thunder lightning rain clouds"),
    _t("keeping chickens", "eggs hens coop feed"), _t("a visit to a museum", "paintings history guide exhibits"),
    _t("learning to swim", "pool water kick breathe"), _t("street food", "spicy stall noodles sauce"),
    _t("the history of bread", "wheat flour ovens ancient"), _t("volunteering at an animal shelter", "animals shelter dogs care"),
    _t("a camping trip", "tent fire stars backpack"), _t("playing the piano", "keys music practice notes"),
    _t("electric cars", "battery charge road energy"), _t("drinking enough water", "water thirst glass health"),
    _t("a school science fair", "experiment poster judges project"), _t("bird watching", "birds binoculars feathers nest"),
    _t("planting a tree", "tree roots shade soil"), _t("a surprise party", "surprise guests balloons secret"),
    _t("moving to a new city", "boxes apartment streets friends"), _t("a rainy commute", "umbrella puddles coat traffic"),
    _t("making pancakes", "flour eggs milk pan"), _t("solar power", "sun panels energy roof"),
    _t("a lost umbrella", "umbrella rain office found"), _t("knitting a scarf", "wool needles scarf stitch"),
    _t("farmers and their crops", "farm crops tractor harvest"), _t("a tidy bedroom", "clothes shelf bed clean"),
    _t("ice skating", "ice skates rink cold"), _t("writing a first novel", "story characters chapter pages"),
    _t("a trip to the zoo", "animals lions keepers cages"), _t("caring for an elderly neighbour", "visit help shopping tea"),
    _t("a power cut at night", "candles dark torch quiet"), _t("spring cleaning", "dust windows boxes fresh"),
    _t("penguins", "ice birds swim cold"), _t("an old family recipe", "grandmother kitchen spices taste"),
    _t("learning to ride a bike", "balance helmet pedals fall"), _t("a talent show", "stage audience songs nervous"),
    _t("desert plants", "cactus sand water heat"), _t("the first snow of winter", "snow white cold flakes"),
    _t("a broken phone screen", "phone screen crack repair"), _t("making new friends as an adult", "clubs coffee talk friends"),
    _t("coral reefs", "coral fish ocean colors"), _t("a rainy football match", "ball mud team goal"),
    _t("homemade soup", "vegetables pot broth warm"), _t("the first day at a gym", "weights trainer sweat routine"),
    _t("a village festival", "music lanterns dance food"), _t("old photographs", "memories album family faded"),
    _t("hiking in the hills", "trail boots map views"), _t("a noisy upstairs neighbour", "noise floor music sleep"),
    _t("fixing a flat tyre", "tyre pump wheel patch"), _t("a day at the fair", "rides candy tickets music"),
    _t("learning to draw", "pencil sketch paper lines"), _t("butterflies", "wings flowers colors garden"),
    _t("a long road trip", "car map snacks music"), _t("a garden in winter", "frost soil birds bare"),
    _t("waking up early", "alarm morning coffee sunrise"), _t("kindness to strangers", "smile help stranger kind"),
    _t("a science museum visit", "robots planets exhibits buttons"), _t("rivers", "water fish bridge current"),
)


@dataclass(frozen=True)
class BaseTask:
    """One composed task: its text, the parts it came from, and the topic's words."""

    text: str
    form: str
    topic: str
    audience: str
    words: tuple[str, ...]


def compose(form: str, topic: Topic, audience: str) -> BaseTask:
    """The base task of one form, topic and audience."""
    text = TASK_FORMS[form].format(topic=topic.text, audience=audience)
    return BaseTask(text[0].upper() + text[1:], form, topic.text, audience, topic.words)


# The topics of the first suite's 21 test base tasks (`suite:test-v1`, e.g. "Write a short note to a neighbour
# about a lost cat."), plus sleep, which two of its tasks shared. They never go to train, so a model trained on
# `suite:train` meets test-v1's subjects only at test time, as one trained on `suite:train-v1` did.
V1_TEST_TOPICS: tuple[str, ...] = (
    "a snowy day in a small town", "train journeys through the countryside", "a quiet forest walk",
    "making a cup of tea", "weekend mornings", "how plants make food", "washing hands properly", "the water cycle",
    "public libraries", "rainbows", "the moon", "reading books", "starting a first job", "bedtime routines",
    "the importance of sleep", "healthy snacks", "grocery shopping", "a sleepy owl", "lighthouses", "a clever fox",
    "a leaking kitchen tap", "a lost cat",
)


def split_topics(seed: int, test_fraction: float) -> dict[str, list[Topic]]:
    """Partition the topics: the V1_TEST_TOPICS and then a seeded shuffle of the rest fill test up to
    `test_fraction` of all topics; train gets the remainder."""
    pinned = [t for t in TOPICS if t.text in V1_TEST_TOPICS]
    rest = [t for t in TOPICS if t.text not in V1_TEST_TOPICS]
    random.Random(f"topics-{seed}").shuffle(rest)
    random.Random(f"topics-{seed}").shuffle(pinned)
    n_test = max(len(pinned), round(len(TOPICS) * test_fraction))
    test = pinned + rest[:n_test - len(pinned)]
    return {"train": rest[n_test - len(pinned):], "test": test}


def base_tasks(topics: list[Topic]) -> list[BaseTask]:
    """Every form x topic x audience composition of the given topics, in a fixed order."""
    return [compose(f, t, a) for t in topics for f in TASK_FORMS for a in AUDIENCES]
