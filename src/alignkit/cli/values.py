"""`alignkit values`: value and information-alignment analyses — PROFILE factor influence, AlignScore with a
user-supplied alignment model, and the moral direction as a steering vector."""

from __future__ import annotations

import argparse
import json

from alignkit.cli import add_command

EXAMPLES = """  alignkit values profile factors.jsonl                      # τ_f per factor, per `source`, and their alignment
  alignkit values alignscore pairs.jsonl --alignment-model DIR   # rows {"context", "claim"}
  alignkit values alignscore pairs.jsonl --judge-model smollm2-135m-instruct   # a causal LM asked yes/no
  alignkit values ctc summaries.jsonl --aspect consistency --aligner-model smollm2-135m-instruct  # {output, input}
  alignkit values moral-vector --model smollm2-135m-instruct --layers 10 --out moral.safetensors
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "values", "Value analyses: PROFILE factor-level preferences, AlignScore, moral direction.",
                    EXAMPLES)
    verbs = p.add_subparsers(dest="values_command", metavar="VERB")

    def leaf(name: str, help: str) -> argparse.ArgumentParser:
        return verbs.add_parser(name, help=help, description=help, epilog="examples:\n" + EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)

    pr = leaf("profile", "factor influence τ_f per preference source, and source agreement")
    pr.add_argument("data", help="JSONL rows with chosen_factors / rejected_factors (and optional source)")
    pr.add_argument("--top-k", type=int, default=3)
    pr.set_defaults(func=_profile)
    al = leaf("alignscore", "AlignScore of claims against contexts (nli_sp chunking)")
    al.add_argument("data", help="JSONL rows with context and claim")
    which = al.add_mutually_exclusive_group(required=True)
    which.add_argument("--alignment-model", help="local HF sequence-classification directory (AlignScore's)")
    which.add_argument("--judge-model", help="a causal LM asked whether each claim is supported: "
                       "P(Yes) / (P(Yes) + P(No))")
    al.add_argument("--label-index", type=int, default=0, help="softmax column of ALIGNED (AlignScore: 0)")
    al.add_argument("--chunk-words", type=int, default=350)
    al.set_defaults(func=_alignscore)
    ct = leaf("ctc", "a CTC aspect (consistency, relevance, preservation, engagingness, groundedness)")
    ct.add_argument("data", help="JSONL rows with output and input (references / fact, history as the aspect needs)")
    ct.add_argument("--aspect", required=True, choices=("consistency", "relevance", "preservation", "engagingness",
                                                         "groundedness"))  # = alignment_metrics.CTC_ASPECTS
    ct.add_argument("--aligner-model", required=True, help="model whose hidden states embed tokens (CTC's E "
                    "aligner; any local HF model, e.g. the policy)")
    ct.add_argument("--layer", type=int, default=-1, help="hidden-state layer (default: the last)")
    ct.add_argument("--remove-stopwords", action=argparse.BooleanOptionalAction, default=None,
                    help="default: on for the dialog aspects, off otherwise (the code's defaults)")
    ct.set_defaults(func=_ctc)
    mv = leaf("moral-vector", "the moral direction in a policy's hidden space (a steer vector)")
    mv.add_argument("--model", required=True)
    mv.add_argument("--layers", type=int, nargs="+", required=True)
    mv.add_argument("--method", choices=["mean_diff", "pca"], default="mean_diff")
    mv.add_argument("--out", required=True, help="safetensors file to write (refused if it exists)")
    mv.set_defaults(func=_moral_vector)
    p.set_defaults(func=lambda _a: p.print_help() or 0)


def _profile(args: argparse.Namespace) -> int:
    from alignkit.evaluate.profile import factor_alignment, profile, read_factor_pairs

    groups = read_factor_pairs(args.data)
    taus = {}
    for src, rows in sorted(groups.items()):
        res = profile(rows)
        taus[src] = {f: v["tau"] for f, v in res.items()}
        print(f"[{src}] {len(rows)} pairs")
        for f, v in sorted(res.items(), key=lambda kv: -abs(kv[1]["tau"])):
            ci = f" [{v['low']:+.2f}, {v['high']:+.2f}]" if "low" in v else ""
            print(f"  {f:<24} τ={v['tau']:+.3f}{ci}  ({v['concordant']}+/{v['discordant']}−/{v['ties']} tied)")
    names = sorted(taus)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            print(f"{a} vs {b}: {json.dumps(factor_alignment(taus[a], taus[b], args.top_k))}")
    return 0


def _alignscore(args: argparse.Namespace) -> int:
    from pathlib import Path

    from alignkit.errors import DataError
    from alignkit.evaluate.alignment_metrics import HFAlignment, LMJudgeAlignment, align_scores

    contexts, claims = [], []
    for i, line in enumerate(Path(args.data).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            row = json.loads(line)
            for key in ("context", "claim"):
                if not isinstance(row.get(key), str):
                    raise DataError("expected a string", source=args.data, line=i, field=key)
            contexts.append(row["context"])
            claims.append(row["claim"])
    if args.judge_model:
        from alignkit.decode.hf import HFSampler
        from alignkit.models import load_model

        model, tok = load_model(args.judge_model)
        align = LMJudgeAlignment(HFSampler(model.eval(), tok))
    else:
        align = HFAlignment(args.alignment_model, args.label_index)
    est, _ = align_scores(contexts, claims, align, chunk_words=args.chunk_words)
    print(f"AlignScore {est.value:.4f} [{est.low:.4f}, {est.high:.4f}] over {len(claims)} claims")
    return 0


def _ctc(args: argparse.Namespace) -> int:
    from alignkit.data.io import read_rows
    from alignkit.errors import DataError
    from alignkit.evaluate.alignment_metrics import CTC_ASPECTS, EmbeddingAligner, ctc_score
    from alignkit.models import load_model

    rows = []
    for line, row in read_rows(args.data)[1]:
        for key in ("output", *CTC_ASPECTS[args.aspect]):
            v = row.get(key)
            if key == "references" and not (isinstance(v, list) and v and all(isinstance(x, str) for x in v)):
                raise DataError("expected a non-empty list of strings", source=args.data, line=line, field=key)
            if key != "references" and not isinstance(v, str):
                raise DataError("expected a string", source=args.data, line=line, field=key)
        rows.append(row)
    model, tok = load_model(args.aligner_model)
    est, _ = ctc_score(rows, args.aspect, EmbeddingAligner(model, tok, args.layer), args.remove_stopwords)
    print(f"CTC {args.aspect} {est.value:.4f} [{est.low:.4f}, {est.high:.4f}] over {len(rows)} rows")
    return 0


def _moral_vector(args: argparse.Namespace) -> int:
    from pathlib import Path

    from alignkit.decode.moral import moral_steering_vector
    from alignkit.errors import ConfigError
    from alignkit.models import load_model

    if Path(args.out).exists():
        raise ConfigError(f"{args.out} exists; choose another --out")
    model, tok = load_model(args.model)
    vec = moral_steering_vector(model, tok, args.layers, args.method)
    vec.save(args.out)
    print(f"wrote {args.out} (layers {vec.layers})")
    return 0
