"""docs/rl.md's `from alignkit.rl import run_online` works (issue #22): a lazy re-export, so importing the maths
of `alignkit.rl` does not load the trainer."""

from __future__ import annotations

import pytest

from alignkit.rl.trainer import run_online


def test_run_online_is_importable_from_the_rl_package() -> None:
    import alignkit.rl as rl
    from alignkit.rl import run_online as exported

    assert exported is run_online and "run_online" in rl.__all__
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rl.nope  # noqa: B018 -- the lazy __getattr__ still refuses unknown names
