"""The candidate genotypes a search scores (docs/design.md §3.4)."""
from __future__ import annotations

import re
import zlib
from pathlib import Path
from typing import Union

import torch

from ..errors import InputError
from ..genotype import Genotype, builtin_genotypes, paper_random_genotypes, random_genotypes, read_genotypes

__all__ = ["NAMED_LISTS", "candidate_pool", "candidate_list", "genotype_seed", "restart_seed"]

#: Candidate lists shipped inside the package, by name.
NAMED_LISTS = ("builtin522", "builtin", "random5000")
_RANDOM_N = re.compile(r"^random:(\d+)$")


def genotype_seed(seed: int, genotype: Union[Genotype, str]) -> int:
    """A per-architecture seed: the same genotype gets the same initialisation
    and input code whatever its position in a list."""
    return (int(seed) * 1_000_003 + zlib.crc32(str(genotype).encode())) % (2**31 - 1)


def restart_seed(seed: int, genotype: Union[Genotype, str], restart: int) -> int:
    """The seed of random start ``restart`` (0-based) of a genotype's run: start 0 is
    :func:`genotype_seed`'s (one start is the run without restarts), the others differ."""
    return (genotype_seed(seed, genotype) + int(restart) * 7_919_011) % (2**31 - 1)


def candidate_pool(source: Union[str, Path], seed: int = 0, count: int | None = None) -> tuple[list[Genotype], int]:
    """The genotypes of a candidate list and how many invalid rows were skipped.

    ``source``: ``"builtin522"`` (or ``"builtin"``: the 522 genotypes of the
    NAS dataset), ``"random5000"`` (the 5000 random genotypes the paper's
    search scored, of which 408 have an invalid upsampling index and are
    skipped), ``"random"`` (``count`` genotypes drawn with ``seed``, 64 when
    ``count`` is None), ``"random:N"``, or a path to a ``u,bits`` CSV file.
    """
    src = str(source).strip()
    key = src.lower()
    if key in ("builtin", "builtin522"):
        return builtin_genotypes(), 0
    if key == "random5000":
        return paper_random_genotypes()
    if key == "random":
        return random_genotypes(count or 64, seed), 0
    m = _RANDOM_N.match(key)
    if m:
        return random_genotypes(int(m.group(1)), seed), 0
    if key.startswith("random:"):
        raise InputError(f"random:N needs a positive integer N, got {src!r}")
    return read_genotypes(src, skip_invalid=True)


def candidate_list(source: Union[str, Path], num_candidates: int | None = None,
                   seed: int = 0) -> tuple[list[Genotype], int]:
    """The candidates to score: ``source``'s list (see :func:`candidate_pool`),
    a seeded sample of ``num_candidates`` of it when smaller, in list order;
    and how many invalid rows were skipped."""
    pool, skipped = candidate_pool(source, seed, num_candidates)
    n = num_candidates
    if n is not None and n < len(pool):
        g = torch.Generator().manual_seed(int(seed))
        idx = torch.randperm(len(pool), generator=g)[:n].sort().values.tolist()
        pool = [pool[i] for i in idx]
    return pool, skipped
