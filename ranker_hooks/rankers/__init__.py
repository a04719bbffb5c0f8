"""Rankers behind one interface (``base.Ranker``): the torch DCN-v2 ranker (default) and the
TFRA dynamic-embedding ranker, which runs in its own environment through ``tfra_worker``."""
