"""``--html report.html``: one self-contained page (inline SVG, no scripts, no downloads).

A run: summary table, latency CDFs (TTFT, TPOT, ITL per token, E2E) and a request timeline.
A sweep / find-max: the throughput–latency curves, goodput per step, the step table, and
CDFs with one line per step (read back from each step's records JSONL).
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from slipstream.bench.metrics import MS, request_metrics
from slipstream.bench.record import RequestRecord, read_jsonl
from slipstream.bench.svg import cdf_chart, line_chart, timeline_chart

MAX_TIMELINE_ROWS = 1500
_STYLE = (
    "body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;"
    "margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "th:first-child,td:first-child{text-align:left}.charts{display:flex;flex-wrap:wrap;gap:12px}"
    ".warn{color:#b35900}"
)
_METRICS = (("ttft_ms", "TTFT"), ("tpot_ms", "TPOT"), ("itl_ms", "ITL / token"), ("e2e_ms", "E2E"))
_STATS = ("mean", "p50", "p90", "p95", "p99", "p99.9", "max")


def _num(v: Any) -> str:
    if v is None:
        return "—"
    return f"{v:,.2f}" if isinstance(v, float) else escape(str(v))


def _page(title: str, body: list[str]) -> str:
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>"
        + "".join(body)
        + "</body></html>"
    )


def _samples(records: list[RequestRecord]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k, _ in _METRICS}
    for r in records:
        m = request_metrics(r)
        if m is None:
            continue
        out["ttft_ms"].append(m.ttft * MS)
        out["e2e_ms"].append(m.e2e * MS)
        if m.tpot is not None:
            out["tpot_ms"].append(m.tpot * MS)
        out["itl_ms"].extend(g * MS for g in m.token_gaps)
    return out


def _cdfs(runs: dict[str, list[RequestRecord]]) -> str:
    per_run = {name: _samples(recs) for name, recs in runs.items()}
    charts = [
        cdf_chart({name: s[key] for name, s in per_run.items()}, f"{label} CDF", f"{label} (ms)")
        for key, label in _METRICS
    ]
    return '<h2>Latency CDFs</h2><div class="charts">' + "".join(charts) + "</div>"


def _timeline(records: list[RequestRecord]) -> str:
    rows = []
    for r in records:
        content = r.content_events
        end = r.done_at if r.done_at is not None else (r.events[-1].t if r.events else r.sent)
        rows.append((r.scheduled, content[0].t if content else None, end, not r.ok))
    rows.sort()
    if len(rows) > MAX_TIMELINE_ROWS:  # keep every k-th request: the shape, not every line
        k = -(-len(rows) // MAX_TIMELINE_ROWS)
        rows = rows[::k]
    title = f"Requests over time ({len(rows)} of {len(records)} shown)"
    return "<h2>Timeline</h2><p>grey: scheduled → first token; blue: streaming; red: failed</p>" + (
        timeline_chart(rows, title)
    )


def _summary_table(summary: dict[str, Any]) -> str:
    head = "".join(f"<th>{s}</th>" for s in _STATS)
    rows = "".join(
        f"<tr><td>{label} (ms)</td>"
        + "".join(f"<td>{_num(summary[k].get(s))}</td>" for s in _STATS)
        for k, label in (*_METRICS, ("max_stall_ms", "Max stall"))
    )
    return f"<table><tr><th>metric</th>{head}</tr>{rows}</table>"


def run_html(result: dict[str, Any], records: list[RequestRecord]) -> str:
    cfg, s, client = result["config"], result["summary"], result["client"]
    req, thr = s["requests"], s["throughput"]
    load = cfg["schedule"]
    body = [
        f"<p>{escape(cfg['url'])} · model {escape(str(cfg['model']))} · load "
        f"{escape(str({k: v for k, v in load.items() if v not in (None, 1.0, 0)}))} · "
        f"started {escape(cfg['started_at'])}</p>",
        f"<p><b>{req['completed']}</b> completed, <b>{req['failed']}</b> failed in "
        f"{s['duration_s']:.2f} s · {thr['requests_per_s']:,.2f} req/s · "
        f"{thr['output_tokens_per_s']:,.1f} output tok/s</p>",
        _summary_table(s),
        f"<p>client: dispatch lag p99 {_num(client['dispatch_lag_ms']['p99'])} ms · event-loop "
        f"lag p99 {_num(client['loop_lag_ms']['p99'])} ms · {client['workers']} worker(s)</p>",
        *(f'<p class="warn">warning: {escape(w)}</p>' for w in client["warnings"]),
        *(
            f"<p>error {escape(k)} ×{n}: {escape(str(req['error_examples'].get(k)))}</p>"
            for k, n in req["errors_by_class"].items()
        ),
        _cdfs({"run": records}),
        _timeline(records),
    ]
    return _page("slipstream bench report", body)


def _step_records(step: dict[str, Any]) -> list[RequestRecord]:
    path = step.get("records_path")
    return list(read_jsonl(path)) if path and Path(path).exists() else []


def sweep_html(doc: dict[str, Any]) -> str:
    kind, table = doc["kind"], doc["table"]
    by_load = sorted(table, key=lambda row: row[kind])
    curves = []
    for key, label in (("ttft", "TTFT"), ("tpot", "TPOT")):
        series = {
            f"{label} {p}": [
                (row["requests_per_s"], row[f"{key}_{p}_ms"])
                for row in by_load
                if row[f"{key}_{p}_ms"] is not None
            ]
            for p in ("p50", "p99")
        }
        curves.append(
            line_chart(
                series,
                f"{label} vs throughput (in order of offered {kind})",
                "achieved requests/s",
                "ms",
                markers=True,
                sort_x=False,
            )
        )
    if any(row["goodput"] is not None for row in table):
        pts = [(row[kind], 100 * row["goodput"]) for row in by_load if row["goodput"] is not None]
        curves.append(
            line_chart({"goodput": pts}, f"Goodput vs {kind}", kind, "% meeting SLOs", markers=True)
        )
    cols = list(table[0]) if table else []
    head = "".join(f"<th>{escape(c)}</th>" for c in cols)
    rows = "".join(
        "<tr>" + "".join(f"<td>{_num(r[c])}</td>" for c in cols) + "</tr>" for r in table
    )
    body = ['<h2>Throughput–latency</h2><div class="charts">' + "".join(curves) + "</div>"]
    fm = doc.get("find_max")
    if fm:
        best = fm["best_rate"]
        body.append(
            f"<p><b>highest rate with goodput ≥ {fm['goodput_target']:.0%}: "
            f"{'none' if best is None else f'{best:g} req/s'}</b></p>"
        )
    body.append(f"<h2>Steps</h2><table><tr>{head}</tr>{rows}</table>")
    runs = {
        f"{kind} {row[kind]:g}": _step_records(st)
        for row, st in zip(table, doc["steps"], strict=True)
    }
    body.append(_cdfs(runs))
    return _page(f"slipstream bench {'find-max' if fm else 'sweep'} report", body)


def write_html(path: str | Path, html: str) -> None:
    Path(path).write_text(html, encoding="utf-8")
