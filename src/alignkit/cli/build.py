"""`alignkit data build`: preference data from a policy's samples (verifier, reference, reward, judge) or from
conversations (feedback). A thin layer over `alignkit.data.build`; the `data` verb group adds it via
`add_build_parser`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from alignkit.cli import add_command
from alignkit.errors import ConfigError

SOURCES = ("verifier", "reference", "reward", "judge", "feedback", "corrections", "steerlm", "steerlm2", "seq2seq-rm",
           "feedback-model", "language-feedback")

EXAMPLES = """\
  alignkit data build --from verifier --policy smollm2-135m-instruct --prompts suite:train --n 4 --out act.jsonl
  alignkit data build --from verifier --policy tiny-random --prompts suite:train --format listwise --out lists.jsonl
  alignkit data build --from reference --policy smollm2-135m-instruct --prompts refs.jsonl --select hard \\
      --fraction 0.25 --out hard_pairs.jsonl
  alignkit data build --from reward --reward "keyword:cat,neighbour" --policy tiny-random --prompts p.jsonl \\
      --out pairs.jsonl
  alignkit data build --from judge --policy smollm2-135m-instruct --judge smollm2-135m-instruct \\
      --prompts suite:train --n 3 --out judged.jsonl
  alignkit data build --from feedback --conversations chats.jsonl --format unpaired --out kto.jsonl
  alignkit data build --from corrections --corrections edits.jsonl --out ddpo_pairs.jsonl   # then --objective ddpo
  alignkit data build --from feedback-model --critiques crit.jsonl --out fm_sft.jsonl   # {prompt, response, feedback}
  alignkit data build --from language-feedback --policy smollm2-135m-instruct --feedback-model runs/fm/final \
      --prompts suite:train --out llf_pairs.jsonl                                          # then --objective dpo
  alignkit data build --from seq2seq-rm --pairwise pairs.jsonl --out s2s_sft.jsonl   # seq2seq RM data (sft)
  alignkit data build --from steerlm --scored helpsteer2.jsonl --out steerlm_sft.jsonl      # then --objective sft
  alignkit data build --from steerlm2 --policy RUN/final --reward rm:ATTR_RM --prompts p.jsonl --n 8 \
      --attributes helpfulness:4,correctness:4,coherence:4,complexity:2,verbosity:2 --out groups.jsonl
Rerun the same command to resume: prompts already in OUT are skipped. --limit K stops after K new prompts.
Prompt files are JSONL with `prompt` (string or chat messages) and optional `id`, `constraints`
(or IFEval's `instruction_id_list`/`kwargs`) and `references`; `suite:train`/`suite:test` is the shipped suite.
"""


def add_build_parser(data_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `build` under the `data` verb group."""
    p = add_command(data_subparsers, "build", "Build pairwise or listwise preference data from samples, "
                    "verifiers, references, reward models, an LM judge or user feedback.", EXAMPLES)
    p.add_argument("--from", dest="source", required=True, choices=SOURCES, help="builder")
    p.add_argument("--out", required=True, help="output .jsonl (append-only; resumable)")
    p.add_argument("--prompts", help="prompt file (JSONL/JSON/Parquet/CSV/datasets folder), suite:train / "
                   "suite:test, or a cached hub dataset id")
    p.add_argument("--split", help="split of a datasets folder or hub dataset given as --prompts")
    p.add_argument("--conversations", help="(feedback) JSONL of {'messages': [...]} conversations")
    p.add_argument("--policy", help="policy model spec (tiny-random, smollm2-135m-instruct, a local directory)")
    p.add_argument("--format", choices=("pairwise", "listwise", "unpaired"), default="pairwise",
                   help="output kind (feedback: pairwise or unpaired; others: pairwise or listwise)")
    p.add_argument("--pairs", choices=("best-vs-worst", "all"), default="best-vs-worst",
                   help="pairwise: best vs worst per prompt, or every pair with a score gap")
    p.add_argument("--reward", help="reward spec (verifier default: csr; reference default: bleu; reward: "
                                    "required, e.g. ifeval, keyword:a,b, module:function)")
    p.add_argument("--min-margin", type=float, default=0.0, help="(reward) pairs with a smaller gap are ties")
    p.add_argument("--n", type=int, default=4, help="samples per prompt (default 4)")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8, help="prompts per sampler call")
    p.add_argument("--limit", type=int, help="stop after this many newly processed prompts")
    p.add_argument("--overwrite", action="store_true", help="start again instead of resuming")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--report", help="also write the build report as JSON here")
    g = p.add_argument_group("reference (BLEUBERI hard-prompt selection)")
    g.add_argument("--select", choices=("hard", "easy", "random", "all"), default="hard")
    g.add_argument("--fraction", type=float, help="keep this fraction of prompts")
    g.add_argument("--num", type=int, help="keep this many prompts")
    g.add_argument("--threshold", type=float, help="hard: mean score <= T; easy: mean score >= T")
    g = p.add_argument_group("judge")
    g.add_argument("--judge", help="judge model spec (may equal --policy)")
    g.add_argument("--judge-template", help="file with a prompt template holding {prompt} and {responses}")
    g.add_argument("--judge-max-new-tokens", type=int, default=32)
    g.add_argument("--judge-temperature", type=float, default=0.0)
    g.add_argument("--judge-retries", type=int, default=2)
    g = p.add_argument_group("feedback")
    g.add_argument("--classifier", default="rules", help="'rules' (default) or a model spec for the LM classifier")
    g = p.add_argument_group("corrections (DDPO pairs from edited answers)")
    g.add_argument("--corrections", help="JSONL of {prompt, answer, edited[, chosen_spans, rejected_spans]} rows")
    g.add_argument("--max-edit-fraction", type=float, help="drop rows whose edit touches more than this share of "
                                                           "the words (not a correction; default: keep all)")
    g.add_argument("--feedback-source", default="human_correction", help="provenance written to each record")
    g = p.add_argument_group("steerlm / steerlm2 (attribute-conditioned SFT, SteerLM 2.0 groups)")
    g.add_argument("--scored", help="(steerlm) scored JSONL {prompt, completion, attributes}")
    g.add_argument("--attributes", help="(steerlm) attributes to keep, comma-separated; (steerlm2) default target "
                                        "string name:value,... for prompts without `attributes`")
    g.add_argument("--sft-model", help="(steerlm2) the SFT model P(y|x) (default: --policy)")
    p.add_argument("--pairwise", help="(seq2seq-rm) pairwise JSONL {prompt, chosen, rejected}")
    g = p.add_argument_group("language feedback (Align Anything LLF)")
    g.add_argument("--critiques", help="(feedback-model) JSONL {prompt, response, feedback}")
    g.add_argument("--feedback-model", help="(language-feedback) the feedback model or any judge model spec")
    g.add_argument("--critique-max-new-tokens", type=int, default=256)
    g.add_argument("--round", type=int, default=0, help="(language-feedback) round index written to each pair")
    p.set_defaults(func=cmd_build)
    return p


def _sampler(spec: str, seed: int) -> Any:
    from alignkit.decode.hf import HFSampler
    from alignkit.models import load_model

    model, tokenizer = load_model(spec, seed=seed)
    return HFSampler(model, tokenizer)


def _require(args: argparse.Namespace, *names: str) -> None:
    missing = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) in (None, "")]
    if missing:
        raise ConfigError(f"--from {args.source} needs {', '.join(missing)}")


def cmd_build(args: argparse.Namespace) -> int:
    from alignkit.data import build as b

    common = {"batch_size": args.batch_size, "overwrite": args.overwrite, "progress": not args.no_progress,
              "limit": args.limit}
    if args.source == "feedback":
        _require(args, "conversations")
        if args.format not in ("pairwise", "unpaired"):
            raise ConfigError("--from feedback writes --format pairwise or unpaired")
        classifier = (b.RuleBasedFeedbackClassifier() if args.classifier == "rules"
                      else b.LMFeedbackClassifier(_sampler(args.classifier, args.seed), name=args.classifier))
        report = b.run_build(b.FeedbackBuilder(classifier, fmt=args.format), b.load_conversations(args.conversations),
                             args.out, **common)
        return _finish(report, args)
    if args.source == "corrections":
        _require(args, "corrections")
        if args.format != "pairwise":
            raise ConfigError("--from corrections writes --format pairwise")
        builder = b.CorrectionsBuilder(args.feedback_source, args.max_edit_fraction)
        return _finish(b.run_build(builder, b.load_corrections(args.corrections), args.out, **common), args)
    if args.source == "feedback-model":
        _require(args, "critiques")
        from alignkit.data.build.language_feedback import feedback_sft_records
        from alignkit.data.io import read_jsonl, write_records

        records = feedback_sft_records(list(read_jsonl(args.critiques)), source=args.critiques)
        if not args.overwrite and Path(args.out).exists():
            raise ConfigError(f"{args.out} exists; pass --overwrite to replace it")
        write_records(args.out, records)
        print(f"{len(records)} feedback-model SFT records written to {args.out}", file=sys.stderr)
        return 0
    if args.source == "seq2seq-rm":
        _require(args, "pairwise")
        from alignkit.data.build.seq2seq import Seq2SeqRMBuilder, pair_items
        from alignkit.data.io import read_records

        pairs = read_records(args.pairwise, kind="pairwise").records
        return _finish(b.run_build(Seq2SeqRMBuilder(), pair_items(pairs), args.out, **common), args)
    if args.source == "steerlm":
        _require(args, "scored")
        from alignkit.data.io import read_records

        scored = read_records(args.scored, kind="scored").records
        attrs = [a.strip() for a in args.attributes.split(",")] if args.attributes else None
        return _finish(b.run_build(b.SteerLMBuilder(attrs), b.scored_items(scored), args.out, **common), args)
    _require(args, "prompts", "policy", *{"reward": ["reward"], "judge": ["judge"], "steerlm2": ["reward"],
                                          "language-feedback": ["feedback_model"]}.get(args.source, []))
    if args.format == "unpaired":
        raise ConfigError(f"--from {args.source} writes --format pairwise or listwise")
    sampling = b.SamplingSettings(n=args.n, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                  top_p=args.top_p, top_k=args.top_k, seed=args.seed)
    items = b.items_from_prompts(b.load_prompts(args.prompts, args.split))
    reward = None
    if args.reward:
        from alignkit.rewards.registry import load_reward

        reward = load_reward(args.reward)
    policy = _sampler(args.policy, args.seed)
    named = {"policy_name": args.policy}
    if args.source == "verifier":
        builder: Any = b.VerifierBuilder(policy, reward, sampling, fmt=args.format, pair_mode=args.pairs,
                                         reward_spec=args.reward, **named)
    elif args.source == "reward":
        builder = b.RewardBuilder(policy, reward, sampling, fmt=args.format, pair_mode=args.pairs,
                                  min_margin=args.min_margin, reward_spec=args.reward, **named)
    elif args.source == "language-feedback":
        from alignkit.data.build.language_feedback import LanguageFeedbackBuilder

        fb = policy if args.feedback_model == args.policy else _sampler(args.feedback_model, args.seed)
        one = b.SamplingSettings(n=1, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                 top_p=args.top_p, top_k=args.top_k, seed=args.seed)
        builder = LanguageFeedbackBuilder(policy, fb, one, critique_max_new_tokens=args.critique_max_new_tokens,
                                          reward=reward, round_index=args.round, feedback_name=args.feedback_model,
                                          reward_spec=args.reward or "", **named)
    elif args.source == "steerlm2":
        sft = _sampler(args.sft_model, args.seed) if args.sft_model and args.sft_model != args.policy else None
        builder = b.SteerLM2Builder(policy, reward, sft, sampling, targets=args.attributes,
                                    sft_name=args.sft_model or "", reward_spec=args.reward, **named)
    elif args.source == "judge":
        judge = policy if args.judge == args.policy else _sampler(args.judge, args.seed)
        template = {}
        if args.judge_template:
            with open(args.judge_template, encoding="utf-8") as f:
                template["template"] = f.read()
        builder = b.JudgeBuilder(policy, judge, sampling, fmt=args.format, pair_mode=args.pairs,
                                 judge_max_new_tokens=args.judge_max_new_tokens,
                                 judge_temperature=args.judge_temperature, max_retries=args.judge_retries,
                                 judge_name=args.judge, **template, **named)
    else:
        report = b.build_reference(policy, items, args.out, reward=reward, sampling=sampling, fmt=args.format,
                                   select=args.select, fraction=args.fraction, num=args.num,
                                   threshold=args.threshold, reward_spec=args.reward, **named, **common)
        return _finish(report, args)
    return _finish(b.run_build(builder, items, args.out, **common), args)


def _finish(report: Any, args: argparse.Namespace) -> int:
    print(report.summary(), file=sys.stderr)
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            json.dump(report.as_dict(), f, indent=2)
    return 0
