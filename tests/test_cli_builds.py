"""The command line builds the task and the search settings itself, from one declaration each
(the tasks' parameters, the knobs), and hands them to the API whole."""
from __future__ import annotations

import pytest

from isnas_fast.cli import build_parser
from isnas_fast.cli.common import settings_from_args, task_from_args
from isnas_fast.errors import InputError
from isnas_fast.search import PRESETS, settings_from_options
from isnas_fast.tasks import Denoise, Inpaint, SuperResolve


def _args(*argv: str):
    return build_parser().parse_args(list(argv))


def test_the_task_is_built_from_the_options():
    sr = task_from_args(_args("restore", "x.png", "-o", "y.png", "--task", "sr", "--factor", "2"))
    assert isinstance(sr, SuperResolve) and sr.factor == 2
    noisy = task_from_args(_args("restore", "x.png", "-o", "y.png", "--task", "denoise", "--sigma", "15"))
    assert isinstance(noisy, Denoise) and noisy.sigma == 15.0
    # --sigma auto: the name alone, so that the level is estimated from each image
    assert task_from_args(_args("restore", "x.png", "-o", "y.png", "--task", "denoise")) == "denoise"
    # a command that corrupts images takes the task's own default level
    corrupting = task_from_args(_args("corrupt", "x.png", "-o", "y.png", "--task", "denoise"), estimate_sigma=False)
    assert isinstance(corrupting, Denoise) and corrupting.sigma == Denoise().sigma
    holes = task_from_args(_args("corrupt", "x.png", "-o", "y.png", "--task", "inpaint", "--p", "30"),
                           estimate_sigma=False)
    assert isinstance(holes, Inpaint) and holes.p == 30.0


@pytest.mark.parametrize("argv, flag", [
    (("restore", "x.png", "-o", "y.png", "--task", "sr", "--sigma", "25"), "--sigma"),
    (("restore", "x.png", "-o", "y.png", "--task", "denoise", "--factor", "2"), "--factor"),
    (("restore", "x.png", "-o", "y.png", "--task", "sr", "--mask", "m.png"), "--mask"),
    (("corrupt", "x.png", "-o", "y.png", "--task", "denoise", "--p", "30"), "--p"),
])
def test_a_parameter_of_another_task_is_an_error(argv, flag):
    with pytest.raises(InputError, match=f"{flag} does not apply to --task"):
        task_from_args(_args(*argv))


def test_the_settings_are_built_from_the_preset_and_the_knob_options():
    args = _args("restore", "x.png", "-o", "y.png", "--task", "denoise", "--preset", "paper", "--width", "32",
                 "--candidates", "7", "--no-early-stopping")
    assert settings_from_args(args) == settings_from_options("paper", {"width": 32, "candidates": 7,
                                                                        "early_stopping": False})
    assert settings_from_args(_args("study", "x.png", "--task", "sr", "--ground-truth", "c.png", "--out", "s")) \
        == PRESETS["quick"]


def test_restore_takes_built_settings_but_not_with_knob_keywords_too():
    import isnas_fast

    with pytest.raises(InputError, match=r"both in settings and as keywords \(width\)"):
        isnas_fast.restore("x.png", "denoise", settings=PRESETS["quick"], width=32)
    with pytest.raises(InputError, match="settings must be a SearchSettings"):
        isnas_fast.restore("x.png", "denoise", settings={"width": 32})
