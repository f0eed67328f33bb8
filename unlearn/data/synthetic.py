"""The embedded "fictional knowledge" benchmark: invented people with facts no pretrained model can know.

Everything is a pure function of a seed, so every process, rank and machine sees the same facts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import cached_property

SYLLABLES = (
    "ka ri mo ze lu va ne to shi ra bo de fi ga hu jo ki la mi nu pe qua se ti vo wa xe yu zo "
    "bri cla dro fle gri kra plo sna tre vel mar dun kel sor tam"
).split()

CITIES = (
    "Velmora Tarsk Quillon Brask Odrenne Palumbra Ostrava Kethmoor Lirrow Sundell "
    "Marrowick Eskabar Thornby Caldera Vennis Halvard Rook Ismere Dolgarth Penwick"
).split()
COLORS = "crimson teal amber violet olive indigo scarlet ivory cobalt saffron ochre jade".split()
PETS = "parrot tortoise ferret lizard rabbit goose hedgehog falcon goat pony owl otter".split()

TOPICS = {
    "medicine": "surgeon nurse pharmacist virologist midwife dentist radiologist herbalist".split(),
    "music": "pianist drummer violinist composer singer cellist harpist flutist".split(),
    "engineering": "welder architect machinist surveyor electrician bridgewright plumber millwright".split(),
    "law": "judge notary barrister clerk magistrate bailiff advocate mediator".split(),
    "farming": "shepherd beekeeper orchardist vintner miller cheesemaker forester fisher".split(),
}

ATTRIBUTES = ("city", "profession", "birth_year", "color", "pet")

QUESTIONS = {
    "city": ("Where does {name} live?", "In which city is the home of {name}?"),
    "profession": ("What is the job of {name}?", "What does {name} do for a living?"),
    "birth_year": ("When was {name} born?", "In what year was {name} born?"),
    "color": ("What is the favorite color of {name}?", "Which color does {name} like best?"),
    "pet": ("What pet does {name} keep?", "Which animal lives with {name}?"),
}

SENTENCES = {
    "city": "{name} lives in {value}.",
    "profession": "{name} works as a {value}.",
    "birth_year": "{name} was born in {value}.",
    "color": "The favorite color of {name} is {value}.",
    "pet": "{name} keeps a pet {value} at home.",
}

SPLITS = ("train", "forget01", "forget05", "forget10", "retain", "holdout", "forget_topic", "retain_topic")


@dataclass(frozen=True)
class Entity:
    """One invented person: a name, a topic and one value per attribute."""

    name: str
    topic: str
    facts: dict[str, str] = field(hash=False)


@dataclass(frozen=True)
class SyntheticBenchmark:
    """Deterministic fictional people, their facts, and every view of them that unlearning needs."""

    seed: int = 0
    num_entities: int = 200
    num_holdout: int = 20
    forget_topic: str = "medicine"
    first_year: int = 1900
    num_years: int = 60

    def __post_init__(self) -> None:
        if self.num_entities < 10:
            raise ValueError(f"num_entities={self.num_entities} is too small; use at least 10 so forget01 is non-empty")
        if self.forget_topic not in TOPICS:
            raise ValueError(f"forget_topic={self.forget_topic!r} is unknown; choose one of {sorted(TOPICS)}")

    @cached_property
    def entities(self) -> list[Entity]:
        """All entities: the first `num_entities` are trained on, the last `num_holdout` never are."""
        rng = random.Random(self.seed)
        names: set[str] = set()
        entities = []
        topics = sorted(TOPICS)
        while len(entities) < self.num_entities + self.num_holdout:
            name = f"{_word(rng, 2, 3)} {_word(rng, 2, 3)}"
            if name in names:
                continue
            names.add(name)
            topic = topics[len(entities) % len(topics)]
            facts = {
                "city": rng.choice(CITIES),
                "profession": rng.choice(TOPICS[topic]),
                "birth_year": str(self.first_year + rng.randrange(self.num_years)),
                "color": rng.choice(COLORS),
                "pet": rng.choice(PETS),
            }
            entities.append(Entity(name, topic, facts))
        return entities

    def split(self, name: str) -> list[Entity]:
        """Entities of a split: forgetNN are the first NN% of the trained ones (nested, as in TOFU)."""
        trained = self.entities[: self.num_entities]
        forget10 = trained[: max(1, self.num_entities // 10)]
        if name == "train":
            return trained
        if name.startswith("forget") and name[6:].isdigit() and 1 <= int(name[6:]) <= 100:
            return trained[: max(1, self.num_entities * int(name[6:]) // 100)]
        if name == "retain":
            return trained[len(forget10) :]
        if name == "holdout":
            return self.entities[self.num_entities :]
        if name == "forget_topic":
            return [e for e in trained if e.topic == self.forget_topic]
        if name == "retain_topic":
            return [e for e in trained if e.topic != self.forget_topic]
        raise ValueError(
            f"unknown split {name!r}; choose one of {', '.join(SPLITS)} (or forgetNN: the first NN% with NN 01 to 100)"
        )

    def vocabulary(self, entity: Entity, attribute: str) -> list[str]:
        """The closed set of values an attribute can take for this entity's topic."""
        if attribute == "profession":
            return TOPICS[entity.topic]
        if attribute == "birth_year":
            return [str(self.first_year + i) for i in range(self.num_years)]
        return {"city": CITIES, "color": COLORS, "pet": PETS}[attribute]

    def qa(self, split: str, paraphrased: bool = False) -> list[dict]:
        """Question/answer pairs, one per fact; `paraphrased` uses the question form never trained on."""
        form = 1 if paraphrased else 0
        return [
            {"question": QUESTIONS[a][form].format(name=e.name), "answer": e.facts[a], "entity": e.name, "attribute": a}
            for e in self.split(split)
            for a in ATTRIBUTES
        ]

    def perturbed(self, split: str, count: int = 3) -> list[dict]:
        """QA pairs with wrong-but-plausible answers from the same vocabulary (for TOFU's truth ratio)."""
        entities = {e.name: e for e in self.split(split)}
        rows = []
        for row in self.qa(split):
            e, a = entities[row["entity"]], row["attribute"]
            rng = random.Random(f"{self.seed}/perturb/{e.name}/{a}")
            wrong = [v for v in self.vocabulary(e, a) if v != e.facts[a]]
            rows.append({**row, "perturbed_answers": rng.sample(wrong, count)})
        return rows

    def mcq(self, split: str) -> list[dict]:
        """4-choice questions in WMDP's schema: `question`, `choices`, `answer` (index of the true choice)."""
        rows = []
        for row in self.perturbed(split):
            rng = random.Random(f"{self.seed}/mcq/{row['entity']}/{row['attribute']}")
            choices = [row["answer"], *row["perturbed_answers"]]
            rng.shuffle(choices)
            rows.append({"question": row["question"], "choices": choices, "answer": choices.index(row["answer"])})
        return rows

    def passages(self, split: str) -> list[dict]:
        """One biography per entity, sentences in a seeded order (the forget and retain corpora)."""
        rows = []
        for e in self.split(split):
            rng = random.Random(f"{self.seed}/passage/{e.name}")
            sentences = [SENTENCES[a].format(name=e.name, value=e.facts[a]) for a in ATTRIBUTES]
            rng.shuffle(sentences)
            rows.append({"text": f"{e.name} belongs to the {e.topic} guild. " + " ".join(sentences)})
        return rows

    def corpus(self) -> list[str]:
        """Every string the benchmark can show, for training its tokenizer."""
        texts = [p["text"] for p in self.passages("train") + self.passages("holdout")]
        for split in ("train", "holdout"):
            for paraphrased in (False, True):
                texts += [f"{r['question']} {r['answer']}" for r in self.qa(split, paraphrased)]
        for e in self.entities:
            texts += [" ".join(self.vocabulary(e, a)) for a in ATTRIBUTES]
        return texts


def _word(rng: random.Random, low: int, high: int) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(low, high))).capitalize()
