"""`alignkit generate`: run a test-time alignment strategy over a prompt file and write `samples.jsonl`.

Prompt rows: `prompt` (string or chat messages), optional `id`, `constraints`, `references` (given to the reward as
context). Output rows: id, prompt, completion, candidates, scores, compute (forward/generated tokens, reward
calls), strategy, info; `reward` holds the final completion's reward when `--reward` is given (evaluation only,
not counted in compute). The run directory also gets `config.yaml`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from alignkit.cli import add_command
from alignkit.errors import ConfigError, DataError

EXAMPLES = """\
  alignkit generate --strategy sample --model smollm2-135m-instruct --prompts prompts.jsonl --n 4 --out-dir runs/s
  alignkit generate --strategy bon --model smollm2-135m-instruct --prompts prompts.jsonl --reward csr_loose \\
      --n 8 --out-dir runs/bon
  alignkit generate --strategy bon --prompts p.jsonl --n 16 --set select_by=vote --set extractor=last_number \\
      --out-dir runs/mv
  alignkit generate --strategy qalign --prompts p.jsonl --reward my_rm.py:score --n 64 --set beta=0.5 \\
      --out-dir runs/qalign                                  # --n = chain steps
  alignkit generate --strategy deal --prompts p.jsonl --reward keyword:ocean,blue --set top_k=5 \\
      --set lookahead=8 --out-dir runs/deal
  alignkit generate --strategy nudge --model BASE_DIR --nudger smollm2-135m-instruct --prompts p.jsonl \\
      --set gamma=0.4 --out-dir runs/nudge
  alignkit generate --strategy urial --model BASE_DIR --prompts p.jsonl --out-dir runs/urial
  alignkit generate --strategy steer --prompts p.jsonl --set vector=v.safetensors --set alpha=4 \\
      --set "layers=[10, 11]" --out-dir runs/steer
  alignkit generate --strategy steer --prompts p.jsonl --set pairs=pairs.jsonl --set layers=15 --set alpha=4 \\
      --out-dir runs/steer       # extract the vector from {"positive", "negative"} rows first
  alignkit generate --strategy sample --prompts p.jsonl --system "You value brevity." --out-dir runs/janus
  alignkit generate --strategy guide --prompts p.jsonl --set library=library.jsonl --set k=6 \
      --max-new-tokens 512 --out-dir runs/guided      # Guide-Align; embedder=policy (default) or a model spec
  alignkit generate --strategy sample --model runs/steerlm/final --prompts p.jsonl --temperature 0 \
      --attributes helpfulness:4,correctness:4,coherence:4,complexity:2,verbosity:1 --out-dir runs/steered
options per strategy (--set key=value): see `alignkit.decode.strategies` or the error message for an unknown key.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from alignkit.data.tokenize import TEMPLATES
    from alignkit.decode.strategies import STRATEGIES

    p = add_command(sub, "generate", "Generate with a test-time alignment strategy (sampling, best-of-n, QAlign, "
                    "DeAL, nudging, URIAL, steering, guidelines).", EXAMPLES)
    p.add_argument("--strategy", required=True, choices=sorted(STRATEGIES))
    p.add_argument("--model", default="smollm2-135m-instruct", help="model spec (default: the embedded model)")
    p.add_argument("--prompts", required=True, metavar="PROMPTS",
                   help="prompt file (JSONL/JSON/Parquet/CSV/datasets folder), suite:test, or a cached hub id")
    p.add_argument("--split", help="split of a datasets folder or hub dataset (also NAME:SPLIT)")
    p.add_argument("--reward", metavar="SPEC", help="reward spec (alignkit.rewards.registry), e.g. csr_loose")
    p.add_argument("--n", type=int, default=None,
                   help="samples per prompt (sample, bon) or chain steps (qalign)")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=None,
                   help="sampling temperature (sample/bon/steer: default 1.0; URIAL: 0 = greedy)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8, help="prompts per strategy call (default 8)")
    p.add_argument("--nudger", metavar="MODEL", help="aligned nudging model (strategy nudge)")
    p.add_argument("--system", metavar="TEXT", help="system message for every prompt (CoSA config, Janus value)")
    p.add_argument("--system-mode", choices=["system", "prepend"], default="system")
    p.add_argument("--attributes", metavar="NAME:V,...", help="SteerLM attribute request for every prompt, e.g. "
                   "helpfulness:4,verbosity:1 (or name=value), 0..4; written as the training data's `Attributes:` "
                   "line of the system message")
    p.add_argument("--raw", action="store_true", help="feed string prompts verbatim (base models); implied by "
                   "urial and nudge; the same as --template chat-only")
    p.add_argument("--template", choices=TEMPLATES, default="auto",
                   help="plain-string prompts as in training: auto (chat template if any), never, always, "
                   "chat-only (TRL's: only chat-message prompts are templated)")
    p.add_argument("--chat-template", metavar="FILE", help="a Jinja chat template file replacing the tokenizer's "
                   "(as train --chat-template)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="strategy option (repeatable)")
    p.set_defaults(func=cmd_generate)


def _read_prompts(path: str, split: str | None = None) -> tuple[list[Any], list[dict[str, Any]], list[Any]]:
    """Prompts, reward contexts and ids through the one reader (`read_records`, kind prompt), so `suite:test`,
    Parquet, `datasets` folders, cached hub ids and `--split` work here as in every command (issue #16.4)."""
    from alignkit.data.build.common import load_prompts

    records = load_prompts(path, split)
    prompts = [r.prompt for r in records]
    contexts = [{k: v for k, v in (("constraints", r.constraints), ("references", r.references)) if v}
                for r in records]
    ids = [r.metadata.get("id", i) for i, r in enumerate(records)]
    return prompts, contexts, ids


def _layer_list(value: Any) -> list[int] | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    try:
        return [int(x) for x in items]
    except (TypeError, ValueError) as e:
        raise ConfigError(f"steering layers must be an int or a list of ints (e.g. --set 'layers=[10, 11]'), "
                          f"got {value!r}") from e


def _read_pairs(path: str) -> list[tuple[str, str]]:
    """Contrastive pairs for steering: rows with `positive`/`negative` (or `chosen`/`rejected`) texts."""
    from alignkit.data.io import read_jsonl

    pairs = []
    for line, row in enumerate(read_jsonl(path), start=1):
        keys = ("positive", "negative") if "positive" in row or "negative" in row else ("chosen", "rejected")
        for k in keys:
            if not isinstance(row.get(k), str) or not row[k].strip():
                raise DataError(f"needs a non-empty string '{k}' (steering pairs have positive/negative or "
                                "chosen/rejected texts)", source=path, line=line, field=k)
        pairs.append((row[keys[0]], row[keys[1]]))
    if not pairs:
        raise DataError("no contrastive pairs", source=path)
    return pairs


def _steering_vector(model: Any, tok: Any, options: dict[str, Any], out_dir: Path
                     ) -> tuple[Any, list[int] | None, dict[str, Any]]:
    """The steering vector from `--set vector=V.safetensors`, or extracted here from `--set pairs=PAIRS.jsonl`
    (at `layers`, default the middle decoder block; `method` mean_diff|pca; `template` formats each text) and
    saved to OUT_DIR/steering_vector.safetensors for reuse. Returns (vector, layers to steer or None = all, what
    to record in config.yaml)."""
    from alignkit.decode.steer import SteeringVector, decoder_layers, extract_steering_vector

    vec_path, pairs_path = options.pop("vector", None), options.pop("pairs", None)
    method, template = options.pop("method", "mean_diff"), options.pop("template", "{}")
    layers = _layer_list(options.pop("layers", None))
    if vec_path and pairs_path:
        raise ConfigError("strategy steer takes --set vector=... or --set pairs=..., not both")
    if vec_path:
        return SteeringVector.load(vec_path), layers, {"vector": str(vec_path), "layers": layers}
    if not pairs_path:
        raise ConfigError("strategy steer needs --set vector=PATH.safetensors (a saved vector) or --set "
                          "pairs=PAIRS.jsonl (contrastive rows with positive/negative texts; see alignkit.decode.steer)")
    if layers is None:
        layers = [len(decoder_layers(model)) // 2]
    vector = extract_steering_vector(model, tok, _read_pairs(str(pairs_path)), layers, method=str(method),
                                     template=str(template))
    out_dir.mkdir(parents=True, exist_ok=True)
    saved = vector.save(out_dir / "steering_vector.safetensors")
    return vector, layers, {"pairs": str(pairs_path), "method": method, "template": template, "layers": layers,
                            "vector": str(saved)}


def _guided_sampler(sampler: Any, model: Any, tok: Any, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Strategy guide: a `GuidedSampler` over `--set library=LIB.jsonl` (`alignkit safety guide-library`), with
    `k` (6), `n_docs` (20), `max_ratio` (0.5) and `embedder`: `policy` (default: the generating model's mean-pooled
    hidden states, no extra download) or any model spec whose hidden states embed instead."""
    from alignkit.data.io import read_rows
    from alignkit.decode.guide import GuidedSampler, GuidelineRetriever, hidden_state_embedder
    from alignkit.models import load_model

    library = options.pop("library", None)
    if not library:
        raise ConfigError("strategy guide needs --set library=LIB.jsonl (rows with a guideline `text`; build one "
                          "with `alignkit safety guide-library`)")
    embedder = str(options.pop("embedder", "policy"))
    k, n_docs = int(options.pop("k", 6)), int(options.pop("n_docs", 20))
    max_ratio = float(options.pop("max_ratio", 0.5))
    e_model, e_tok = (model, tok) if embedder == "policy" else load_model(embedder)
    rows = [row for _, row in read_rows(str(library))[1]]
    try:
        retriever = GuidelineRetriever(rows, hidden_state_embedder(e_model, e_tok))
    except DataError as e:
        raise DataError(e.reason, source=str(library), line=e.line, field=e.field) from e
    record = {"library": str(library), "guidelines": len(rows), "embedder": embedder, "k": k, "n_docs": n_docs,
              "max_ratio": max_ratio}
    return GuidedSampler(sampler, retriever, k, n_docs, max_ratio), record


def cmd_generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from alignkit.config import parse_override
    from alignkit.data.io import write_jsonl
    from alignkit.decode.common import score
    from alignkit.decode.hf import HFSampler
    from alignkit.decode.strategies import run_strategy
    from alignkit.decode.system import ComposedSampler, system_composer
    from alignkit.models import load_model
    from alignkit.rewards.registry import load_reward

    options: dict[str, Any] = dict(parse_override(o) for o in args.overrides)
    prompts, contexts, ids = _read_prompts(args.prompts, args.split)
    reward = load_reward(args.reward) if args.reward else None
    # spec_reject's ranker of partial completions (--set partial_reward=SPEC): loaded once, config.yaml keeps the spec
    spec = options.get("partial_reward")
    partial_reward = load_reward(spec) if isinstance(spec, str) else None
    strategy = args.strategy
    raw = args.raw or strategy in ("urial", "nudge")
    model, tok = load_model(args.model, chat_template=args.chat_template)  # as training loads it (issue #16.5)
    # strategies that call the model again on shared prefixes reuse their KV (issue 18); plain sampling needs none
    cache_mb = 1024 if strategy in ("qalign", "deal", "spec_reject", "nudge", "moral_filter") else 0
    sampler: Any = HFSampler(model, tok, raw=raw, template=args.template, prefix_cache_mb=cache_mb)
    template = sampler.template  # --raw (or urial, nudge) is chat-only; recorded in config.yaml
    nudger, steering = None, None
    if strategy == "nudge":
        if not args.nudger:
            raise ConfigError("strategy nudge needs --nudger MODEL (a small aligned chat model)")
        n_model, n_tok = load_model(args.nudger)
        nudger = HFSampler(n_model, n_tok)
    out_dir = Path(args.out_dir)
    if strategy == "steer":
        from alignkit.decode.steer import SteeredSampler

        vector, layers, steering = _steering_vector(model, tok, options, out_dir)
        steering["alpha"] = float(options.pop("alpha", 1.0))
        sampler = SteeredSampler(sampler, vector, steering["alpha"], layers)
    attributes = None
    if args.attributes:  # the training slot (alignkit.data.steerlm.with_attributes); rewards see the plain prompt
        from alignkit.data.steerlm import requested_attributes, with_attributes

        if raw:
            raise ConfigError("--attributes goes into a chat prompt's system message; it cannot be combined with "
                              "--raw, urial or nudge")
        attributes = requested_attributes(args.attributes)
        sampler = ComposedSampler(sampler, lambda prompt: with_attributes(prompt, attributes))
    guide = None
    if strategy == "guide":  # inside the system-message wrapper, so the block joins the system message
        sampler, guide = _guided_sampler(sampler, model, tok, options)
    if args.system:  # wraps outside the attributes and guidelines so the system message ends with them
        sampler = ComposedSampler(sampler, system_composer(args.system, args.system_mode))
        if nudger is not None:
            nudger = ComposedSampler(nudger, system_composer(args.system, args.system_mode))
    if args.n is not None:
        options["steps" if strategy == "qalign" else "n"] = args.n
    if strategy not in ("nudge",):
        options.setdefault("max_new_tokens", args.max_new_tokens)
    else:
        options.setdefault("max_tokens", args.max_new_tokens)
    if args.temperature is not None:
        options.setdefault("temperature", args.temperature)
    if strategy in ("sample", "bon", "qalign", "steer", "urial", "spec_reject", "guide", "moral_filter"):
        options.setdefault("seed", args.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {"strategy": strategy, "model": args.model, "prompts": args.prompts, "reward": args.reward,
              "nudger": args.nudger, "system": args.system, "system_mode": args.system_mode, "attributes": attributes,
              "raw": raw, "template": template, "chat_template": args.chat_template,
              "batch_size": args.batch_size, "options": options}
    if steering is not None:
        config["steering"] = steering
    if guide is not None:
        config["guide"] = guide
    import yaml

    (out_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(prompts), desc=f"generate/{strategy}", unit="prompt")
    for start in range(0, len(prompts), max(1, args.batch_size)):
        sl = slice(start, start + max(1, args.batch_size))
        batch, ctx = prompts[sl], contexts[sl]
        call_opts = dict(options)
        if "seed" in call_opts and call_opts["seed"] is not None:
            call_opts["seed"] = int(call_opts["seed"]) + start  # distinct streams per batch, reproducible
        if partial_reward is not None:  # the loaded reward in place of its spec
            call_opts["partial_reward"] = partial_reward
        results = run_strategy(strategy, sampler, batch, reward=reward, contexts=ctx, nudger=nudger, **call_opts)
        final = score(reward, batch, [r.completion for r in results], ctx) if reward is not None else None
        for k, r in enumerate(results):
            row = {"id": ids[start + k], **r.as_dict(), "strategy": strategy}
            if attributes is not None:
                row["attributes"] = attributes
            if final is not None:
                row["reward"] = final[k]
            rows.append(row)
        bar.update(len(batch))
    bar.close()
    write_jsonl(out_dir / "samples.jsonl", rows)
    total = {k: sum(r["compute"][k] for r in rows) for k in rows[0]["compute"]}
    summary = {"prompts": len(rows), "compute": total}
    if reward is not None:
        summary["mean_reward"] = sum(r["reward"] for r in rows) / len(rows)
    print(json.dumps(summary))
    return 0
