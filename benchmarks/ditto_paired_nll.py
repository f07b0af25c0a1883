"""Per-turn mean NLL of a Ditto loop's M_0-simulated eval answers, base vs the round-1 model, with a paired
bootstrap over turns (the loop's table reports the pooled NLL only).

  python benchmarks/ditto_paired_nll.py runs/ditto-r1
"""

import json
import sys

from alignkit.decode.hf import HFSampler
from alignkit.evaluate.stats import paired_bootstrap
from alignkit.models import load_model
from alignkit.pipelines.ditto import turn_records

run = sys.argv[1]
dialogues = [json.loads(x) for x in open(f"{run}/iter_0/eval/dialogues.jsonl") if x.strip()]
recs = turn_records(dialogues)


def per_turn(spec: str) -> list[float]:
    m, t = load_model(spec)
    lps = HFSampler(m.eval(), t).score_logprobs([r.prompt for r in recs], [r.completion for r in recs])
    return [-sum(x) / len(x) for x in lps]


base, trained = per_turn("smollm2-135m-instruct"), per_turn(f"{run}/iter_1/train/merged")
print(json.dumps({"turns": len(recs), "base_mean_turn_nll": sum(base) / len(base),
                  "trained_mean_turn_nll": sum(trained) / len(trained),
                  "trained_minus_base": paired_bootstrap(trained, base).as_dict()}))
