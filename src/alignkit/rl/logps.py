"""Log-probs of sampled tokens under the *sampling* distribution: logits divided by the rollout temperature.

The rollout samples from softmax(z / T) (HFSampler's temperature warper), so the importance ratio, the KL terms
and the policy gradient must use log softmax(z / T) as well; with T = 1 logits (the plain completion kernel) the
ratio of GRPO/RLOO would compare a distribution that never produced the samples. TRL's GRPOTrainer and
RLOOTrainer divide the logits by `temperature` in `_get_per_token_logps_and_entropies` for the policy, the old
policy and the reference alike; so does this kernel. Top-p / top-k truncation is not applied (as in TRL): the
ratio stays defined for every token, and at μ = 1 it is exactly 1 either way.

The kernel plugs into `CompletionLogProbs.forward(..., kernel=tempered_logps, temperature=T)`, so distributed
wrappers still see one forward call; it reuses the completion-only logit slice of `train.logps` (no full-vocabulary
log-softmax over the whole sequence).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alignkit.data.tokenize import IGNORE_INDEX
from alignkit.errors import ConfigError
from alignkit.train.logps import completion_logits


def tempered_logps(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, labels: Tensor,
                   token_level: bool = True, temperature: float = 1.0) -> tuple[Tensor, ...]:
    """(sums `[N]`, counts `[N]`, tokens `[N, T-1]`, mask `[N, T-1]`) of log softmax(logits / temperature) at the
    completion tokens (`labels` != -100); without `token_level` only (sums, counts)."""
    if not temperature > 0:
        raise ConfigError(f"log-probs at temperature {temperature}: the rollout temperature must be > 0")
    logits, target, rows, cols = completion_logits(model, input_ids, attention_mask, labels)
    if temperature != 1.0:
        logits = logits / temperature
    token_lp = -F.cross_entropy(logits, target, reduction="none")
    mask = labels[:, 1:] != IGNORE_INDEX
    sums = torch.zeros(input_ids.shape[0], dtype=token_lp.dtype, device=token_lp.device).index_add(0, rows, token_lp)
    counts = mask.sum(dim=1).to(token_lp.dtype)
    if not token_level:
        return sums, counts
    tokens = torch.zeros(mask.shape, dtype=token_lp.dtype, device=token_lp.device).index_put((rows, cols), token_lp)
    return sums, counts, tokens, mask
