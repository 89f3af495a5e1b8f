"""Gateway tenancy at run time: key cache, rate limits, budgets, prices and the ledger writer.

`Tenancy` (runtime.py) ties them together for one gateway process; the request-path stages
that use it live in `slipstream.gateway.stages` (auth, limits, budget, spend).
"""
