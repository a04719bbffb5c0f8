"""Leak builders for LIS (the Leakage Impact Score) and the guard that keeps leaks out of
ordinary ranker variants.

* :mod:`.future_id`: M_T with its author-ID table swapped for M_{T+n}'s (leak 1);
* :mod:`.similar_items`: top-k similar authors from posterior co-occurrence (leak 2);
* :mod:`.next_positive`: the user's next positive author (leak 3);
* :mod:`.guard`: which views a request reads are tagged ``leaked=true``; rows whose features
  depend on data after their own timestamp.

Tables are written and registered with Feast by :mod:`ranker_hooks.lis.feast_defs`.
"""
