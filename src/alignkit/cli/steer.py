"""`alignkit steer search`: Personality Activation Search for one user's questionnaire (alignkit.decode.pas_search)."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from alignkit.cli import add_command

EXAMPLES = """  alignkit steer search --model smollm2-135m-instruct --items ipip_items.jsonl --user user42.json \\
      --out runs/pas/user42.safetensors                  # heads, directions, sigma and the chosen alpha
  alignkit steer search --model M --items I --user U --out O --heads 48 --alphas 0,2,4,8 --holdout 0.25
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "steer", "Head-level activation steering searched for one user (PAS).", EXAMPLES)
    verbs = p.add_subparsers(dest="steer_command", metavar="VERB")
    s = add_command(verbs, "search", "fit PAS heads and choose alpha on held-out train items", EXAMPLES,
                    description="Fit PAS (spec wave2_selfalign_merge.md §4): probe every attention head on the "
                    "user's known items, keep the top heads' mass-mean directions, choose alpha on a stratified "
                    "held-out part of the known items, then report the test-item MAE.")
    s.add_argument("--model", required=True, help="model spec (a Llama/Mistral/Qwen-style decoder with o_proj)")
    s.add_argument("--items", required=True, help="item bank JSONL {id, text, trait, key}")
    s.add_argument("--user", required=True, help="user JSON {user_id, answers, train_items, test_items}")
    s.add_argument("--out", required=True, help="artefact path (.safetensors)")
    s.add_argument("--heads", type=int, default=24, help="heads to steer (K; PAlign's process_pas uses 24)")
    s.add_argument("--alphas", default="0,1,2,4,6,8", help="intensity grid (comma-separated)")
    s.add_argument("--holdout", type=float, default=0.2, help="share of known items, per trait, held out for alpha")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    s.set_defaults(func=search)
    p.set_defaults(func=lambda _a: p.print_help() or 0)


def search(args: argparse.Namespace) -> int:
    from pathlib import Path

    from alignkit.decode.hf import HFSampler
    from alignkit.decode.pas_search import pas_search, read_bank, read_user
    from alignkit.errors import ConfigError
    from alignkit.models import load_model

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite to replace it")
    try:
        alphas = [float(a) for a in args.alphas.split(",") if a.strip()]
    except ValueError as e:
        raise ConfigError(f"--alphas must be comma-separated numbers, got {args.alphas!r}") from e
    bank = read_bank(args.items)
    user = read_user(args.user, bank)
    model, tokenizer = load_model(args.model)
    art, report = pas_search(HFSampler(model, tokenizer), bank, user, k=args.heads, alphas=alphas,
                             holdout=args.holdout, seed=args.seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    art.save(out, {"model": args.model, "user_id": str(user.get("user_id", ""))})
    # strict JSON: an α under which no answer parsed has MAE inf, written as null
    out.with_suffix(".json").write_text(json.dumps(_nan_to_null(report), indent=2, allow_nan=False), encoding="utf-8")
    print(f"alpha* = {art.alpha:g} (sum of per-trait MAE on {len(report['alpha_items'])} held-out train items: "
          + ", ".join(f"{a:g}: {v:.3f}" for a, v in report["alpha_table"].items()) + ")")
    if "test_mae_sum" in report:
        print(f"test items: sum of per-trait MAE {report['test_mae_sum']:.3f} at alpha*, "
              f"{report['test_mae_sum_alpha0']:.3f} at alpha 0 (persona prompt only)")
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


def _nan_to_null(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_null(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nan_to_null(v) for v in x]
    return x
