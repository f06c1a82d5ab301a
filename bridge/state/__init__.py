"""Redis-backed coordination state shared by every worker: per-order leases with fencing tokens,
the effects ledger, the account-wide VTEX rate budget, redelivery counters, and more.

Every class takes a ``redis.Redis`` client made with ``decode_responses=True`` and a key
``prefix``; every key it touches starts with that prefix.
"""
