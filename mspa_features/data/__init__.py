"""Data sources: MovieLens-100K, the synthetic live-stream generator, evaluation datasets."""
