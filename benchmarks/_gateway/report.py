"""Tables for the terminal (rich) and a Markdown section for docs/benchmarks.md, from the JSON."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table

TARGET_LABEL = {
    "direct": "direct to upstream",
    "slipstream": "via Slipstream",
    "slipstream-tenancy": "via Slipstream, keys + limits + spend on",
    "litellm": "via LiteLLM proxy",
    "litellm-db": "via LiteLLM proxy + Postgres spend logs",
    "lean": "via bare pass-through (floor)",
    "baseline": "via Slipstream, baseline",
    "baseline-tenancy": "via Slipstream, baseline, keys + limits + spend on",
}


def _short(info: dict[str, Any] | None) -> str:
    """A checkout as `1ad0d34` (`+ changes` when its tracked files differ from the commit)."""
    if not info or not info.get("commit"):
        return "?"
    return str(info["commit"])[:7] + (" + uncommitted changes" if info.get("dirty") else "")


def label(res: dict[str, Any], target: str) -> str:
    """The path's label; the baseline's names its commit."""
    text = TARGET_LABEL.get(target, target)
    base = res.get("meta", {}).get("baseline")
    if base and target in ("baseline", "baseline-tenancy"):
        text = text.replace("baseline", f"baseline {_short(base)}", 1)
    return text


def _ms(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f} ms"


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:,.0f}"


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else (" ✅" if ok else " ❌")


SUMMARY_COLUMNS = (
    ("slipstream", "Slipstream"),
    ("baseline", "baseline"),
    ("slipstream-tenancy", "Slipstream + tenancy"),
    ("baseline-tenancy", "baseline + tenancy"),
    ("litellm", "LiteLLM"),
    ("litellm-db", "LiteLLM + DB"),
)


def summary_rows(res: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The "against the targets" table: a header and rows, the gateways that ran as columns."""
    s = res.get("summary", {})
    ran = set(res.get("load", {})) | set(res.get("first_byte", {}))
    cols = [(k, label) for k, label in SUMMARY_COLUMNS if k in ran]
    head = ["metric", *(label for _, label in cols), "target"]
    rows = []
    for key, label, target in (
        ("added_p50_ms_c1", "added p50 latency, concurrency 1", "≤ 0.5 ms"),
        ("first_event_overhead_p50_ms", "streaming first-event overhead, p50", "≤ 1 ms"),
    ):
        m = s.get(key)
        if m:
            cells = [_ms(m.get(k)) + _verdict(m.get(f"{k}_meets_target")) for k, _ in cols]
            rows.append([label, *cells, target])

    def row(label: str, values: dict[str, str], target: str) -> None:
        rows.append([label, *(values.get(k, "–") for k, _ in cols), target])

    top = s.get("rps_ratio_concurrency") or s.get("tenancy_rps_ratio_concurrency") or 32
    if s.get("rps_ratio_c32") is not None:
        r = s["rps_ratio_c32"]
        row(
            f"req/s at concurrency {top}, ÷ LiteLLM's",
            {"slipstream": f"{r:.1f}×{_verdict(r >= 10)}", "litellm": "1×"},
            "≥ 10×",
        )
    if s.get("tenancy_rps_ratio") is not None:
        r = s["tenancy_rps_ratio"]
        ok = s.get("tenancy_rps_ratio_meets_target")
        cells = {"slipstream": "1×", "slipstream-tenancy": f"{r:.2f}×{_verdict(ok)}"}
        was = s.get("vs_baseline", {}).get("tenancy_rps_ratio", {}).get("baseline")
        if was is not None:
            cells |= {"baseline": "1×", "baseline-tenancy": f"{was:.2f}×{_verdict(was >= 0.8)}"}
        row(f"req/s at concurrency {top}, ÷ Slipstream's without tenancy", cells, "≥ 0.8×")
    spend = s.get("spend", {})
    if spend:
        cells = {}
        for k, e in spend.items():
            if e.get("rows") is None:
                cells[k] = f"error: {e.get('error')}"
            else:
                cells[k] = (
                    f"{e['rows']:,} rows / {e.get('client_counted_requests') or 0:,} answered, "
                    f"${e.get('cost_usd') or 0:.4f}"
                )
        row("spend ledger rows (bench key) / requests answered", cells, "≈ 1 row each")
    return head, rows


BASELINE_PAIRS = (
    ("slipstream", "tenancy off: slipstream vs baseline"),
    ("slipstream-tenancy", "tenancy on: slipstream-tenancy vs baseline-tenancy"),
)


def baseline_rows(res: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """This checkout against --baseline-src, one row per pair that ran: added p50 at
    concurrency 1 (baseline, this checkout, difference) and req/s at the highest concurrency
    (baseline, this checkout, this ÷ baseline). Empty rows when no baseline ran."""
    vs = res.get("summary", {}).get("vs_baseline")
    if not vs:
        return [], []
    top = vs.get("concurrency", "?")
    head = [
        "pair",
        "added p50 c=1, baseline",
        "this checkout",
        "difference",
        f"req/s c={top}, baseline",
        "this checkout",
        "this ÷ baseline",
    ]
    rows = []
    for now, text in BASELINE_PAIRS:
        p = vs.get("pairs", {}).get(now)
        if not p:
            continue
        added, rps = p.get("added_p50_ms_c1", {}), p.get("rps", {})
        delta, ratio = p.get("p50_delta_ms_c1"), p.get("rps_ratio")
        rows.append(
            [
                text,
                _ms(added.get("baseline")),
                _ms(added.get("current")),
                "–" if delta is None else f"{delta:+.3f} ms",
                _num(rps.get("baseline")),
                _num(rps.get("current")),
                "–" if ratio is None else f"{ratio:.3f}×",
            ]
        )
    return head, rows


def _baseline_text(res: dict[str, Any]) -> str:
    meta = res.get("meta", {})
    base, now = meta.get("baseline") or {}, meta.get("checkout")
    subject = f" ({base['subject']})" if base.get("subject") else ""
    return (
        f"This checkout ({_short(now)}) against the baseline {_short(base)}{subject}: the same "
        f"`.venv/bin/slipstream` and config with `PYTHONPATH={base.get('src', '?')}`, in the "
        "same alternating rounds. A regression shows as a positive difference in added p50 or "
        "a ratio below 1×."
    )


def load_rows(res: dict[str, Any]) -> list[tuple[str, ...]]:
    """(path, concurrency, req/s, p50, p99, server CPU µs/request, errors) per load level."""
    rows = []
    for target, by_c in res.get("load", {}).items():
        for c, m in by_c.items():
            med = m["median"]
            errs = sum(r["errors"] for r in m["rounds"])
            rows.append(
                (
                    label(res, target),
                    c,
                    _num(med["rps"]),
                    _ms(med["p50_ms"]),
                    _ms(med["p99_ms"], 2),
                    _num(med.get("cpu_us_per_request")),
                    f"{errs:,}",
                )
            )
    return rows


def print_report(res: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console(width=None if sys.stdout.isatty() else 140)
    meta = res.get("meta", {})
    console.print(
        f"[bold]Gateway overhead[/bold] — {meta.get('cpu', '?')}, {meta.get('cores', '?')} cores, "
        f"load average {meta.get('loadavg_start', '?')} → {meta.get('loadavg_end', '?')}"
    )
    if res.get("load"):
        t = Table(title="Non-streaming chat completions (wrk, closed loop; median of rounds)")
        for col in ("path", "concurrency", "req/s", "p50", "p99", "server CPU µs/req", "errors"):
            t.add_column(col, justify="left" if col == "path" else "right")
        for row in load_rows(res):
            t.add_row(*row)
        console.print(t)
    head, rows = summary_rows(res)
    if rows:
        t = Table(title="Against the targets")
        for col in head:
            t.add_column(col, justify="left" if col == "metric" else "right")
        for r in rows:
            t.add_row(*r)
        console.print(t)
    head, rows = baseline_rows(res)
    if rows:
        base = meta.get("baseline") or {}
        t = Table(title=f"Against the baseline {_short(base)} ({base.get('src', '?')})")
        for col in head:
            t.add_column(col, justify="left" if col == "pair" else "right")
        for r in rows:
            t.add_row(*r)
        console.print(t)
    if res.get("first_byte"):
        t = Table(title="Streaming: time to the first SSE event (one request at a time)")
        for col in (
            "path",
            "requests",
            "first event p50",
            "p90",
            "p99",
            "whole stream p50",
            "self-reported overhead p50",
        ):
            t.add_column(col, justify="left" if col == "path" else "right")
        for target, fb in res["first_byte"].items():
            t.add_row(
                label(res, target),
                f"{fb['requests']:,}",
                _ms(fb["first_event_p50_ms"]),
                _ms(fb["first_event_p90_ms"]),
                _ms(fb["first_event_p99_ms"], 2),
                _ms(fb["complete_p50_ms"]),
                _ms(fb["self_reported_overhead_p50_ms"]),
            )
        console.print(t)
    workers = res.get("workers")
    if workers:
        if workers.get("supported"):
            t = Table(title=f"Slipstream workers (concurrency {workers['concurrency']})")
            for col in ("workers", "req/s", "p50", "p99"):
                t.add_column(col, justify="right")
            for n, m in workers["results"].items():
                t.add_row(n, _num(m["rps"]), _ms(m["p50_ms"]), _ms(m["p99_ms"], 2))
            console.print(t)
        else:
            console.print(f"[yellow]Workers:[/yellow] {workers.get('note')}")
    memory = res.get("memory")
    if memory and memory.get("samples"):
        t = Table(title="Slipstream RSS during the soak (wrk, concurrency 32)")
        for col in ("requests served", "RSS main", "RSS with children"):
            t.add_column(col, justify="right")
        for s in memory["samples"]:
            t.add_row(
                f"{s['requests']:,}", f"{s['rss_main_mib']:.1f} MiB", f"{s['rss_tree_mib']:.1f} MiB"
            )
        console.print(t)
    for name, prof in res.get("profiles", {}).items():
        t = Table(title=f"py-spy: {name}, top functions (% of samples) — {prof['file']}")
        t.add_column("own time")
        t.add_column("%", justify="right")
        t.add_column("including callees")
        t.add_column("%", justify="right")
        for (f1, p1), (f2, p2) in zip(prof["own"][:15], prof["inclusive"][:15], strict=False):
            t.add_row(f1, f"{p1:.1f}", f2, f"{p2:.1f}")
        console.print(t)
    for name, why in meta.get("skipped", {}).items():
        console.print(f"[yellow]skipped {name}:[/yellow] {why}")
    for note in res.get("notes", []):
        console.print(f"[yellow]note:[/yellow] {note}")


def markdown(res: dict[str, Any]) -> str:
    """The section for docs/benchmarks.md (the command line and the machine state included)."""
    meta = res.get("meta", {})
    out = [
        "## Gateway overhead: Slipstream vs LiteLLM proxy",
        "",
        f"Measured {meta.get('started', '?')} on {meta.get('cpu', '?')} ({meta.get('cores', '?')} "
        f"cores, shared by upstream, gateway and wrk); load average "
        f"{meta.get('loadavg_start', '?')} at the start, {meta.get('loadavg_end', '?')} at the end. "
        + (
            f"LiteLLM {meta['litellm_version']}, one worker, master key, Prometheus callback, "
            "no DB/Redis. "
            if meta.get("litellm_version")
            else ""
        )
        + "Slipstream: `slipstream serve --config`, one model → one `openai` "
        "deployment, weighted routing and metrics on." + _tenancy_text(meta),
        "",
        "```bash",
        meta.get("command", ""),
        "```",
        "",
        "| path | concurrency | req/s | p50 | p99 | server CPU per request |",
        "|---|---|---|---|---|---|",
    ]
    out += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]} µs |" for r in load_rows(res)]
    head, rows = summary_rows(res)
    if rows:
        out += ["", "| " + " | ".join(["", *head[1:]]) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(r) + " |" for r in rows]
    head, rows = baseline_rows(res)
    if rows:
        out += ["", _baseline_text(res), ""]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(r) + " |" for r in rows]
    fb = res.get("first_byte", {})
    if fb:
        out += [
            "",
            "Streaming (one request at a time, time to the first SSE `data:` event):",
            "",
            "| path | first event p50 | p99 | whole stream p50 |",
            "|---|---|---|---|",
        ]
        out += [
            f"| {label(res, t)} | {_ms(f['first_event_p50_ms'])} | "
            f"{_ms(f['first_event_p99_ms'], 2)} | {_ms(f['complete_p50_ms'])} |"
            for t, f in fb.items()
        ]
    workers = res.get("workers")
    if workers:
        out.append("")
        if workers.get("supported"):
            parts = [f"{n} worker(s) {m['rps']:,.0f} req/s" for n, m in workers["results"].items()]
            out.append(f"Workers (concurrency {workers['concurrency']}): " + ", ".join(parts) + ".")
        else:
            out.append(f"Workers: {workers.get('note')}")
    memory = res.get("memory")
    if memory and memory.get("samples"):
        parts = [f"{s['rss_main_mib']:.1f} MiB after {s['requests']:,}" for s in memory["samples"]]
        out.append(f"Slipstream RSS: {', '.join(parts)} requests.")
    for name, why in meta.get("skipped", {}).items():
        out.append(f"\n{label(res, name)}: not measured — {why}.")
    return "\n".join(out) + "\n"


def _tenancy_text(meta: dict[str, Any]) -> str:
    t = meta.get("tenancy")
    if not t:
        return ""
    pg = t.get("store") == "postgres"
    store = (
        "`database_url` and `redis_url` (a fresh PostgreSQL database, limits and budgets on Redis)"
        if pg
        else "`database_url` (a SQLite file; limits and budgets in process)"
    )
    return (
        f" With tenancy: the same config plus `master_key` and {store}; requests carry a virtual key from `POST /admin/keys` with limits and a "
        "budget no run reaches, so auth, rate limits, budget reservations and the spend ledger "
        "all run on every request."
    )
