"""The summary of one gateway_overhead.py run: what the tables and targets read, worked out
from the measured results (added latency, req/s ratios, against LiteLLM and the baseline)."""

from __future__ import annotations

from typing import Any

from _gateway.names import BASELINE, SLIPSTREAM, TWIN
from _gateway.targets import is_slipstream


def summarize(res: dict[str, Any], levels: list[int], gateways: list[str]) -> dict[str, Any]:
    s: dict[str, Any] = {}
    load = res.get("load", {})
    if "1" in load.get("direct", {}):
        direct = load["direct"]["1"]["median"]["p50_ms"]
        added = {
            g: round(load[g]["1"]["median"]["p50_ms"] - direct, 3)
            for g in gateways
            if "1" in load.get(g, {})
        }
        for g in [g for g in added if is_slipstream(g)]:
            added[f"{g}_meets_target"] = added[g] <= 0.5
        s["added_p50_ms_c1"] = added
    top = str(max(levels))
    if top in load.get("slipstream", {}) and top in load.get("litellm", {}):
        lite = load["litellm"][top]["median"]["rps"]
        if lite:
            s["rps_ratio_c32"] = round(load["slipstream"][top]["median"]["rps"] / lite, 2)
            s["rps_ratio_concurrency"] = int(top)
    vs = _vs_baseline(load, s.get("added_p50_ms_c1", {}), top)
    if vs:
        s["vs_baseline"] = vs | {"concurrency": int(top)}
        # Flat forms (this checkout - baseline, this checkout / baseline) per pair.
        for now, pair in vs["pairs"].items():
            if pair.get("p50_delta_ms_c1") is not None:
                s.setdefault("vs_baseline_p50_delta_ms_c1", {})[now] = pair["p50_delta_ms_c1"]
            if pair.get("rps_ratio") is not None:
                s.setdefault("vs_baseline_rps_ratio", {})[now] = pair["rps_ratio"]
    if top in load.get("slipstream", {}) and top in load.get("slipstream-tenancy", {}):
        base = load["slipstream"][top]["median"]["rps"]
        if base:
            ratio = round(load["slipstream-tenancy"][top]["median"]["rps"] / base, 3)
            s["tenancy_rps_ratio"] = ratio
            s["tenancy_rps_ratio_meets_target"] = ratio >= 0.8
            s["tenancy_rps_ratio_concurrency"] = int(top)
    fb = res.get("first_byte", {})
    if "direct" in fb:
        d = fb["direct"]["first_event_p50_ms"]
        over = {g: round(fb[g]["first_event_p50_ms"] - d, 3) for g in gateways if g in fb}
        for g in [g for g in over if is_slipstream(g)]:
            over[f"{g}_meets_target"] = over[g] <= 1.0
        s["first_event_overhead_p50_ms"] = over
    spend = {
        n: {
            k: e.get(k)
            for k in ("rows", "client_counted_requests", "rows_minus_answered", "cost_usd")
        }
        | ({"error": e["error"]} if "error" in e else {})
        for n, e in res.get("spend", {}).items()
    }
    if spend:
        s["spend"] = spend
    return s


def _vs_baseline(load: dict[str, Any], added: dict[str, float], top: str) -> dict[str, Any] | None:
    """This checkout against --baseline-src, per pair (slipstream/baseline, slipstream-tenancy/
    baseline-tenancy): added p50 at concurrency 1 (gateway p50 - direct p50) of each and the
    difference; req/s at the highest concurrency of each and the ratio (this / baseline)."""
    pairs: dict[str, dict[str, Any]] = {}
    for now in SLIPSTREAM:
        then = TWIN[now]
        if now not in load or then not in load:
            continue
        pair: dict[str, Any] = {"baseline": then}
        if now in added and then in added:
            pair["added_p50_ms_c1"] = {"baseline": added[then], "current": added[now]}
            pair["p50_delta_ms_c1"] = round(added[now] - added[then], 3)
        if top in load[now] and top in load[then]:
            was, rps = load[then][top]["median"]["rps"], load[now][top]["median"]["rps"]
            pair["rps"] = {"baseline": was, "current": rps}
            pair["rps_ratio"] = round(rps / was, 3) if was else None
        pairs[now] = pair
    if not pairs:
        return None
    out: dict[str, Any] = {"pairs": pairs}
    # tenancy on / off within each checkout, so the change in tenancy's cost shows too
    for side, off, on in (("current", *SLIPSTREAM), ("baseline", *BASELINE)):
        if top in load.get(off, {}) and top in load.get(on, {}) and load[off][top]["median"]["rps"]:
            ratio = load[on][top]["median"]["rps"] / load[off][top]["median"]["rps"]
            out.setdefault("tenancy_rps_ratio", {})[side] = round(ratio, 3)
    return out
