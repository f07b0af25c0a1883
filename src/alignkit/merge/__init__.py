"""Weight-space merging of fine-tuned checkpoints of one base: task vectors, Self Positioning coefficient search on
a probe set, grid search with any Reward, and linear / task-arithmetic / TIES baselines (PEFT's `merge_utils`).
Spec: ../shared/spec/wave2_selfalign_merge.md §5. Reads and writes plain HF model directories; below pipelines."""
