"""Pipelines that chain stages (DESIGN.md, "Where new pieces go"): each round is a run directory, resumable, with
the round's model feeding the next. Above train/decode/evaluate, below the CLI."""
