"""A deterministic generator of simple children's stories, in the spirit of TinyStories,
so the demo can train a tokenizer and a model on a fresh machine with no downloads.

Each story picks a hero (a name and an animal), a friend, a place, an object and one of
several plots (a lost thing, a new friend, a fear overcome, sharing, building, bad
weather), then fills sentence templates with several wordings each. The vocabulary is
small and the structure regular, so a tiny model learns it in minutes, yet there are
millions of distinct stories.

>>> story = generate_stories(1, seed=0)[0]
>>> story.startswith(("Once upon a time", "One day", "There was", "Long ago"))
True
>>> generate_stories(3, seed=7) == generate_stories(3, seed=7)
True
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable

from cs336._files import atomic_open

EOT = "<|endoftext|>"

GIRLS = ["Lily", "Mia", "Sue", "Anna", "Emma", "Zoe", "Lucy", "Ella", "Rosa", "Kim", "Amy", "Nina"]
BOYS = ["Tom", "Ben", "Max", "Sam", "Leo", "Jack", "Tim", "Finn", "Bob", "Jake", "Noah", "Dan"]
ANIMALS = ["cat", "dog", "bunny", "bear", "duck", "fox", "mouse", "frog", "bird", "pig", "owl"]
ADJECTIVES = ["little", "happy", "small", "curious", "brave", "kind", "silly", "shy", "fluffy"]
PLACES = [
    ("in the big forest", "under a tall tree"),
    ("on a small farm", "next to the old barn"),
    ("in a quiet town", "behind the bakery"),
    ("in the sunny park", "near the pond"),
    ("in a house by the sea", "on the warm sand"),
    ("in a green garden", "between the flowers"),
    ("in the hills", "beside a big rock"),
]
OBJECTS = [
    ("red", "ball"),
    ("blue", "kite"),
    ("shiny", "stone"),
    ("yellow", "hat"),
    ("soft", "blanket"),
    ("little", "boat"),
    ("green", "book"),
    ("pink", "cup"),
    ("big", "box"),
    ("round", "drum"),
]
FOODS = ["apples", "cookies", "carrots", "berries", "bread", "cake", "honey", "soup"]
SCARY = ["the dark", "the loud thunder", "the deep water", "the tall slide", "the big dog"]
WEATHER = ["rain", "snow", "wind", "storm"]
OPENINGS = [
    "Once upon a time, there was a {adj} {animal} named {name}.",
    "One day, a {adj} {animal} named {name} woke up early.",
    "There was a {adj} {animal}. Its name was {name}.",
    "Long ago, {place}, lived a {adj} {animal} called {name}.",
]
ENDINGS = [
    "From that day on, {name} and {friend} were best friends.",
    "{name} smiled. It was a very good day.",
    "That night, {name} went to bed happy.",
    "{name} learned that it is good to {lesson}.",
    "And they all lived happily ever after.",
]


class _Hero:
    def __init__(self, rng: random.Random) -> None:
        girl = rng.random() < 0.5
        self.name = rng.choice(GIRLS if girl else BOYS)
        self.he = "she" if girl else "he"
        self.animal = rng.choice(ANIMALS)
        self.adj = rng.choice(ADJECTIVES)


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def _lost(rng: random.Random, h: _Hero, f: str, spot: str) -> tuple[list[str], str]:
    color, thing = rng.choice(OBJECTS)
    return [
        f"{h.name} had a {color} {thing}. {_cap(h.he)} loved it very much.",
        f"One morning, the {thing} was gone! {h.name} looked {spot}, but it was not there.",
        rng.choice([f"{h.name} was sad and began to cry.", f"{h.name} felt very sad."]),
        f'Then {f} came by and asked, "Why are you sad, {h.name}?"',
        f'"I lost my {color} {thing}," said {h.name}.',
        f'"I will help you look," said {f}. They looked and looked.',
        rng.choice(
            [f"At last, {f} found the {thing} {spot}.", f"Soon they found the {thing} in a bush."]
        ),
        f'{h.name} hugged {f} and said, "Thank you!"',
    ], "help your friends"


def _friend(rng: random.Random, h: _Hero, f: str, spot: str) -> tuple[list[str], str]:
    other = rng.choice([a for a in ANIMALS if a != h.animal])
    game = rng.choice(["tag", "ball", "hide and seek"])
    return [
        f"{h.name} had no friends to play with. {_cap(h.he)} felt lonely.",
        f"One day, {h.name} saw a {other} {spot}. It was {f}.",
        f"{h.name} wanted to say hello, but {h.he} was shy.",
        f'{f} smiled and said, "Do you want to play with me?"',
        f'"Yes!" said {h.name}. They played {game} all day.',
    ], "be brave and say hello"


def _fear(rng: random.Random, h: _Hero, f: str, spot: str) -> tuple[list[str], str]:
    fear = rng.choice(SCARY)
    return [
        f"{h.name} was afraid of {fear}. Every time, {h.he} ran away.",
        f'One day, {f} said, "Do not be scared. I will stay with you."',
        f"{h.name} took a deep breath. {_cap(h.he)} held {f}'s hand.",
        f"Step by step, {h.name} was not scared anymore.",
        f'"I did it!" {h.name} said. {f} was proud of {h.name}.',
    ], "be brave"


def _share(rng: random.Random, h: _Hero, f: str, spot: str) -> tuple[list[str], str]:
    food = rng.choice(FOODS)
    return [
        f"{h.name} had a basket of {food}. {_cap(h.he)} wanted to eat them all.",
        f"Then {h.he} saw {f} {spot}. {f} looked hungry.",
        f"{h.name} thought for a moment. Then {h.he} gave {f} some {food}.",
        f'"Thank you, {h.name}!" said {f}. They ate the {food} together.',
        f"The {food} tasted even better when they shared.",
    ], "share"


def _build(rng: random.Random, h: _Hero, f: str, spot: str) -> tuple[list[str], str]:
    thing = rng.choice(["a tower", "a sand castle", "a little house", "a bridge", "a nest"])
    return [
        f"{h.name} wanted to build {thing} {spot}.",
        f"{_cap(h.he)} worked hard, but it fell down. {h.name} was sad.",
        f'{f} said, "Let us try again, together."',
        f"This time, {h.name} and {f} built {thing} that was big and strong.",
        "They clapped and danced around it.",
    ], "never give up"


def _weather(rng: random.Random, h: _Hero, f: str, spot: str) -> tuple[list[str], str]:
    w = rng.choice(WEATHER)
    return [
        f"{h.name} wanted to go out and play, but then came the {w}.",
        f'"Oh no," said {h.name}. "Now I cannot play."',
        f"{f} came over with a game. They played inside and had lots of fun.",
        f"When the {w} stopped, the sun came out, and they ran {spot}.",
    ], "be patient"


PLOTS: list[Callable[[random.Random, _Hero, str, str], tuple[list[str], str]]] = [
    _lost,
    _friend,
    _fear,
    _share,
    _build,
    _weather,
]


def story(rng: random.Random) -> str:
    """One story drawn with ``rng``."""
    h = _Hero(rng)
    friend = rng.choice([n for n in GIRLS + BOYS if n != h.name])
    place, spot = rng.choice(PLACES)
    opening = rng.choice(OPENINGS).format(adj=h.adj, animal=h.animal, name=h.name, place=place)
    sentences = [opening]
    if "lived" not in opening:
        sentences.append(f"{h.name} lived {place}.")
    body, lesson = rng.choice(PLOTS)(rng, h, friend, spot)
    sentences += body
    sentences.append(rng.choice(ENDINGS).format(name=h.name, friend=friend, lesson=lesson))
    return " ".join(sentences)


def generate_stories(n: int, seed: int = 0) -> list[str]:
    """``n`` stories, the same for the same ``seed``.

    Raises:
        ValueError: ``n`` is negative.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    return [story(rng) for _ in range(n)]


def write_corpus(path: str | os.PathLike[str], n: int, seed: int = 0) -> int:
    """Write ``n`` stories to ``path`` (atomically), each followed by a line holding
    ``<|endoftext|>``, as in TinyStories; returns the number of bytes written."""
    path = os.fspath(path)
    text = "".join(f"{s}\n{EOT}\n" for s in generate_stories(n, seed))
    data = text.encode("utf-8")
    with atomic_open(path, "wb") as f:
        f.write(data)
    return len(data)
