"""One vocabulary across the commands and the API: sizes as W x H, comma lists, the options
every command takes, one --json convention, knob help that states each preset's value."""
from __future__ import annotations

import pytest

from isnas_fast.errors import InputError


def test_size_messages_name_width_first():
    from isnas_fast.kernels.spectral_reference import checked_strip_mask

    with pytest.raises(InputError, match=r"image 6x2 px is too small"):
        checked_strip_mask(2, 6)  # (H, W) = (2, 6)


def _subcommands():
    from isnas_fast.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices


def test_every_command_takes_quiet_seed_and_device():
    for name, p in _subcommands().items():
        flags = set(p._option_string_actions)
        assert {"-q", "--quiet", "--seed", "--device"} <= flags, name


def test_every_json_option_takes_an_optional_file_and_defaults_to_standard_output():
    with_json = {name: p._option_string_actions["--json"] for name, p in _subcommands().items()
                 if "--json" in p._option_string_actions}
    assert {"restore", "score", "study", "run"} <= set(with_json)
    for name, action in with_json.items():
        assert (action.nargs, action.const, action.default, action.metavar) == ("?", "-", None, "REPORT"), name


def test_run_takes_device_and_its_earlier_name_provider():
    run = _subcommands()["run"]
    assert run.parse_args(["m.onnx", "-o", "o.png", "--provider", "cpu"]).device == "cpu"
    assert run.parse_args(["m.onnx", "-o", "o.png", "--device", "cuda"]).device == "cuda"
    assert run.parse_args(["m.onnx", "-o", "o.png"]).device == "auto"


def test_study_shows_ground_truth_as_required(capsys):
    study = _subcommands()["study"]
    assert "--ground-truth CLEAN" in study.format_usage() and "[--ground-truth" not in study.format_usage()
    with pytest.raises(SystemExit) as exit_:
        study.parse_args(["noisy.png", "--task", "denoise", "--out", "s"])
    assert exit_.value.code == 2 and "--ground-truth" in capsys.readouterr().err


def test_knob_help_states_the_value_under_each_preset():
    from isnas_fast.search import PRESETS

    help_text = " ".join(_subcommands()["restore"].format_help().split())
    quick = PRESETS["quick"]
    assert f"(default: {quick.num_candidates} (quick), all (paper))" in help_text
    assert f"(default: {quick.cohort_iterations} (quick), the task's paper count (paper))" in help_text
    assert f"(default: {quick.width} (quick), {PRESETS['paper'].width} (paper))" in help_text
    assert "(default: on (quick), off (paper))" in help_text  # --early-stopping
    assert "(default: first)" in help_text  # --final: the same under every preset


def test_candidates_keyword_is_named_like_the_option_and_the_earlier_name_still_works():
    import inspect

    import isnas_fast
    from isnas_fast.api import split_options
    from isnas_fast.search import settings_from_options

    assert "candidates" in inspect.signature(isnas_fast.restore).parameters
    assert settings_from_options("quick", {"candidates": 5}).num_candidates == 5
    assert settings_from_options("quick", {"num_candidates": 6}).num_candidates == 6
    assert split_options({"num_candidates": 6, "sigma": 10}) == ({"num_candidates": 6}, {"sigma": 10})
    with pytest.raises(InputError, match="earlier name of candidates"):
        settings_from_options("quick", {"candidates": 5, "num_candidates": 6})


def test_score_metric_takes_a_comma_list(tmp_path, capsys):
    import json

    import torch

    from isnas_fast.cli import main
    from isnas_fast.io import save_image

    image = tmp_path / "noisy.png"
    save_image(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)), image)
    assert main(["score", str(image), "--task", "denoise", "--sigma", "25", "--models", "random", "--candidates",
                 "2", "--width", "16", "--metric", "psd_db_strip_mse,per_bw_0.9", "--json", "-q"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["metrics"] == ["psd_db_strip_mse", "per_bw_0.9"] and len(data["scores"]) == 2
    assert main(["score", str(image), "--task", "denoise", "--sigma", "25", "--metric", ",", "-q"]) == 2
    assert "--metric names no metric" in capsys.readouterr().err
