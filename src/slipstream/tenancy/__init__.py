"""Gateway tenancy: virtual keys, rate limits, budgets, prices and the spend ledger.

`Tenancy` (runtime.py) ties them together for one gateway process and is the gateway feature
"tenancy": its stages (stages/: auth, limits, spend) plug into the gateway's chain.
"""
