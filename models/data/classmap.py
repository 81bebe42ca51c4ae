"""Class names in output order, and a map that merges source classes (e.g. three mask classes -> face)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ClassMap:
    classes: list[str]
    merge: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.classes:
            raise ValueError("a class map needs at least one class")
        bad = {src: dst for src, dst in self.merge.items() if dst not in self.classes}
        if bad:
            raise ValueError(f"class_map targets not in classes {self.classes}: {bad}")

    def index(self, name: str) -> int | None:
        """Index of a source class name after merging, or None when it is unknown."""
        target = self.merge.get(name, name)
        return self.classes.index(target) if target in self.classes else None

    def describe(self) -> str:
        return ", ".join(self.classes) + (f" (merging {self.merge})" if self.merge else "")
