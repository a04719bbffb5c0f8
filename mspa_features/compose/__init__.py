"""Compose (MSPA section 3.1): a user's history -> preference text -> embedding.

* ``prompts``: versioned, hashed prompt sets (live-stream, catalogue, a user's YAML file);
* ``composer``: template and (M)LLM composers over :mod:`mspa_features.generation` backends;
* ``parsing``: the tolerant parser for free-form output and the unambiguous answer letter;
* ``encoders``: BGE-style text encoders (FlagEmbedding, sentence-transformers);
* ``cache``: the content cache of texts and embeddings (keyed by model version + content);
* ``feature_rows``: composer outputs -> the ``preferences`` / ``author_profiles`` contract rows;
* ``jobs``: the ``mspa compose`` batch jobs over snapshots.
"""
