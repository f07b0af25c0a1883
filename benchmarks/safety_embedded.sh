#!/usr/bin/env bash
# One short embedded-model (SmolLM2-135M-Instruct) run per item of the safety issue (#20), on data the project
# writes (`alignkit safety data ...`). Every command prints or writes its rates with 95 % intervals; docs/safety.md
# ("Embedded-model runs") quotes them. About 30-40 min on an idle 2-core CPU.
#
#   bash benchmarks/safety_embedded.sh OUT_DIR [ITEM ...]     # items: cg cosa honesty dialectical w2s guide restore rmd
set -uo pipefail
HERE=$(dirname "$(realpath "$0")")
OUT=${1:?usage: safety_embedded.sh OUT_DIR [ITEM ...]}
shift
ITEMS=${*:-cg cosa honesty dialectical w2s guide restore rmd}
M=${MODEL:-smollm2-135m-instruct}
mkdir -p "$OUT"
cd "$OUT" || exit 1
ak() { echo "+ alignkit $*" >&2; alignkit "$@"; }
stage() { echo "== $1 $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"; }
LORA=(--set lora.r=16 --set progress=false --overwrite)

ak safety data harmful --n 16 --out h16.jsonl --overwrite
ak safety data benign --n 8 --out b8.jsonl --overwrite
ak safety data qa --out qa.jsonl --overwrite
head -n 24 qa.jsonl > qa_train.jsonl
tail -n +25 qa.jsonl > qa_test.jsonl

for item in $ITEMS; do
  stage "$item"
  case $item in
  cg)  # 3. compliance gap, harmful requests and a benign control
    # the 135M model writes no <accept/> tags and a truncated answer is never compliant: judge whole answers alone
    CG=(--n 2 --no-cot --no-accept-suffix --max-new-tokens 160 --temperature 0.7 --overwrite)
    ak safety compliance --model "$M" --requests h16.jsonl --out-dir cg "${CG[@]}"
    ak safety compliance --model "$M" --requests b8.jsonl --out-dir cg_benign "${CG[@]}" ;;
  cosa)  # 6. CoSA-Score with the heuristic judge, two safety configs per request
    ak safety cosa-prompts --requests h16.jsonl --allowed "" --allowed "Violence;Privacy Violations" \
      --out cosa.jsonl --overwrite
    ak generate --strategy sample --model "$M" --prompts cosa.jsonl --n 1 --temperature 0 --max-new-tokens 48 \
      --out-dir cosa_gen
    ak safety cosa-score --data cosa_gen/samples.jsonl --prompts cosa.jsonl --judge heuristic --out cosa.json ;;
  honesty)  # 7. idk-aware data (ABSOLUTE) from the train questions, LoRA SFT, evaluation on the held-out ones
    ak safety honesty-data --qa qa_train.jsonl --model "$M" --method absolute --m 4 --out abs.jsonl --overwrite
    ak train --model "$M" --data abs.jsonl --objective sft --output-dir honest --set epochs=3 --set lr=2e-4 \
      "${LORA[@]}"
    ak safety honesty-eval --base "$M" --aligned honest/final --qa qa_test.jsonl --out honesty.json ;;
  dialectical)  # 1. poisoned-context data from the train questions, SFT -> DPO, paired eval on held-out items
    ak safety dialectical-data --qa qa_train.jsonl --model "$M" --n 1 --out-dir da --overwrite
    ak safety dialectical-data --qa qa_test.jsonl --out-dir da_test --overwrite
    ak train --model "$M" --data da/sft.jsonl --objective sft --output-dir da_sft --set epochs=3 --set lr=2e-4 \
      "${LORA[@]}"
    ak train --model da_sft/final --data da/pairs.jsonl --objective dpo --output-dir da_dpo --set epochs=2 \
      --set lr=1e-4 "${LORA[@]}"
    ak safety dialectical-eval --model da_dpo/final --base "$M" --items da_test/items.jsonl --out dialectical.json ;;
  w2s)  # 5. weak-to-strong: a tiny weak model's labels train the embedded model; PGR with intervals
    ak safety data classify --out cls.jsonl --overwrite
    ak safety w2s --data cls.jsonl --weak-model tiny-random:2:64 --strong-model "$M" --out-dir w2s \
      --set epochs=1 --set lr=1e-5 --set test_frac=0.3 ;;
  guide)  # 4. guideline library from the harmful + benign requests; guided vs plain greedy answers
    cat h16.jsonl b8.jsonl > hb.jsonl
    ak safety guide-library --model "$M" --prompts hb.jsonl --out library.jsonl --overwrite
    ak generate --strategy guide --model "$M" --prompts hb.jsonl --set library=library.jsonl --set k=6 \
      --max-new-tokens 64 --out-dir guided
    ak generate --strategy sample --model "$M" --prompts hb.jsonl --n 1 --temperature 0 --max-new-tokens 64 \
      --out-dir plain
    python "$HERE/safety_refusal_compare.py" plain/samples.jsonl \
      guided/samples.jsonl --harmful h16.jsonl --out guide.json ;;
  restore)  # 2. fine-tune on the arithmetic task (LoRA, merged by restore), then restore alignment
    ak safety data task --out task.jsonl --overwrite
    ak train --model "$M" --data task.jsonl --objective sft --output-dir task --set lr=2e-4 --set epochs=3 \
      "${LORA[@]}"
    ak restore --aligned "$M" --finetuned task/final --harmful-prompts h16.jsonl --task-data task.jsonl \
      --output-dir restored --set total_steps=10 --overwrite ;;
  rmd)  # 8. ReMoDetect: (llm, mixed, human) triplets, detector training, AUROC on held-out triplets
    ak safety data human --out human.jsonl --overwrite
    ak safety remodetect-data --rows human.jsonl --model "$M" --out triplets.jsonl --overwrite
    head -n 12 triplets.jsonl > rmd_train.jsonl
    tail -n +13 triplets.jsonl > rmd_eval.jsonl
    ak reward train --objective remodetect --model "$M" --data rmd_train.jsonl --eval-data rmd_eval.jsonl \
      --set lr=2e-5 --set batch_size=1 --set max_length=512 --set epochs=2 --output-dir rmd --overwrite ;;
  *) echo "unknown item $item" >&2 ;;
  esac || echo "!! $item failed"
done
stage done
