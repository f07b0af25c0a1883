"""The constraint suite generator (issue #15 item 1): base tasks (`tasks`), constraint kinds and conflicts
(`kinds`), wording templates (`wording`), drawing records (`generate`) and the split-overlap proof (`overlap`).
Loading the shipped suite needs none of it: see `alignkit.data.suite`."""
