"""Prompt datasets from files: JSONL of prompts/messages, or ShareGPT JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DatasetItem:
    """One prompt; ``output_tokens`` (or the reference ``answer``) sets its output length."""

    messages: tuple[dict[str, str], ...]
    output_tokens: int | None = None
    answer: str | None = None


def _from_sharegpt(row: dict) -> DatasetItem | None:
    turns = row.get("conversations") or row.get("conversation") or []
    human = next((t for t in turns if t.get("from") in ("human", "user")), None)
    if human is None:
        return None
    answer = next(
        (t for t in turns[turns.index(human) + 1 :] if t.get("from") in ("gpt", "assistant")), None
    )
    text = str(answer.get("value", "")) if answer else None
    return DatasetItem(
        ({"role": "user", "content": str(human.get("value", ""))},), None, text or None
    )


def _from_row(row: dict) -> DatasetItem | None:
    if "conversations" in row or "conversation" in row:
        return _from_sharegpt(row)
    out = row.get("output_tokens", row.get("max_tokens"))
    if "messages" in row:
        return DatasetItem(tuple(row["messages"]), out)
    for key in ("prompt", "text", "input", "question"):
        if key in row:
            return DatasetItem(({"role": "user", "content": str(row[key])},), out)
    return None


def load_dataset(path: str | Path) -> list[DatasetItem]:
    """Read ShareGPT JSON (a list of conversations) or JSONL (one prompt object per line)."""
    text = Path(path).read_text("utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        rows = json.loads(stripped)
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
    items = [item for row in rows if isinstance(row, dict) and (item := _from_row(row))]
    if not items:
        raise ValueError(
            f"{path}: no usable prompts (expected prompt/messages/conversations fields)"
        )
    return items
