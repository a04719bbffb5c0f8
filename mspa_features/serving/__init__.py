"""Feast: feature views and services for the composed features, materialization, reads.

* ``definitions``: entities, feature views and feature services per feature set;
* ``materialize``: ``feast apply`` of the definitions and materialization to the online store;
* ``reads``: point-in-time joins (offline) and online reads with the TTL rule;
* ``nearest``: nearest authors (U2A/A2A) through Feast's vector search.
"""
