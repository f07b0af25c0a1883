"""Short PAS run on the embedded model (issue 21 item 3): does steering the top attention heads at the α chosen on
held-out *train* items answer a user's *test* questionnaire items closer to the user than α = 0?

No IPIP-NEO bank ships, so the questionnaire is written here: 50 short Big-Five statements (10 per trait O, C, E,
A, N; half "+" and half "−" keyed), written for this benchmark, in the bank format of `decode.pas_search`
(`{id, text, trait, key}`; the prompt reads "You {text}.", so the texts are verb phrases). Synthetic users answer
1–5 from a stated trait profile: level + seeded Gaussian noise on a "+" item, 6 − level + noise on a "−" item,
rounded and clipped. Per trait a seeded split puts `--test-per-trait` items in `test_items`, the rest in
`train_items` (of which `--holdout` per trait is held out for the α choice by `pas_search` itself).

Each user runs `alignkit steer search` (through `alignkit.cli.main`); its report gives only Σ-over-traits MAE, so
the test items are answered again through the Python API (`answer_items`, the saved artefact, the same persona
prompt built from the report's `fit_items`) at α* and α = 0 for per-item absolute errors. Both arms carry the
persona prompt; α = 0 is the prompt alone. Reported: test MAE at α* and α = 0, their paired-bootstrap difference
(α* − 0, negative = steering helps) with a 95 % CI over (user, item) pairs that parse in both arms, parse rates,
the share of items whose answer changed, and an always-"3" reference MAE.

  flock /tmp/exp/cpu.lock nice -n 10 .venv/bin/python benchmarks/pas_embedded.py --out runs/pas-embedded
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

# (trait, key, text): "You {text}." is the statement the model rates.
ITEMS = [
    ("O", "+", "enjoy trying food you have never eaten before"), ("O", "+", "like thinking about abstract ideas"),
    ("O", "+", "get absorbed in art or music"), ("O", "+", "look for new ways of doing everyday things"),
    ("O", "+", "enjoy reading about unfamiliar cultures"), ("O", "-", "prefer familiar routines to new experiences"),
    ("O", "-", "find poetry boring"), ("O", "-", "avoid philosophical discussions"),
    ("O", "-", "stick to the way things have always been done"), ("O", "-", "seldom daydream"),
    ("C", "+", "finish tasks well before the deadline"), ("C", "+", "keep your desk tidy"),
    ("C", "+", "make a plan before starting a project"), ("C", "+", "double-check your work for errors"),
    ("C", "+", "keep the promises you make"), ("C", "-", "leave chores until the last minute"),
    ("C", "-", "lose track of your belongings"), ("C", "-", "act on impulse without thinking it through"),
    ("C", "-", "give up on tasks when they get boring"), ("C", "-", "forget appointments"),
    ("E", "+", "feel comfortable in a crowd of strangers"), ("E", "+", "start conversations with people you just met"),
    ("E", "+", "enjoy being the centre of attention at a party"), ("E", "+", "have a lot of energy around other people"),
    ("E", "+", "speak up easily in group discussions"), ("E", "-", "prefer to spend your free time alone"),
    ("E", "-", "keep quiet in meetings"), ("E", "-", "find small talk draining"),
    ("E", "-", "avoid loud social gatherings"), ("E", "-", "let others do most of the talking"),
    ("A", "+", "go out of your way to help a stranger"), ("A", "+", "trust that most people mean well"),
    ("A", "+", "forgive people quickly after an argument"), ("A", "+", "try to make others feel welcome"),
    ("A", "+", "take other people's feelings into account"),
    ("A", "-", "enjoy winning an argument more than keeping the peace"),
    ("A", "-", "point out other people's mistakes bluntly"), ("A", "-", "put your own interests ahead of others"),
    ("A", "-", "lose patience with people who are slow"), ("A", "-", "doubt the motives of people who are kind to you"),
    ("N", "+", "worry about things that might go wrong"), ("N", "+", "get upset over small setbacks"),
    ("N", "+", "feel tense for no clear reason"), ("N", "+", "have frequent mood swings"),
    ("N", "+", "feel overwhelmed when plans change"), ("N", "-", "stay calm under pressure"),
    ("N", "-", "recover quickly from disappointments"), ("N", "-", "rarely feel sad or low"),
    ("N", "-", "handle criticism without getting upset"), ("N", "-", "feel relaxed most of the time"),
]
# user id, profile description, trait levels on the 1..5 scale
USERS = [
    ("extravert_calm", "high E, low N, high C", {"O": 4.2, "C": 4.5, "E": 4.8, "A": 4.3, "N": 1.4}),
    ("introvert_anxious", "low E, high N, high O, low A", {"O": 4.6, "C": 2.2, "E": 1.4, "A": 2.0, "N": 4.6}),
]


def item_bank() -> list[dict]:
    count: dict[str, int] = {}
    rows = []
    for trait, key, text in ITEMS:
        count[trait] = count.get(trait, 0) + 1
        rows.append({"id": f"{trait}{count[trait]:02d}", "text": text, "trait": trait, "key": key})
    return rows


def synthetic_user(uid: str, profile: dict[str, float], bank: list[dict], test_per_trait: int, noise: float,
                   seed: int) -> dict:
    rng = np.random.default_rng([seed, sum(map(ord, uid))])
    answers = {}
    for it in bank:
        level = profile[it["trait"]] if it["key"] == "+" else 6 - profile[it["trait"]]
        answers[it["id"]] = int(np.clip(np.rint(level + rng.normal(0, noise)), 1, 5))
    split = np.random.default_rng(seed)  # the same item split for every user
    train, test = [], []
    for t in "OCEAN":
        ids = [it["id"] for it in bank if it["trait"] == t]
        order = split.permutation(len(ids))
        test += [ids[i] for i in order[:test_per_trait]]
        train += [ids[i] for i in order[test_per_trait:]]
    return {"user_id": uid, "answers": answers, "train_items": train, "test_items": test}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--out", required=True)
    ap.add_argument("--users", type=int, default=2, choices=(1, 2))
    ap.add_argument("--heads", type=int, default=24, help="K heads to steer")
    ap.add_argument("--alphas", default="0,2,4,8", help="alpha grid (comma-separated)")
    ap.add_argument("--holdout", type=float, default=0.34, help="share of train items per trait for the alpha pick")
    ap.add_argument("--test-per-trait", type=int, default=4)
    ap.add_argument("--noise", type=float, default=0.6, help="sd of the answer noise (1..5 scale)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from alignkit.cli import main as cli
    from alignkit.decode.hf import HFSampler
    from alignkit.decode.pas import trait_mae
    from alignkit.decode.pas_heads import PASArtifact
    from alignkit.decode.pas_search import answer_items, persona_system, read_bank
    from alignkit.evaluate.stats import paired_bootstrap, proportion_ci
    from alignkit.models import load_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = item_bank()
    (out / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    bank = read_bank(out / "items.jsonl")
    t0 = time.time()
    runs = []
    for uid, desc, profile in USERS[:args.users]:
        user = synthetic_user(uid, profile, rows, args.test_per_trait, args.noise, args.seed)
        (out / f"{uid}.user.json").write_text(json.dumps(user))
        t = time.time()
        assert cli(["steer", "search", "--model", args.model, "--items", str(out / "items.jsonl"),
                    "--user", str(out / f"{uid}.user.json"), "--out", str(out / f"{uid}.safetensors"),
                    "--heads", str(args.heads), "--alphas", args.alphas, "--holdout", str(args.holdout),
                    "--seed", str(args.seed), "--overwrite"]) == 0
        report = json.loads((out / f"{uid}.json").read_text())
        runs.append((uid, desc, profile, user, report, round(time.time() - t, 1)))

    model, tok = load_model(args.model)  # as the CLI loads it
    sampler = HFSampler(model, tok)
    per_item, users = [], []
    for uid, desc, profile, user, report, secs in runs:
        art = PASArtifact.load(out / f"{uid}.safetensors")
        ans, test = user["answers"], user["test_items"]
        system = persona_system(bank, ans, report["fit_items"])
        pred = {name: answer_items(sampler, system, bank, test, art, a)
                for name, a in (("alpha_star", art.alpha), ("alpha0", 0.0))}
        truth = {t: [float(ans[i]) for i in test if bank[i]["trait"] == t] for t in "OCEAN"}
        check = {name: trait_mae({t: [p for i, p in zip(test, pred[name], strict=True) if bank[i]["trait"] == t]
                                  for t in "OCEAN"}, truth) for name in pred}
        for i, ps, p0 in zip(test, pred["alpha_star"], pred["alpha0"], strict=True):
            per_item.append({"user": uid, "item": i, "trait": bank[i]["trait"], "key": bank[i]["key"],
                             "truth": ans[i], "pred_alpha_star": ps, "pred_alpha0": p0})
        users.append({"user_id": uid, "profile": desc, "levels": profile, "alpha_star": art.alpha,
                      "alpha_table_heldout_train": report["alpha_table"], "alpha_items": len(report["alpha_items"]),
                      "fit_items": len(report["fit_items"]), "test_items": len(test),
                      "cli_test_mae_sum": [report.get("test_mae_sum"), report.get("test_mae_sum_alpha0")],
                      "recomputed_test_mae_sum": [check["alpha_star"], check["alpha0"]], "cli_seconds": secs})
    (out / "per_item.jsonl").write_text("".join(json.dumps(r) + "\n" for r in per_item))
    both = [r for r in per_item if r["pred_alpha_star"] is not None and r["pred_alpha0"] is not None]
    err_s = [abs(r["pred_alpha_star"] - r["truth"]) for r in both]
    err_0 = [abs(r["pred_alpha0"] - r["truth"]) for r in both]
    result = {
        "model": args.model, "heads": args.heads, "alphas": args.alphas, "holdout": args.holdout,
        "noise": args.noise, "seed": args.seed, "items": len(rows), "users": users,
        "test_pairs": len(per_item), "test_pairs_parsed_both": len(both),
        "test_mae_alpha_star": float(np.mean(err_s)) if both else None,
        "test_mae_alpha0": float(np.mean(err_0)) if both else None,
        "test_mae_diff_star_minus_0": paired_bootstrap(err_s, err_0, seed=0).as_dict() if both else None,
        "test_mae_always_3": float(np.mean([abs(3 - r["truth"]) for r in both])) if both else None,
        "answer_changed": proportion_ci([r["pred_alpha_star"] != r["pred_alpha0"] for r in per_item]).as_dict(),
        "parsed_alpha_star": proportion_ci([r["pred_alpha_star"] is not None for r in per_item]).as_dict(),
        "parsed_alpha0": proportion_ci([r["pred_alpha0"] is not None for r in per_item]).as_dict(),
        "seconds": round(time.time() - t0, 1),
    }
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
