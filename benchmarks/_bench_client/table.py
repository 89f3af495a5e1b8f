"""The results table printed at the end of a run."""

from __future__ import annotations

from typing import Any

from _bench_client.stats import LOOSE_MS


def table(doc: dict[str, Any]) -> str:
    n = doc["args"]["streams"]
    limit = doc["args"]["limit_ms"]
    rows = [
        f"| client | highest rate, stamp p99 < {limit:g} ms (req/s) | highest rate, p99 < "
        f"{LOOSE_MS:g} ms (req/s) | stamp error p50 / p99 at the lowest rate (ms) | "
        f"ITL error at {n} streams p50 / p99 / mean (ms) | "
        f"first-token stamp error at {n} streams p50 / p99 (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for c in dict.fromkeys([*doc["rate_search"], *doc["streams"]]):
        steps = doc["rate_search"].get(c, [])
        strict = doc["sustained_rate"].get(c)
        loose = doc["sustained_rate_loose"].get(c)
        low = steps[0]["stamp_error"] if steps else None
        low_s = f"{low['p50_ms']:.3f} / {low['p99_ms']:.3f}" if low else "—"
        st = doc["streams"].get(c)
        itl = ft = "—"
        if st:
            e, f = st["itl_error"], st["first_token_stamp_error"]
            itl = f"{e['p50_ms']:.3f} / {e['p99_ms']:.3f} / {e['mean_ms']:.3f}"
            ft = f"{f['p50_ms']:.3f} / {f['p99_ms']:.3f}"
        shown = [
            f"{x:g}" if x else (f"none (< {steps[0]['rate']:g})" if steps else "—")
            for x in (strict, loose)
        ]
        rows.append(f"| {c} | {shown[0]} | {shown[1]} | {low_s} | {itl} | {ft} |")
    return "\n".join(rows)
