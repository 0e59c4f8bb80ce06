"""Note text as the language models read it, and the training corpus of the built-in model."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from notefeed.data.dataset import Dataset

__all__ = ["NoteCorpus", "note_text", "lm_text"]


def note_text(title: str, body: str, tags: list[str] | tuple[str, ...] = ()) -> str:
    """What a note embedding reads: title, tags, then the body (tags before the body survive truncation)."""
    return " ".join(x for x in (str(title), " ".join(map(str, tags)), str(body)) if x).strip()


def lm_text(title: str, body: str, tags: list[str] | tuple[str, ...] = ()) -> str:
    """A causal-LM training text: the body, then its title and tags after their markers."""
    return f"{body} [TITLE] {title} [TAGS] {' '.join(map(str, tags))}"


@dataclass
class NoteCorpus:
    """Per-note title, body, tags and category (parallel lists, row = dense item index)."""

    titles: list[str]
    bodies: list[str]
    tags: list[list[str]]
    categories: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.titles)
        if not self.categories:
            self.categories = [""] * n
        for name in ("bodies", "tags", "categories"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name}: {len(getattr(self, name))} rows, titles has {n}")

    def __len__(self) -> int:
        return len(self.titles)

    @classmethod
    def from_dataset(cls, ds: Dataset) -> NoteCorpus:
        return cls.from_notes(ds.notes)

    @classmethod
    def from_notes(cls, notes: pd.DataFrame) -> NoteCorpus:
        """A ``Dataset.notes``-shaped frame's notes (missing columns: empty)."""
        k = len(notes)
        tags = [[str(t) for t in (x if x is not None else ())] for x in notes.get("tags", [()] * k)]
        return cls([str(t) for t in notes.get("title", [""] * k)], [str(t) for t in notes.get("text", [""] * k)], tags,
                   [str(c) for c in notes.get("category", [""] * k)])

    def texts(self, with_tags: bool = True) -> list[str]:
        return [note_text(t, b, g if with_tags else ()) for t, b, g in
                zip(self.titles, self.bodies, self.tags, strict=True)]

    def subset(self, rows: np.ndarray) -> NoteCorpus:
        r = [int(i) for i in rows]
        return NoteCorpus([self.titles[i] for i in r], [self.bodies[i] for i in r], [self.tags[i] for i in r],
                          [self.categories[i] for i in r])
