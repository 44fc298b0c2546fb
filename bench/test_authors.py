"""Side by side with the paper authors' own code (ozgurkara99/ISNAS-DIP), on the CPU.

Their network (``models/cross_skip.skip``, built as their
``utils/model_utils.create_model`` builds it) against ours
(``isnas_fast.network.build_network``), both eager float32, in training
mode, width W for every level (theirs: ``num_channels_down/up = [W] * 5``,
4-channel skips), for three genotypes of the 522 list.  Their code is
imported from the checkout given by ``--authors-code PATH`` (nothing of it
is copied here); without the option the tests are skipped.

Cases (groups ``authors/<case><S>/<u>/w<W>``, ``path`` ``reference`` =
theirs, ``fast`` = ours):

* ``fwd``: the scoring forward pass at 256x256 under ``torch.no_grad()``
  (BatchNorm in training mode: batch statistics);
* ``step``: one DIP step at 128x128: ``zero_grad``, forward, MSE to a fixed
  random target, ``backward``, Adam (lr 0.01) ``step``.

Measurement: the machine's speed drifts, so the two networks are timed
interleaved in one loop (theirs, ours, theirs, ours, ... after 2 warm-up
pairs; ``--bench-rounds`` pairs, default 10) and compared by their medians.
pytest-benchmark times one target per test, so the interleaved loop runs
once per case (in whichever of the case's two tests runs first, cached for
the other); each test then records its side's interleaved median in
``extra_info["ms"]`` (report.py uses it: ratio = theirs / ours, > 1: ours
is faster) and times one more call of its own side with
``benchmark.pedantic(rounds=1, iterations=1)`` so that the group exists in
the pytest-benchmark JSON.  Torch runs 2 intra-op threads
(``--bench-threads`` overrides).

Sanity check: the same architecture is compared -- ours has as many
parameters as theirs uses.  Their constructor also builds the modules of
the disabled skip connections, which their forward never calls; the
parameters compared are those that get a gradient in one backward pass
(``extra_info`` has both of their counts).

Options: ``--authors-code PATH`` (required), ``--bench-size`` (both cases at
these sizes), ``--bench-width`` (default 128), ``--bench-rounds`` (default 10),
``--bench-threads`` (default 2).  A smoke run:
``--bench-size 64 --bench-width 16 --bench-rounds 2``.
"""
from __future__ import annotations

import inspect
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import _common as common

GENOTYPES = ["158,1111101111001110001100001", "172,0000011001001001100111101", "25,0001000010010111101110011"]
SIZES = {"fwd": 256, "step": 128}
WARMUP = 2
THREADS = 2


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        given = metafunc.config.getoption("--bench-size")
        widths = common.option_list(metafunc.config, "--bench-width", 128)
        cases = [(kind, s, g, w) for kind, default in SIZES.items()
                 for s in (common.option_list(metafunc.config, "--bench-size", None) if given else [default])
                 for g in GENOTYPES for w in widths]
        metafunc.parametrize("case", cases, ids=[f"{k}{s}-{g.split(',')[0]}-w{w}" for k, s, g, w in cases])


@pytest.fixture(scope="session")
def their_skip(opts):
    """Their ``skip`` constructor, imported from ``--authors-code``."""
    if not opts.authors_code:
        pytest.skip("needs the authors' code: pass --authors-code PATH "
                    "(a checkout of github.com/ozgurkara99/ISNAS-DIP)")
    root = Path(opts.authors_code).resolve()
    if not (root / "models" / "cross_skip.py").is_file():
        pytest.fail(f"--authors-code {root}: no models/cross_skip.py there (not an ISNAS-DIP checkout?)")
    sys.modules.setdefault("ipdb", types.ModuleType("ipdb"))  # imported (unused) by their module
    sys.path.insert(0, str(root))
    try:
        from models.cross_skip import skip
    finally:
        sys.path.remove(str(root))
    where = Path(inspect.getfile(skip)).resolve()
    assert root in where.parents, f"imported their skip from {where}, not from {root} (a 'models' module clash?)"
    return skip


def build_theirs(skip, genotype: str, width: int) -> torch.nn.Module:
    """As their ``utils/model_utils.create_model`` does, with ``width`` for their hard-coded 128."""
    u, bits = genotype.split(",")
    return skip(model_index=int(u), skip_index=np.array([int(b) for b in bits]).reshape(5, 5),
                num_input_channels=3, num_output_channels=3, num_channels_down=[width] * 5,
                num_channels_up=[width] * 5, num_channels_skip=[4] * 5, upsample_mode="bilinear",
                downsample_mode="stride", need_sigmoid=True, need_bias=True, pad="reflection",
                act_fun="LeakyReLU").train()


def build_ours(genotype: str, width: int) -> torch.nn.Module:
    from isnas_fast.genotype import Genotype
    from isnas_fast.network import build_network

    return build_network(Genotype.parse(genotype), 3, 3, width=width).train()


def ours_input(net: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    """What our network is fed for a standard contiguous ``z`` (any layout conversion is the network's own)."""
    return z


def used_parameters(net: torch.nn.Module, z: torch.Tensor) -> int:
    """Parameters that get a gradient in one forward + backward pass (grads cleared after)."""
    net(z).sum().backward()
    n = sum(p.numel() for p in net.parameters() if p.grad is not None)
    net.zero_grad(set_to_none=True)
    return n


def interleaved(fns: dict, rounds: int, warmup: int = WARMUP) -> dict:
    """Wall times (ms) of each of ``fns``, called in turn, ``rounds`` times after ``warmup`` untimed turns."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t) * 1e3)
    return times


def _case_fn(kind: str, net: torch.nn.Module, z: torch.Tensor, feed):
    if kind == "fwd":
        def fwd():
            with torch.no_grad():
                return net(feed(net, z))

        return fwd
    target = torch.rand(z.shape, generator=torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(net.parameters(), lr=0.01)

    def step():
        opt.zero_grad()
        loss = F.mse_loss(net(feed(net, z)), target)
        loss.backward()
        opt.step()
        return loss

    return step


@pytest.fixture
def threads(opts):
    saved = torch.get_num_threads()
    torch.set_num_threads(opts.threads or THREADS)
    yield torch.get_num_threads()
    torch.set_num_threads(saved)


@pytest.mark.parametrize("path", common.PATHS)
def test_authors(case, path, their_skip, opts, agreement, benchmark, threads):
    kind, size, genotype, width = case
    u = genotype.split(",")[0]
    group = f"authors/{kind}{size}/{u}/w{width}"
    rounds = opts.rounds or 10
    key = ("authors", group)
    if key not in agreement:
        from isnas_fast.network import count_parameters

        torch.manual_seed(0)
        theirs = build_theirs(their_skip, genotype, width)
        torch.manual_seed(0)
        ours = build_ours(genotype, width)
        probe = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
        counts = {"ours": count_parameters(ours), "theirs_used": used_parameters(theirs, probe),
                  "theirs_all": sum(p.numel() for p in theirs.parameters())}
        assert counts["ours"] == counts["theirs_used"], f"{group}: not the same architecture: {counts}"
        z = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) * 0.1
        fns = {"theirs": _case_fn(kind, theirs, z, lambda net, x: x), "ours": _case_fn(kind, ours, z, ours_input)}
        agreement[key] = {"fns": fns, "counts": counts, "times": interleaved(fns, rounds), "pending": 2}
    entry = agreement[key]
    side = "theirs" if path == "reference" else "ours"
    med = {k: statistics.median(v) for k, v in entry["times"].items()}

    benchmark.group = group
    benchmark.pedantic(entry["fns"][side], rounds=1, iterations=1)
    benchmark.extra_info.update(
        path=path, device=common.device_label(torch.device("cpu")), case=kind, genotype=genotype, width=width,
        size=size, reference="authors' code (ozgurkara99/ISNAS-DIP)", fast="isnas_fast", threads=threads,
        ms=med[side], ms_source=f"interleaved median (theirs, ours, ... after {WARMUP} warm-up pairs)",
        theirs_ms=med["theirs"], ours_ms=med["ours"], ratio_theirs_over_ours=med["theirs"] / med["ours"],
        rounds=rounds, parameters=entry["counts"], authors_code=str(Path(opts.authors_code).resolve()))
    entry["pending"] -= 1
    if entry["pending"] == 0:  # both sides recorded: free the networks
        del agreement[key]
