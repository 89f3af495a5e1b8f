"""Stop strings over streamed text: emit what is safe, hold back what could still match."""

from __future__ import annotations


class StopTextMatcher:
    """Finds stop strings in streamed text, holding back what could still become one.

    `feed(new_text)` returns the text that is safe to emit and whether a stop string
    matched. A match can only start at or after the already-emitted position, because any
    possible stop-string prefix at the end of the text is never emitted early.
    """

    def __init__(self, stop: tuple[str, ...], include_stop: bool) -> None:
        self._stop = tuple(s for s in stop if s)
        self._include_stop = include_stop
        self._text = ""
        self._sent = 0

    def feed(self, new_text: str) -> tuple[str, bool]:
        self._text += new_text
        if not self._stop:
            return self.flush(), False
        match = self._first_match()
        if match is not None:
            start, stop = match
            end = start + len(stop) if self._include_stop else start
            out = self._text[self._sent : end]
            self._sent = len(self._text)
            return out, True
        end = len(self._text) - self._partial_stop_len()
        out = self._text[self._sent : end]
        self._sent = max(self._sent, end)
        return out, False

    def flush(self) -> str:
        """Everything not yet emitted (call when the request finished without a match)."""
        out = self._text[self._sent :]
        self._sent = len(self._text)
        return out

    def _first_match(self) -> tuple[int, str] | None:
        best: tuple[int, str] | None = None
        for stop in self._stop:
            index = self._text.find(stop, self._sent)
            if index != -1 and (best is None or index < best[0]):
                best = (index, stop)
        return best

    def _partial_stop_len(self) -> int:
        """Length of the longest text suffix that is a proper prefix of some stop string."""
        unsent = len(self._text) - self._sent
        best = 0
        for stop in self._stop:
            for k in range(min(len(stop) - 1, unsent), best, -1):
                if self._text.endswith(stop[:k]):
                    best = k
                    break
        return best
