"""The built-in children's stories: deterministic, varied, and in the corpus format."""

from __future__ import annotations

import pytest

from cs336.demo.stories import EOT, generate_stories, write_corpus


def test_same_seed_same_stories_other_seed_other_stories():
    assert generate_stories(50, seed=3) == generate_stories(50, seed=3)
    assert generate_stories(50, seed=3) != generate_stories(50, seed=4)
    # a prefix of a longer draw: the n-th story does not depend on how many follow
    assert generate_stories(60, seed=3)[:50] == generate_stories(50, seed=3)


def test_stories_are_varied_simple_english():
    stories = generate_stories(2000, seed=0)
    assert len(set(stories)) == len(stories)
    first_sentences = {s.split(".")[0] for s in stories}
    assert len(first_sentences) > 300
    words = {w.strip(".,!?\"'").lower() for s in stories for w in s.split()}
    assert 200 < len(words) < 1000  # a small vocabulary, but not a handful of words
    for s in stories[:200]:
        assert s.isascii() and EOT not in s
        assert s[0].isupper() and s.rstrip()[-1] in '.!"'
        assert 150 < len(s) < 1000


def test_write_corpus_separates_stories_with_end_of_text(tmp_path):
    path = tmp_path / "sub" / "stories.txt"
    size = write_corpus(path, 5, seed=1)
    text = path.read_text()
    assert size == len(text.encode())
    docs = text.split(f"{EOT}\n")
    assert docs[-1] == "" and [d.strip() for d in docs[:-1]] == generate_stories(5, seed=1)
    assert [p.name for p in path.parent.iterdir()] == ["stories.txt"]


def test_negative_count():
    with pytest.raises(ValueError, match="n must be >= 0, got -1"):
        generate_stories(-1)
