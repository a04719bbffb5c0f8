"""U2A and A2A evaluation of a composer (MSPA section 4, Tables 1 and 3).

For each composer (template baseline, LLM):

* **Recall@K / NDCG@K**: the user's preference embedding retrieves the target among all
  authors by cosine with their description embeddings (authors already in the history are
  excluded; one relevant item, ties count against the target);
* **Acc@m (emb)**: the candidate with the highest cosine is the pick (deterministic);
* **Acc@m (gen)**: a language model reads the preference text and the lettered candidate
  descriptions and answers a letter; run ``generations`` times with different seeds at
  ``temperature`` and reported as mean and standard deviation, as the paper did (unparseable
  answers count as wrong);
* **A2A alignment rate**: share of triples with cos(a1, a2) > cos(a1, a3) on description
  embeddings.

Every metric is a mean over units (users; A2A: triples) and carries a seeded 95 % bootstrap
interval over those units (:func:`mspa_features.evaluation.metrics.bootstrap_mean_ci`, one draw
for all the user metrics) in ``ComposerEval.ci``; an interval over fewer than
``metrics.MIN_USERS_FOR_CI`` units is marked ``trustworthy: False``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from mspa_features.compose.cache import ComposerCache
from mspa_features.compose.composer import (
    JSON_STOP,
    Composer,
    UserHistory,
    close_json,
    with_headroom,
)
from mspa_features.compose.feature_rows import (
    batch_progress,
    compose_author_rows,
    compose_preference_rows,
)
from mspa_features.compose.parsing import ParseStats, answer_letter, parse_answer
from mspa_features.compose.prompts import RECOMMEND, Prompt, render_candidates
from mspa_features.data.contracts import Author
from mspa_features.evaluation import metrics
from mspa_features.generation.base import GenerationBackend, GenerationConfig
from mspa_features.generation.structured import bound_strings, letter_schema


@dataclass
class ComposerEval:
    """Metrics of one composer; ``acc_gen`` maps m -> per-generation accuracies."""

    composer: str
    model_version: str
    n_users: int
    n_authors: int
    retrieval: dict[str, float] = field(default_factory=dict)
    acc_emb: dict[int, float] = field(default_factory=dict)
    acc_gen: dict[int, list[float]] = field(default_factory=dict)
    a2a: float | None = None
    parse: dict[str, dict[str, int]] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    frames: dict[str, Any] = field(default_factory=dict)
    # One row per generated recommendation answer: user_id, m, generation, pick, truth,
    # correct, status (ok/repaired/failed), decoding, reason (the model's stated reason).
    answers: list[dict[str, Any]] = field(default_factory=list)
    # metric key (acc@4 is by generation, acc@4_emb by embedding, recall@5, ndcg@5, a2a) ->
    # BootstrapCI.as_dict(): value, ci_low, ci_high, n (units resampled), n_boot, trustworthy.
    ci: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The per-unit values behind ``ci`` (users in the order of the evaluated table, skipped
    # users as misses; A2A per triple), for paired deltas between composers on the same units.
    per_unit: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    # The users behind the per-user entries of ``per_unit``, in their order.
    unit_ids: list[str] = field(default_factory=list, repr=False)

    def row(self) -> dict[str, Any]:
        """A flat results row: acc@m is the generated-answer mean when generation ran."""
        out: dict[str, Any] = {
            "composer": self.composer,
            "model_version": self.model_version,
            "n_users": self.n_users,
            "n_authors": self.n_authors,
        }
        for m, v in self.acc_emb.items():
            out[f"acc@{m}_emb"] = v
        for m, accs in self.acc_gen.items():
            out[f"acc@{m}"] = float(np.mean(accs))
            out[f"acc@{m}_std"] = float(np.std(accs))
        out.update(self.retrieval)
        if self.a2a is not None:
            out["a2a"] = self.a2a
        if self.ci:
            out["ci"] = self.ci
        if self.per_unit:
            # what a paired delta between two composers (drift, comparisons) resamples: per-user
            # values keyed by user id, A2A per triple in the triples' order
            out["per_unit"] = {
                "user_id": list(self.unit_ids),
                **{k: [float(x) for x in v] for k, v in self.per_unit.items()},
            }
        out["parse"] = self.parse
        out["skipped"] = self.skipped
        if self.frames:
            out["frames"] = self.frames
        out["seconds"] = round(self.seconds, 1)
        return out


def u2a_histories(table: pd.DataFrame, authors: dict[str, Author]) -> list[UserHistory]:
    """Histories exactly as the U2A dataset defines them (target excluded, before as-of)."""
    out = []
    for row in table.itertuples(index=False):
        hist = tuple(authors[a] for a in row.history_author_ids if a in authors)
        ts = list(row.history_ts)
        last = pd.Timestamp(max(ts)).to_pydatetime() if len(ts) else None
        as_of: datetime = pd.Timestamp(row.target_ts).to_pydatetime()
        out.append(UserHistory(row.user_id, as_of, hist, len(hist), last))
    return out


def recommend_letters(
    backend: GenerationBackend,
    preferences: Sequence[str],
    candidate_texts: Sequence[Sequence[str]],
    gen: GenerationConfig,
    stats: ParseStats,
    *,
    prompt: Prompt = RECOMMEND,
    answers: list[dict[str, Any]] | None = None,
    constrained: bool = False,
) -> list[int]:
    """Ask the model to pick a lettered candidate; -1 where no valid letter came back.

    The letter is read by :func:`mspa_features.compose.parsing.answer_letter`, the rule the GRPO
    accuracy reward reads too: only an unambiguous letter counts, never one inside prose.

    Args:
        prompt: the recommendation prompt of the run's prompt set.
        answers: when given, one dict per answer is appended: ``pick`` (the index or -1),
            ``status`` (ok/repaired/failed), ``reason`` (the ``Recommendation Reason`` field,
            "" when absent), ``error`` and ``decoding`` (``constrained``/``free``, as the
            backend reports it).
        constrained: constrain decoding to the prompt's answer schema with ``Answer`` narrowed
            to the question's letters (free strings bounded to fit ``gen.max_new_tokens``);
            honoured when the backend ``supports_schema``.
    """
    convs = [
        prompt.messages(preference=p, candidates=render_candidates(c))
        for p, c in zip(preferences, candidate_texts, strict=True)
    ]
    if not gen.stop:
        gen = dataclasses.replace(gen, stop=JSON_STOP)
    schemas = None
    if constrained and getattr(backend, "supports_schema", False):
        base = bound_strings(prompt.answer_schema, gen.max_new_tokens)
        by_m: dict[int, dict[str, Any]] = {}
        schemas = [by_m.setdefault(len(c), letter_schema(base, len(c))) for c in candidate_texts]
        # an answer cut before "Answer" has no letter (2 of 24 on the CI cohort without it)
        gen = with_headroom(gen)
    outs = backend.generate(convs, gen, **({"schema": schemas} if schemas else {}))
    letters = []
    for o, cands in zip(outs, candidate_texts, strict=True):
        text = close_json(o.text, o.finish_reason)
        r = stats.add(parse_answer(text, prompt.answer_keys))
        letters.append(answer_letter(text, len(cands), parsed=r))
        if answers is not None:
            answers.append(
                {
                    "pick": letters[-1],
                    "status": r.status,
                    "reason": r.get("Recommendation Reason"),
                    "error": r.error,
                    "decoding": "constrained" if o.constrained else "free",
                }
            )
    return letters


def evaluate_composer(
    name: str,
    composer: Composer,
    encoder: Any,
    u2a_test: pd.DataFrame,
    authors: dict[str, Author],
    a2a: pd.DataFrame,
    *,
    num_candidates: Sequence[int],
    cache: ComposerCache | None,
    recommender: GenerationBackend | None = None,
    generations: int = 3,
    temperature: float = 0.7,
    rec_max_new_tokens: int = 64,
    pool: Collection[str] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    rec_prompt: Prompt = RECOMMEND,
    decoding: str = "free",
    n_boot: int = 1000,
    ci_seed: int = 0,
) -> ComposerEval:
    """Compose for the U2A test users and the authors, then compute every U2A/A2A metric.

    ``authors`` supplies the users' histories; ``pool`` (default: all of them) is the authors
    described and ranked. A candidate or A2A triple outside the pool counts as a miss.
    ``rec_prompt`` is the recommendation prompt of the run's prompt set. ``decoding``
    ``constrained`` constrains every answer to that prompt's schema with ``Answer`` narrowed to
    the question's letters (when the recommender supports it); each row of
    ``ComposerEval.answers`` records how its answer was decoded. ``n_boot`` resamples seeded by
    ``ci_seed`` give every metric its 95 % interval (``ComposerEval.ci``).
    """
    import time

    t0 = time.perf_counter()
    say = progress or (lambda *_: None)
    names = sorted(authors) if pool is None else sorted(a for a in pool if a in authors)
    author_list = [authors[a] for a in names]
    tick_a = batch_progress(say, "authors", len(author_list))
    arows = compose_author_rows(composer, encoder, author_list, cache=cache, on_batch=tick_a)
    a_ids = arows.table.column("author_id").to_pylist()
    a_emb = np.asarray(arows.table.column("author_emb").to_pylist(), np.float32)
    a_text = dict(zip(a_ids, arows.table.column("author_text").to_pylist(), strict=True))
    index = {a: j for j, a in enumerate(a_ids)}

    histories = u2a_histories(u2a_test, authors)
    tick_u = batch_progress(say, "users", len(histories))
    prows = compose_preference_rows(composer, encoder, histories, cache=cache, on_batch=tick_u)
    kept = prows.table.column("user_id").to_pylist()
    p_emb = np.asarray(prows.table.column("pref_emb").to_pylist(), np.float32)
    p_text = prows.table.column("pref_text").to_pylist()
    test = u2a_test.set_index("user_id").loc[kept].reset_index()
    # Users skipped by the composer count as misses: score them with a zero preference.
    n_all = len(u2a_test)

    ev = ComposerEval(
        name, prows.table.column("model_version")[0].as_py() if kept else "", n_all, len(a_ids)
    )
    ev.skipped = {"users": prows.quarantine.num_rows, "authors": arows.quarantine.num_rows}
    ev.unit_ids = [str(u) for u in u2a_test["user_id"]]

    scores = p_emb @ a_emb.T if len(kept) else np.zeros((0, len(a_ids)))  # (users, authors)
    for i, hist in enumerate(test["history_author_ids"]):
        scores[i, [index[a] for a in hist if a in index]] = -np.inf
    target = np.array([index.get(a, -1) for a in test["target_author_id"]])
    has_target = target >= 0
    # Per-user values over all n_all users (in u2a_test's order): skipped users stay misses.
    row_of = {u: i for i, u in enumerate(u2a_test["user_id"])}
    at = np.array([row_of[u] for u in kept], dtype=np.intp)

    def per_user(values: np.ndarray) -> np.ndarray:
        out = np.zeros(n_all)
        out[at] = values
        return out

    for k in (5, 10):
        for key, fn in (
            (metrics.MetricName.RECALL_AT_K, metrics.recall_at_k),
            (metrics.MetricName.NDCG_AT_K, metrics.ndcg_at_k),
        ):
            v = fn(scores[has_target], target[has_target], k) if has_target.any() else 0.0
            # skipped users and undescribed targets count as misses
            ev.retrieval[metrics.metric_key(key, k)] = v * int(has_target.sum()) / n_all
            ev.per_unit[metrics.metric_key(key, k)] = per_user(
                [
                    fn(scores[[i]], target[[i]], k) if has_target[i] else 0.0
                    for i in range(len(kept))
                ]
            )

    gen_stats = ParseStats()
    for m in num_candidates:
        cands = test[f"candidates_m{m}"].tolist()
        truth = test[f"answer_index_m{m}"].to_numpy()
        cidx = np.array([[index.get(a, -1) for a in c] for c in cands]).reshape(len(cands), m)
        cs = np.where(
            cidx >= 0,
            np.take_along_axis(p_emb @ a_emb.T, np.maximum(cidx, 0), 1) if len(kept) else 0,
            -np.inf,
        )
        picks = cs.argmax(axis=1) if len(kept) else np.array([], int)
        ev.acc_emb[m] = _acc(picks, truth, n_all)
        ev.per_unit[f"acc@{m}_emb"] = per_user(picks == truth)
        if recommender is not None and generations > 0 and len(kept):
            texts = [[a_text.get(a, authors[a].profile_text) for a in c] for c in cands]
            say(f"recommend m={m} x{generations}", 0, 1)
            # All generations in one call: each copy of a question has its own random stream
            # (seed, position), and a backend may prefill the shared prompt once.
            gen = GenerationConfig(max_new_tokens=rec_max_new_tokens, temperature=temperature)
            answers: list[dict[str, Any]] = []
            letters = recommend_letters(
                recommender,
                p_text * generations,
                texts * generations,
                gen,
                gen_stats,
                prompt=rec_prompt,
                answers=answers,
                constrained=decoding == "constrained",
            )
            for j, a in enumerate(answers):
                g, i = divmod(j, len(p_text))
                ev.answers.append(
                    {
                        "user_id": str(test["user_id"].iat[i]),
                        "m": m,
                        "generation": g,
                        **a,  # its "decoding" is what the backend did
                        "truth": int(truth[i]),
                        "correct": a["pick"] == int(truth[i]),
                    }
                )
            say(f"recommend m={m} x{generations}", 1, 1)
            picks_g = np.array(letters).reshape(generations, len(p_text))
            ev.acc_gen[m] = [_acc(picks_g[g], truth, n_all) for g in range(generations)]
            ev.per_unit[f"acc@{m}"] = per_user((picks_g == truth).mean(axis=0))
    # Parse status per kind of generated text: the preferences and author descriptions this
    # evaluation used (cached or not; a model that returned no text counts as failed) and every
    # recommendation answer.
    ev.parse = {
        "preferences": status_counts(prows.composed),
        "authors": status_counts(arows.composed),
        "recommend": gen_stats.as_dict(),
    }
    compose_stats = getattr(composer, "stats", None)
    if compose_stats is not None:
        ev.parse["compose"] = compose_stats.parse.as_dict()
        if hasattr(compose_stats, "frames_dict"):
            ev.frames = compose_stats.frames_dict()

    if len(a2a):
        emb = dict(zip(a_ids, a_emb, strict=True))
        keep = a2a["a1"].isin(emb) & a2a["a2"].isin(emb) & a2a["a3"].isin(emb)
        from mspa_features.evaluation.datasets import a2a_aligned, a2a_alignment

        # triples touching an undescribed author count as misalignments
        ev.a2a = a2a_alignment(a2a[keep], emb) * float(keep.mean()) if keep.any() else 0.0
        aligned = np.zeros(len(a2a))
        if keep.any():
            aligned[keep.to_numpy()] = a2a_aligned(a2a[keep], emb)
        ev.per_unit["a2a"] = aligned
    ev.ci = composer_cis(ev.per_unit, n_boot=n_boot, seed=ci_seed)
    ev.seconds = time.perf_counter() - t0
    return ev


def composer_cis(
    per_unit: dict[str, np.ndarray], *, n_boot: int = 1000, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """95 % bootstrap intervals of the per-unit metrics: the user metrics share one draw of
    users, A2A (per triple) is resampled over triples; no interval for no unit."""
    users = {k: v for k, v in per_unit.items() if k != "a2a" and len(v)}
    out = {}
    if users:
        out.update(metrics.bootstrap_mean_ci(users, n_boot=n_boot, seed=seed))
    if len(per_unit.get("a2a", ())):
        out.update(metrics.bootstrap_mean_ci({"a2a": per_unit["a2a"]}, n_boot=n_boot, seed=seed))
    return {k: ci.as_dict() for k, ci in out.items()}


def status_counts(composed: Sequence[Any]) -> dict[str, int]:
    """``{"ok", "repaired", "failed"}`` counts of composed rows; an input skipped for lack of
    content (empty history, author without text or frames) is not a parse and is left out, a
    model that returned no text is ``failed``."""
    out = {"ok": 0, "repaired": 0, "failed": 0}
    for c in composed:
        if c.status in out:
            out[c.status] += 1
        elif c.reason == "model returned no text":
            out["failed"] += 1
    return out


def parse_rate(counts: dict[str, int]) -> float | None:
    """Share of parsed answers (ok + repaired) among ok + repaired + failed; None for none."""
    n = sum(counts.get(k, 0) for k in ("ok", "repaired", "failed"))
    return None if n == 0 else (counts.get("ok", 0) + counts.get("repaired", 0)) / n


def _acc(picks: np.ndarray, truth: np.ndarray, n_all: int) -> float:
    """Accuracy over all ``n_all`` users; users without a pick count as wrong."""
    if len(picks) == 0:
        return 0.0
    return metrics.accuracy_at_m(picks, truth) * len(picks) / n_all
