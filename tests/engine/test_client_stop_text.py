"""StopTextMatcher: stop strings found across streamed chunks, prefixes held back."""

from __future__ import annotations

import pytest

from slipstream.engine.stop_strings import StopTextMatcher


def feed_all(matcher: StopTextMatcher, chunks: list[str]) -> tuple[str, bool]:
    out = ""
    for chunk in chunks:
        text, stopped = matcher.feed(chunk)
        out += text
        if stopped:
            return out, True
    return out + matcher.flush(), False


def test_no_stop_strings_passes_text_through() -> None:
    m = StopTextMatcher((), include_stop=False)
    assert m.feed("Hello") == ("Hello", False)
    assert m.feed(" world") == (" world", False)


def test_prefix_of_a_stop_string_is_held_back_until_resolved() -> None:
    m = StopTextMatcher(("STOP",), include_stop=False)
    assert m.feed("abc ST") == ("abc ", False)
    # "STx" cannot become "STOP": released.
    assert m.feed("x") == ("STx", False)


@pytest.mark.parametrize(
    "chunks",
    [["Paris. Next"], ["Par", "is", ".", " Next"], ["P", "a", "r", "i", "s", ". N"]],
)
def test_match_split_across_chunks(chunks: list[str]) -> None:
    assert feed_all(StopTextMatcher((".",), include_stop=False), chunks) == ("Paris", True)
    assert feed_all(StopTextMatcher((".",), include_stop=True), chunks) == ("Paris.", True)


def test_multi_char_stop_across_chunks_and_earliest_match_wins() -> None:
    m = StopTextMatcher(("\n\n", "END"), include_stop=False)
    assert feed_all(m, ["one\n", "\ntwo END"]) == ("one", True)
    m = StopTextMatcher(("two", "one"), include_stop=True)
    assert feed_all(m, ["zero one two"]) == ("zero one", True)


def test_held_back_prefix_is_flushed_when_generation_ends() -> None:
    m = StopTextMatcher(("STOP",), include_stop=False)
    assert feed_all(m, ["the end ST"]) == ("the end ST", False)


def test_empty_stop_strings_are_ignored() -> None:
    m = StopTextMatcher(("",), include_stop=False)
    assert m.feed("abc") == ("abc", False)
