"""Which partial scorer would make speculative rejection pay off? A replay study on full samples (issue 18, item 4).

    .venv/bin/python benchmarks/spec_reject_scorers.py [--train-prompts 96] [--test-prompts 64] [--n 16]
        [--tokens 64] [--checkpoints 4,8;8,16;16,32] [--keep 0.25,0.125] [--rm RM_DIR]

Speculative rejection (`alignkit.decode.spec_reject`) ranks the unfinished rows by a score of their partial text at
each checkpoint and continues the best `keep` fraction. A row continued past a checkpoint is a draw from the same
distribution as the tail of a fresh sample, so the strategy can be replayed exactly on n full samples per prompt:
rank the rows' prefixes, keep the best fraction, charge each rejected row the tokens it had at its rejection, and
pick the best complete survivor by the final reward (`replay`). On the same samples that compares rankers:

* `random`: the floor (mean of 50 random rankings);
* `csr`: the verifier on the partial text, what `--strategy spec_reject --reward csr` does;
* `probe`: a learned value head, ridge regression of the final reward on the policy's last hidden state at the
  checkpoint, fitted on the train split's samples (per-prompt demeaned, α by 4-fold grouped cross-validation);
  the cheapest learned scorer there is, one dot product per row on a state the sampler computes anyway;
* `rm` (with `--rm DIR`): a reward model's score of the partial text, e.g. one trained on partial answers;
* `oracle`: the final reward itself, the ceiling (best-of-n's reward at the replay's tokens).

Samples are cached under --cache-dir (keyed by split, prompts, n, tokens, seed). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alignkit.data.suite import load_suite
from alignkit.decode.common import score
from alignkit.decode.hf import HFSampler
from alignkit.decode.hf_loop import cache_of
from alignkit.evaluate.stats import paired_bootstrap
from alignkit.models import load_model
from alignkit.rewards.registry import load_reward

ROOT = Path(__file__).resolve().parents[1]
Scores = dict[int, dict[tuple[int, int], float]]  # checkpoint -> (prompt, row) -> score of the row's prefix


def replay(data: Sequence[dict[str, Any]], scores: Scores, checkpoints: Sequence[int], keep: float
           ) -> tuple[list[float], float]:
    """Speculative rejection replayed on full samples (`spec_reject`'s schedule): per prompt the final reward of
    the selected row, and the mean generated tokens per prompt. Rows that end at or before a checkpoint are
    complete candidates; the others are ranked by `scores[c]` (ties: the earlier row) and the best
    ceil(keep · alive) go on; a rejected row cost the c tokens it had."""
    selected, tokens = [], []
    for i, d in enumerate(data):
        lens = [len(t) for t in d["token_ids"]]
        alive, done, used = list(range(len(lens))), [], 0
        for c in checkpoints:
            done += [k for k in alive if lens[k] <= c]
            alive = [k for k in alive if lens[k] > c]
            if not alive:
                break
            ranked = sorted(alive, key=lambda k: (-scores[c][(i, k)], k))
            kept = ranked[:max(1, math.ceil(keep * len(alive)))]
            used += c * (len(alive) - len(kept))
            alive = sorted(kept)
        done += alive
        used += sum(lens[k] for k in done)
        selected.append(max(d["final"][k] for k in done))
        tokens.append(used)
    return selected, float(np.mean(tokens))


def sample_split(sampler: HFSampler, reward: Any, split: str, count: int, n: int, tokens: int, seed: int,
                 cache: Path) -> list[dict[str, Any]]:
    path = cache / f"{split}-{count}x{n}-t{tokens}-s{seed}.jsonl"
    if path.exists():
        return [json.loads(line) for line in path.read_text().splitlines()]
    suite = load_suite(split)[:count]
    rows = sampler.sample([e.prompt for e in suite], n=n, max_new_tokens=tokens, temperature=1.0, seed=seed)
    data = []
    for e, samples in zip(suite, rows, strict=True):
        texts = [s.text for s in samples]
        final = score(reward, [e.prompt] * n, texts, [{"constraints": e.constraints}] * n)
        data.append({"id": e.metadata["id"], "prompt": e.prompt, "constraints": e.constraints,
                     "token_ids": [list(s.token_ids) for s in samples], "texts": texts, "final": final})
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(d) + "\n" for d in data))
    return data


@torch.inference_mode()
def hidden_at(model: Any, sampler: HFSampler, data: Sequence[dict[str, Any]], cps: Sequence[int]
              ) -> dict[int, np.ndarray]:
    """The policy's last hidden state (after the final norm) at each row's c-th completion token, for c in cps:
    one forward of the prompt, then of its n completions on the prompt's KV."""
    out: dict[int, list[np.ndarray]] = {c: [] for c in cps}
    for d in data:
        p = sampler.encode_prompt(d["prompt"])
        cache = cache_of(model(input_ids=torch.tensor([p]), use_cache=True))
        rows = d["token_ids"]
        width = max(max(len(r) for r in rows), max(cps))
        ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * (len(p) + len(r)) + [0] * (width - len(r)) for r in rows])
        cache.batch_repeat_interleave(len(rows))
        pos = torch.arange(len(p), len(p) + width)[None].expand(len(rows), -1)
        h = model(input_ids=ids, attention_mask=mask, position_ids=pos, output_hidden_states=True,
                  **{sampler._cache_kw: cache}).hidden_states[-1]  # the cache keyword this transformers takes
        for c in cps:
            out[c].append(h[:, c - 1].float().numpy())  # rows shorter than c are never ranked at c
    return {c: np.concatenate(v) for c, v in out.items()}


def _rows(data: Sequence[dict[str, Any]], feats: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray, list, list]:
    """Rows still running at c: per-prompt demeaned features and targets, their (prompt, row) keys, groups."""
    xs, ys, keys, groups, off = [], [], [], [], 0
    for i, d in enumerate(data):
        n = len(d["token_ids"])
        live = [k for k in range(n) if len(d["token_ids"][k]) > c]
        f, off = feats[off:off + n], off + n
        if live:
            xs.append(f[live] - f[live].mean(0))
            y = np.array([d["final"][k] for k in live])
            ys.append(y - y.mean())
            keys += [(i, k) for k in live]
            groups += [i] * len(live)
    return np.concatenate(xs), np.concatenate(ys), keys, groups


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    return np.linalg.solve(x.T @ x + alpha * np.eye(x.shape[1]), x.T @ y)


def _within_spearman(keys: list, pred: np.ndarray, truth: np.ndarray) -> float:
    from scipy.stats import spearmanr

    by: dict[int, list[tuple[float, float]]] = {}
    for (i, _), p, t in zip(keys, pred, truth, strict=True):
        by.setdefault(i, []).append((float(p), float(t)))
    rs = [spearmanr(*zip(*v, strict=True)).statistic for v in by.values()
          if len(v) > 2 and len({t for _, t in v}) > 1 and len({p for p, _ in v}) > 1]
    return float(np.mean(rs)) if rs else float("nan")


def probe_scores(train: Sequence[dict[str, Any]], ftrain: dict[int, np.ndarray], test: Sequence[dict[str, Any]],
                 ftest: dict[int, np.ndarray], cps: Sequence[int], alphas: Sequence[float] = (10, 100, 1000, 10000)
                 ) -> tuple[Scores, dict[int, tuple[float, float]]]:
    """Ridge value heads per checkpoint; returns the test scores and, per c, (chosen α, test within-prompt ρ)."""
    scores: Scores = {}
    info = {}
    for c in cps:
        x, y, _, groups = _rows(train, ftrain[c], c)
        fold = np.array(groups) % 4

        def cv(alpha: float, x: np.ndarray = x, y: np.ndarray = y, fold: np.ndarray = fold) -> float:
            return float(np.mean([np.corrcoef(x[fold == f] @ _ridge(x[fold != f], y[fold != f], alpha),
                                              y[fold == f])[0, 1] for f in range(4)]))

        alpha = max(alphas, key=cv)
        w = _ridge(x, y, alpha)
        xt, yt, keys, _ = _rows(test, ftest[c], c)
        pred = xt @ w
        scores[c] = dict(zip(keys, pred.tolist(), strict=True))
        info[c] = (alpha, _within_spearman(keys, pred, yt))
    return scores, info


def partial_scores(reward: Any, tok: Any, data: Sequence[dict[str, Any]], cps: Sequence[int]) -> Scores:
    """A reward of each running row's first c tokens (decoded), per checkpoint c."""
    out: Scores = {}
    for c in cps:
        keys = [(i, k) for i, d in enumerate(data) for k, t in enumerate(d["token_ids"]) if len(t) > c]
        texts = [tok.decode(data[i]["token_ids"][k][:c], skip_special_tokens=True) for i, k in keys]
        vals = score(reward, [data[i]["prompt"] for i, _ in keys], texts,
                     [{"constraints": data[i]["constraints"]} for i, _ in keys])
        out[c] = dict(zip(keys, vals, strict=True))
    return out


def partial_pairs(data: Sequence[dict[str, Any]], tok: Any, cps: Sequence[int], per: int, seed: int = 0
                  ) -> list[dict[str, Any]]:
    """Bradley-Terry pairs for an RM of partial answers: per prompt and checkpoint c, up to `per` random pairs of
    running rows' first c tokens, `chosen` the one whose full completion scored higher (distinct texts only)."""
    rng, pairs = random.Random(seed), []
    for d in data:
        for c in cps:
            rows = [(tok.decode(ids[:c], skip_special_tokens=True), f)
                    for ids, f in zip(d["token_ids"], d["final"], strict=True) if len(ids) > c]
            cand = [(a, b) for a in range(len(rows)) for b in range(len(rows))
                    if rows[a][1] > rows[b][1] and rows[a][0] != rows[b][0]]
            for a, b in rng.sample(cand, min(per, len(cand))):
                pairs.append({"prompt": d["prompt"], "chosen": rows[a][0], "rejected": rows[b][0],
                              "metadata": {"id": d["id"], "checkpoint": c}})
    return pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--train-prompts", type=int, default=96)
    ap.add_argument("--test-prompts", type=int, default=64)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--checkpoints", default="4,8;8,16;16,32", help="schedules, ';'-separated")
    ap.add_argument("--keep", default="0.25,0.125")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--write-pairs", type=Path, metavar="JSONL", help="write the train split's partial-answer BT "
                    "pairs (at --pair-checkpoints) for `alignkit reward train`, then go on")
    ap.add_argument("--pair-checkpoints", default="8,16")
    ap.add_argument("--pairs-per", type=int, default=6, help="pairs per prompt and checkpoint")
    ap.add_argument("--rm", metavar="DIR", help="also rank by this reward model (e.g. one trained on partial answers)")
    ap.add_argument("--cache-dir", type=Path, default=ROOT / "runs" / "spec_reject_scorers")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    schedules = [[int(c) for c in s.split(",")] for s in args.checkpoints.split(";") if s.strip()]
    keeps = [float(k) for k in args.keep.split(",")]
    cps = sorted({c for s in schedules for c in s})
    t0 = time.perf_counter()
    model, tok = load_model(args.model)
    sampler = HFSampler(model, tok, max_batch_rows=64)
    reward = load_reward("csr")
    train = sample_split(sampler, reward, "train", args.train_prompts, args.n, args.tokens, args.seed, args.cache_dir)
    if args.write_pairs:
        pairs = partial_pairs(train, tok, [int(c) for c in args.pair_checkpoints.split(",")], args.pairs_per)
        args.write_pairs.parent.mkdir(parents=True, exist_ok=True)
        args.write_pairs.write_text("".join(json.dumps(p) + "\n" for p in pairs))
        print(f"{len(pairs)} pairs -> {args.write_pairs}")
    test = sample_split(sampler, reward, "test", args.test_prompts, args.n, args.tokens, args.seed, args.cache_dir)
    probe, info = probe_scores(train, hidden_at(model, sampler, train, cps), test, hidden_at(model, sampler, test, cps),
                               cps)
    oracle = {c: {(i, k): f for i, d in enumerate(test) for k, f in enumerate(d["final"])} for c in cps}
    rankers: dict[str, Scores] = {"csr": partial_scores(reward, tok, test, cps), "probe": probe}
    if args.rm:
        rankers["rm"] = partial_scores(load_reward(f"rm:{args.rm}"), tok, test, cps)
    rankers["oracle"] = oracle
    ref = [max(d["final"]) for d in test]
    ref_tokens = float(np.mean([sum(map(len, d["token_ids"])) for d in test]))
    print(f"\n{args.model}; train {args.train_prompts} / test {args.test_prompts} prompts of the suite; n = {args.n}; "
          f"{args.tokens} new tokens; seed {args.seed}; {time.perf_counter() - t0:.0f} s")
    print("probe per checkpoint (α by CV, test within-prompt Spearman ρ with the final csr): "
          + ", ".join(f"{c}: α={a:g} ρ={r:.2f}" for c, (a, r) in info.items()))
    names = list(rankers)
    blank = "| " * (len(names) + 1) + "|"  # the ranker cells and the interval cell
    print(f"\n| checkpoints | keep | gen tokens vs BoN-n | random | {' | '.join(names)} | csr − BoN-n [95% CI] |")
    print("|---" * (len(names) + 5) + "|")
    for n in (1, 2, 4, 8):
        sel = [max(d["final"][:n]) for d in test]
        share = np.mean([sum(map(len, d["token_ids"][:n])) for d in test]) / ref_tokens
        print(f"| best-of-{n} | | {share:.0%} | {np.mean(sel):.3f} {blank}")
    for cps_ in schedules:
        for keep in keeps:
            rnd = [np.mean(replay(test, {c: {(i, k): r.random() for i, d in enumerate(test)
                                             for k in range(len(d["final"]))} for c in cps_}, cps_, keep)[0])
                   for r in (random.Random(s) for s in range(50))]
            cells, share = {}, 0.0
            for name, sc in rankers.items():
                cells[name], tok_ = replay(test, sc, cps_, keep)
                if name == "csr":  # the tokens differ a little by ranker (the survivors' lengths): csr's
                    share = tok_ / ref_tokens
            d = paired_bootstrap(cells["csr"], ref, seed=0)
            print(f"| {','.join(map(str, cps_))} | {keep:g} | {share:.0%} | {np.mean(rnd):.3f} | "
                  + " | ".join(f"{np.mean(cells[k]):.3f}" for k in names)
                  + f" | {d.value:+.3f} [{d.low:+.3f}, {d.high:+.3f}] |")
    print(f"| best-of-{args.n} | | 100% | {np.mean(ref):.3f} {blank}")


if __name__ == "__main__":
    main()
