"""Preference-data builders: sample from a policy, score or judge the samples, write pairwise or listwise records.

* `verifier` (ACT): rank samples by constraint satisfaction rate (`VerifierBuilder`);
* `reference` (BLEUBERI): BLEU against references, then keep the hard prompts (`build_reference`);
* `reward`: any Reward, margins in pairs (`RewardBuilder`);
* `judge` (RLAIF / CycleAlign-style): an LM judge ranks K samples (`JudgeBuilder`);
* `feedback` (WildFeedback): satisfaction signals in multi-turn conversations (`FeedbackBuilder`);
* `corrections` (RLHF-V): (answer, edited answer) rows → DDPO pairs (`CorrectionsBuilder`);
* `steerlm` / `steerlm2` (SteerLM, HelpSteer2): attribute-conditioned SFT rows, SteerLM 2.0 weighted groups.

Every build runs through `run_build`: append-only JSONL, a progress bar, resume by prompt key, and a
`BuildReport` counting what was skipped or dropped and why. Records carry their provenance in `metadata`.
"""

from alignkit.data.build.common import (
    BuildItem,
    SamplingSettings,
    items_from_prompts,
    load_prompts,
    records_from_scores,
)
from alignkit.data.build.corrections import CorrectionsBuilder, items_from_corrections, load_corrections
from alignkit.data.build.feedback import (
    FeedbackBuilder,
    FeedbackSignal,
    LMFeedbackClassifier,
    RuleBasedFeedbackClassifier,
    items_from_conversations,
    load_conversations,
)
from alignkit.data.build.judge import JudgeBuilder, parse_ranking
from alignkit.data.build.reference import ReferenceScoringBuilder, build_reference, select_prompts
from alignkit.data.build.reward import RewardBuilder
from alignkit.data.build.runner import BuildReport, Outcome, run_build
from alignkit.data.build.steerlm import SteerLM2Builder, SteerLMBuilder, scored_items
from alignkit.data.build.verifier import VerifierBuilder

__all__ = [
    "BuildItem", "BuildReport", "CorrectionsBuilder", "FeedbackBuilder", "FeedbackSignal", "JudgeBuilder",
    "LMFeedbackClassifier", "Outcome", "ReferenceScoringBuilder", "RewardBuilder", "RuleBasedFeedbackClassifier",
    "SamplingSettings", "SteerLM2Builder", "SteerLMBuilder", "VerifierBuilder", "build_reference",
    "items_from_conversations", "items_from_corrections", "items_from_prompts", "load_conversations",
    "load_corrections", "load_prompts", "parse_ranking", "records_from_scores", "run_build", "scored_items",
    "select_prompts",
]
