"""Every search knob is declared once (SearchSettings) and reaches the API and the CLI from there."""
from __future__ import annotations

import argparse
import dataclasses
import inspect

import pytest

from isnas_fast import restore
from isnas_fast.dip import EarlyStopping
from isnas_fast.errors import InputError
from isnas_fast.search import KNOBS, PRESETS, SearchSettings, add_knob_arguments, knob_options, settings_from_options


def test_every_settings_field_is_a_knob_with_help():
    names = [f.name for f in dataclasses.fields(SearchSettings)]
    assert [k.name for k in KNOBS] == names
    assert len({k.api for k in KNOBS}) == len(KNOBS) and len({k.flag for k in KNOBS}) == len(KNOBS)
    assert all(k.help and k.flag.startswith("--") for k in KNOBS)


def test_restore_signature_and_doc_list_every_knob():
    params = inspect.signature(restore).parameters
    for k in KNOBS:
        assert params[k.api].kind is inspect.Parameter.KEYWORD_ONLY and params[k.api].default is None
        assert f"``{k.api}``" in restore.__doc__


def test_cli_options_are_generated_from_the_declaration():
    parser = argparse.ArgumentParser()
    add_knob_arguments(parser)
    args = parser.parse_args(["--width", "32", "--no-early-stopping", "--precision", "bf16", "--models",
                              "random5000", "--iterations", "7", "--metric", "psd_db_strip_mse,random",
                              "--cohort-together", "--final", "all"])
    opts = knob_options(args)
    assert opts == {"width": 32, "early_stopping": False, "precision": "bf16", "models": "random5000",
                    "iterations": 7, "metric": "psd_db_strip_mse,random", "cohort_together": True, "final": "all"}
    s = settings_from_options("quick", opts)
    assert (s.width, s.early_stopping, s.precision, s.candidates, s.final_iterations) == (32, None, "bf16",
                                                                                         "random5000", 7)
    assert s.metrics == ("psd_db_strip_mse", "random") and s.final == "all"
    assert knob_options(parser.parse_args([])) == {}


def test_early_stopping_true_means_the_presets_detector():
    quick = settings_from_options("quick", {"early_stopping": True})
    assert quick.early_stopping == PRESETS["quick"].early_stopping == EarlyStopping(method="discrepancy", window=100)
    assert settings_from_options("paper", {"early_stopping": True}).early_stopping == EarlyStopping()
    own = EarlyStopping(window=50, patience=20)
    assert settings_from_options("quick", {"early_stopping": own}).early_stopping == own
    assert settings_from_options("quick", {"early_stopping": False}).early_stopping is None


@pytest.mark.parametrize("opts,match", [
    ({"widht": 32}, "unknown option"),
    ({"width": "32"}, "width must be an integer"),
    ({"compile": "yes"}, "compile must be True or False"),
    ({"metric": "psd_db_strip_mse,psd_db_strip_mse"}, "metric listed twice"),
    ({"metric": "psnr"}, "unknown spectral metric"),
])
def test_bad_options(opts, match):
    with pytest.raises(InputError, match=match):
        settings_from_options("quick", opts)
