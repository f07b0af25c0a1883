"""Weak-to-strong generalisation on a binary (e.g. safe/unsafe) task: the Burns protocol, weak labels, and
performance gap recovered with intervals (wave2_feedback_safety.md §9.2, §9.4).

Protocol (`run_w2s`): split the labelled rows into test (`test_frac`) and two training halves T1, T2 (seeded);
train the weak model W on T1 with ground truth; W labels T2 with soft labels p_W(x) (`label_probs`); train the
strong model S on T2 with the weak labels (objective `w2s_confidence`, auxiliary confidence loss) and, as
baselines, with plain soft-label cross-entropy (`aux_coef=0`, "naive") and on ground truth (the ceiling S*);
evaluate all on the test set. One prompt template is used for training and testing (the WTS safety code mixes
two; §9.1 quirk).

PGR = (perf(S) − perf(W)) / (perf(S*) − perf(W)) on a higher-is-better metric; for a lower-is-better metric pass
`lower_is_better=True` (PGR = (m_W − m_S)/(m_W − m_S*)). NaN when |perf(S*) − perf(W)| < 1e-3. The interval
resamples test items jointly for the three models (`pgr_ci`).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alignkit.data.records import ListwiseExample, Prompt
from alignkit.errors import ConfigError, DataError
from alignkit.evaluate.stats import Estimate, bootstrap, proportion_ci

PGR_MIN_GAP = 1e-3


def performance_gap_recovered(weak: float, strong: float, ceiling: float, *, lower_is_better: bool = False
                              ) -> float:
    """PGR of §9.4 (NaN when the weak-to-ceiling gap is below 1e-3)."""
    if lower_is_better:
        weak, strong, ceiling = -weak, -strong, -ceiling
    gap = ceiling - weak
    return float("nan") if abs(gap) < PGR_MIN_GAP else (strong - weak) / gap


def pgr_ci(weak: Sequence[float], strong: Sequence[float], ceiling: Sequence[float], *,
           lower_is_better: bool = False, seed: int = 0, n_resamples: int = 2000) -> Estimate:
    """PGR of per-item scores (e.g. 0/1 correctness) of W, S and S* on the same test items, with a bootstrap
    interval over items (resamples where the gap vanishes are dropped)."""
    w, s, c = (np.asarray(x, dtype=float) for x in (weak, strong, ceiling))
    if not (w.shape == s.shape == c.shape):
        raise DataError(f"pgr_ci needs one score per test item for each model; got {w.shape}, {s.shape}, {c.shape}")
    sign = -1.0 if lower_is_better else 1.0

    def stat(a: np.ndarray, b: np.ndarray, d: np.ndarray, axis: int = -1) -> np.ndarray:
        mw, ms, mc = (sign * x.mean(axis=axis) for x in (a, b, d))
        gap = mc - mw
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(np.abs(gap) < PGR_MIN_GAP, np.nan, (ms - mw) / np.where(gap == 0, 1, gap))

    return bootstrap((w, s, c), stat, seed=seed, n_resamples=n_resamples)


def label_probs(model: Any, tokenizer: Any, prompts: Sequence[Prompt], labels: Sequence[str],
                batch_rows: int = 32) -> np.ndarray:
    """`[N, K]` softmax over the summed log-probs of each label completion (with EOS, as training scores it)."""
    import torch

    from alignkit.data.tokenize import encode_completion
    from alignkit.decode.hf import HFSampler

    sampler = HFSampler(model, tokenizer, max_batch_rows=batch_rows)
    ids = [encode_completion(tokenizer, lab) for lab in labels]
    flat_p = [p for p in prompts for _ in labels]
    flat_c = [c for _ in prompts for c in ids]
    with torch.no_grad():
        lps = sampler.score_logprobs(flat_p, flat_c)
    z = np.asarray([sum(row) for row in lps], dtype=float).reshape(len(prompts), len(labels))
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def classification_records(rows: Sequence[dict[str, Any]], labels: Sequence[str],
                           soft: np.ndarray | None = None) -> list[ListwiseExample]:
    """Listwise records for `w2s_confidence`: completions = the label words, scores = soft labels (one-hot
    ground truth when `soft` is None)."""
    out = []
    for i, row in enumerate(rows):
        y = int(row["label"])
        scores = [float(v) for v in soft[i]] if soft is not None else [1.0 if k == y else 0.0
                                                                       for k in range(len(labels))]
        out.append(ListwiseExample(row["prompt"], list(labels), scores, {"label": y}))
    return out


@dataclass
class W2SConfig:
    weak_model: str = "tiny-random:2:32"
    strong_model: str = "tiny-random:4:64"
    labels: list[str] = field(default_factory=lambda: [" safe", " unsafe"])
    test_frac: float = 0.2
    epochs: float = 2.0  # Burns' default (WTS uses 3)
    lr: float = 1e-4
    weak_lr: float | None = None  # default: lr
    batch_size: int = 8
    aux_coef: float = 0.5
    warmup_frac: float = 0.1
    ramp: str = "step"
    naive: bool = True  # also train S on weak labels without the auxiliary loss
    seed: int = 0
    max_length: int = 256


def split_w2s(rows: Sequence[dict[str, Any]], test_frac: float, seed: int
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(T1, T2, test): a seeded shuffle, the test fraction first, the rest halved."""
    if not 0.0 < test_frac < 1.0:
        raise ConfigError(f"test_frac must be in (0, 1); got {test_frac}")
    order = list(rows)
    random.Random(seed).shuffle(order)
    n_test = max(1, int(round(len(order) * test_frac)))
    test, rest = order[:n_test], order[n_test:]
    if len(rest) < 4:
        raise DataError(f"weak-to-strong needs at least 4 training rows after the test split; got {len(rest)}")
    half = len(rest) // 2
    return rest[:half], rest[half:], test


def _train(model: str, records: list[ListwiseExample], out: Path, cfg: W2SConfig, lr: float, aux: float,
           log: Callable[[str], None]) -> Any:
    from alignkit.models import load_model
    from alignkit.train.config import TrainConfig
    from alignkit.train.engine import train

    steps_per_epoch = math.ceil(len(records) / cfg.batch_size)
    total = max(1, math.ceil(steps_per_epoch * cfg.epochs))
    tc = TrainConfig(model=model, data=str(out / "in-memory"), objective="w2s_confidence", output_dir=str(out),
                     batch_size=cfg.batch_size, lr=lr, epochs=cfg.epochs, seed=cfg.seed, progress=False,
                     max_length=cfg.max_length, overwrite=True,
                     objective_args={"aux_coef": aux, "warmup_frac": cfg.warmup_frac, "ramp": cfg.ramp,
                                     "total_calls": total})
    result = train(tc, records=records, eval_records=[], log=log)
    return load_model(str(result.final_dir))[0]


def run_w2s(rows: Sequence[dict[str, Any]], out_dir: str | Path, cfg: W2SConfig | None = None, *,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """The Burns protocol on labelled rows `{"prompt", "label"}` (label = index into `cfg.labels`); writes
    OUT/w2s.json (accuracies with intervals, PGR with intervals) and the weak labels OUT/weak_labels.jsonl."""
    from alignkit.models import load_tokenizer

    cfg = cfg or W2SConfig()
    for i, row in enumerate(rows):
        if not isinstance(row.get("prompt"), (str, list)) or row.get("label") not in range(len(cfg.labels)):
            raise DataError(f"rows need 'prompt' and an integer 'label' in 0..{len(cfg.labels) - 1}", line=i + 1)
    if len(cfg.labels) != 2:
        raise ConfigError("the auxiliary confidence loss is binary: give exactly two labels")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t1, t2, test = split_w2s(rows, cfg.test_frac, cfg.seed)
    log(f"weak-to-strong: T1 {len(t1)}, T2 {len(t2)}, test {len(test)}")
    tok = load_tokenizer(cfg.strong_model)
    if load_tokenizer(cfg.weak_model).get_vocab() != tok.get_vocab():
        raise ConfigError("the weak and strong models must share a tokenizer (weak labels are scored over the same "
                          "label tokens)")
    test_prompts = [r["prompt"] for r in test]
    truth = np.asarray([r["label"] for r in test])

    def correct(model: Any) -> np.ndarray:
        return (label_probs(model, tok, test_prompts, cfg.labels).argmax(1) == truth).astype(float)

    weak = _train(cfg.weak_model, classification_records(t1, cfg.labels), out / "weak", cfg, cfg.weak_lr or cfg.lr,
                  0.0, log)
    soft = label_probs(weak, tok, [r["prompt"] for r in t2], cfg.labels)
    with (out / "weak_labels.jsonl").open("w") as f:
        for r, q in zip(t2, soft, strict=True):
            f.write(json.dumps({"prompt": r["prompt"], "label": r["label"], "weak_probs": q.tolist()}) + "\n")
    results = {"weak": correct(weak)}
    weak_acc_t2 = float((soft.argmax(1) == np.asarray([r["label"] for r in t2])).mean())
    del weak
    strong = _train(cfg.strong_model, classification_records(t2, cfg.labels, soft), out / "strong_w2s", cfg,
                    cfg.lr, cfg.aux_coef, log)
    results["strong_w2s"] = correct(strong)
    del strong
    if cfg.naive:
        naive = _train(cfg.strong_model, classification_records(t2, cfg.labels, soft), out / "strong_naive", cfg,
                       cfg.lr, 0.0, log)
        results["strong_naive"] = correct(naive)
        del naive
    ceiling = _train(cfg.strong_model, classification_records(t2, cfg.labels), out / "strong_ceiling", cfg,
                     cfg.lr, 0.0, log)
    results["strong_ceiling"] = correct(ceiling)
    report: dict[str, Any] = {
        "config": asdict(cfg), "n": {"t1": len(t1), "t2": len(t2), "test": len(test)},
        "weak_label_accuracy_t2": weak_acc_t2,
        "accuracy": {k: proportion_ci(v, seed=cfg.seed).as_dict() for k, v in results.items()},
        "pgr": {"w2s": pgr_ci(results["weak"], results["strong_w2s"], results["strong_ceiling"],
                              seed=cfg.seed).as_dict()},
    }
    if cfg.naive:
        report["pgr"]["naive"] = pgr_ci(results["weak"], results["strong_naive"], results["strong_ceiling"],
                                        seed=cfg.seed).as_dict()
    (out / "w2s.json").write_text(json.dumps(report, indent=1))
    return report
