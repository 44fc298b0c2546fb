"""Genotypes of the NAS-DIP cross-scale search space (docs/design.md §3).

A genotype is ``(u, S)``: an upsampling-cell index ``u`` in ``[0, 323]`` and a
5x5 binary matrix ``S`` of cross-scale skip connections (row ``r`` targets
decoder level ``r + 1``, column ``c`` is the source: 0 = the input code,
1..4 = encoder outputs).  This module only describes genotypes; building the
network is :mod:`isnas_fast.network`.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import total_ordering
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator

from .errors import InputError

__all__ = [
    "ACTIVATIONS",
    "KERNEL_SIZES",
    "CONV_OPS",
    "PRIMITIVES",
    "UpsampleCell",
    "Genotype",
    "decode_upsample",
    "valid_upsample_indices",
    "read_genotypes",
    "builtin_genotypes",
    "random_genotypes",
    "paper_random_genotypes",
    "BASELINES",
]

ACTIVATIONS = ("none", "relu", "leaky_relu")
KERNEL_SIZES = (1, 3, 5, 7)
CONV_OPS = ("conv", "trans_conv", "split_stack_sum", "sep_conv", "depthwise_conv", "identity")
PRIMITIVES = ("bilinear", "bicubic", "nearest", "pixel_shuffle", "trans_conv")
NUM_UPSAMPLE = 324


@dataclass(frozen=True)
class UpsampleCell:
    """Decoded upsampling cell: a x2 primitive and a resolution-keeping conv op.

    ``conv_first`` is True only for the pixel-shuffle cells 252..311, where the
    conv (C -> 4*C_out) runs before the shuffle.
    """

    index: int
    primitive: str
    conv: str
    kernel: int
    activation: str
    conv_first: bool = False

    def describe(self) -> str:
        """One-line human description, e.g. ``bilinear -> conv 3x3, relu``."""
        ops = [self.primitive, f"{self.conv} {self.kernel}x{self.kernel}"]
        if self.conv == "identity":
            ops[1] = "identity"
        if self.primitive == "trans_conv":
            ops[0] = f"trans_conv {self.kernel}x{self.kernel} stride 2"
        if self.conv_first:
            ops.reverse()
        return " -> ".join(ops) + f", {self.activation}"


def _invalid_reason(u: int) -> str | None:
    if not 0 <= u < NUM_UPSAMPLE:
        return f"must be in [0, {NUM_UPSAMPLE - 1}]"
    if 237 <= u <= 248 or 300 <= u <= 311:
        return "a depthwise conv next to a pixel shuffle cannot be built (channels not divisible by groups)"
    if 249 <= u <= 251:
        return "a pixel shuffle followed by identity leaves C/4 channels where C are needed"
    return None


def decode_upsample(u: int) -> UpsampleCell:
    """Decode upsampling-cell index ``u`` (docs/design.md §3.2); invalid indices raise InputError."""
    if isinstance(u, bool) or not isinstance(u, int):
        raise InputError(f"upsampling index must be an integer, got {u!r}")
    why = _invalid_reason(u)
    if why is not None:
        raise InputError(f"invalid upsampling index {u}: {why}")
    if u >= 312:
        return UpsampleCell(u, "trans_conv", "identity", KERNEL_SIZES[(u // 3) % 4], ACTIVATIONS[u % 3])
    m = u % 63
    act = ACTIVATIONS[m % 3]
    k = KERNEL_SIZES[(m // 3) % 4]
    conv = "identity" if m >= 60 else CONV_OPS[(m // 12) % 5]
    if u >= 252:
        return UpsampleCell(u, "pixel_shuffle", conv, k, act, conv_first=True)
    return UpsampleCell(u, PRIMITIVES[u // 63], conv, k, act)


def valid_upsample_indices() -> list[int]:
    """All buildable upsampling indices (297 of the 324)."""
    return [u for u in range(NUM_UPSAMPLE) if _invalid_reason(u) is None]


_CSV_RE = re.compile(r"^\s*(-?\d+)\s*,\s*([01]{25})\s*$")
_REF_RE = re.compile(r"(?:^|/)\d+_(\d+)_iteration_\d+_sigma_\d+_skip_([01]{25})\b")


@total_ordering
@dataclass(frozen=True)
class Genotype:
    """An architecture of the search space: upsampling index + 5x5 skip matrix.

    ``skips`` is the 25-character row-major bit string (row r = decoder level
    r + 1, column c = source; see docs/design.md §3.1). Instances are immutable,
    hashable and sortable by ``(upsample, skips)``.
    """

    upsample: int
    skips: str

    def __post_init__(self) -> None:
        if not isinstance(self.skips, str) or len(self.skips) != 25 or set(self.skips) - {"0", "1"}:
            raise InputError(f"skip matrix must be 25 binary digits, got {self.skips!r}")
        decode_upsample(self.upsample)  # validates

    # ------------------------------------------------------------------ parse/print
    @classmethod
    def parse(cls, text: str) -> "Genotype":
        """Parse ``"u,bits"`` (CSV row, CRLF tolerated), ``"u:bits"`` or the reference
        naming ``0_{u}_iteration_4000_sigma_25_skip_{bits}``.  Bits may contain
        spaces or underscores between rows (``"11111 01111 ..."``)."""
        if not isinstance(text, str):
            raise InputError(f"genotype must be text, got {type(text).__name__}")
        s = text.strip()
        m = _REF_RE.search(s)
        if m is None:
            flat = s.replace(":", ",")
            if "," in flat:
                head, _, tail = flat.partition(",")
                flat = head + "," + re.sub(r"[\s_]", "", tail)
            m = _CSV_RE.match(flat)
        if m is None:
            raise InputError(
                f"cannot parse genotype {text.strip()!r}: expected 'u,bits' (25 binary digits) "
                "or '0_{u}_iteration_N_sigma_N_skip_{bits}'"
            )
        return cls(int(m.group(1)), m.group(2))

    def to_csv(self) -> str:
        """``"u,bits"`` as in the shipped CSV lists."""
        return f"{self.upsample},{self.skips}"

    def reference_name(self, iterations: int = 4000, sigma: int = 25) -> str:
        """The reference implementation's naming of this model."""
        return f"0_{self.upsample}_iteration_{iterations}_sigma_{sigma}_skip_{self.skips}"

    def __str__(self) -> str:
        return self.to_csv()

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Genotype):
            return NotImplemented
        return (self.upsample, self.skips) < (other.upsample, other.skips)

    # ------------------------------------------------------------------ views
    @property
    def cell(self) -> UpsampleCell:
        """The decoded upsampling cell."""
        return decode_upsample(self.upsample)

    @property
    def matrix(self) -> tuple[tuple[int, ...], ...]:
        """The 5x5 skip matrix as nested tuples, ``matrix[r][c]``."""
        return tuple(tuple(int(b) for b in self.skips[5 * r : 5 * r + 5]) for r in range(5))

    def describe(self) -> str:
        """Human description: cell and skip rows."""
        rows = " ".join(self.skips[5 * r : 5 * r + 5] for r in range(5))
        return f"u={self.upsample} ({self.cell.describe()}), skips {rows}"


# NAS-DIP's best architectures per task (docs/design.md §3.3); they take 32 input channels.
BASELINES: dict[str, Genotype] = {
    "nasdip-denoise": Genotype(158, "1111101111001110001100001"),
    "nasdip-inpaint": Genotype(86, "1100001100101100101100101"),
    "nasdip-sr": Genotype(119, "1001011001011000011000011"),
}


def _iter_rows(lines: Iterable[str], source: str, skip_invalid: bool) -> Iterator[Genotype]:
    for lineno, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if lineno == 1 and not line.strip()[0].isdigit():
            continue  # header row
        try:
            yield Genotype.parse(line)
        except InputError as e:
            if skip_invalid and "invalid upsampling index" in str(e):
                continue
            raise InputError(f"{source}, line {lineno}: {e}") from None


def read_genotypes(path: str | Path, *, skip_invalid: bool = False) -> tuple[list[Genotype], int]:
    """Read a ``u,bits`` CSV file. Returns ``(genotypes, n_skipped_invalid)``.

    With ``skip_invalid`` rows whose upsampling index cannot be built are
    dropped and counted; other malformed rows always raise InputError.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"model list not found: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read model list {p}: {e}") from None
    lines = text.splitlines()
    rows = list(_iter_rows(lines, str(p), skip_invalid))
    total = sum(1 for i, l in enumerate(lines, 1) if l.strip() and not l.lstrip().startswith("#")
                and not (i == 1 and not l.strip()[0].isdigit()))
    if not rows:
        raise InputError(f"model list {p} holds no valid genotype")
    return rows, total - len(rows)


def builtin_genotypes() -> list[Genotype]:
    """The 522 genotypes of the ISNAS-DIP NAS dataset, shipped inside the package."""
    text = resources.files("isnas_fast").joinpath("data/isnas_dip_522_models.csv").read_text()
    return list(_iter_rows(text.splitlines(), "isnas_dip_522_models.csv", False))


def paper_random_genotypes() -> tuple[list[Genotype], int]:
    """The 5000 random genotypes the paper's search scored, shipped inside the
    package; returns ``(valid genotypes, n_invalid)`` (408 rows have an
    upsampling index that cannot be built and are skipped)."""
    text = resources.files("isnas_fast").joinpath("data/isnas_dip_5000_random_models.csv").read_text()
    lines = text.splitlines()
    rows = list(_iter_rows(lines, "isnas_dip_5000_random_models.csv", True))
    return rows, sum(1 for l in lines if l.strip()) - len(rows)


def random_genotypes(n: int, seed: int = 0) -> list[Genotype]:
    """``n`` distinct random valid genotypes (uniform index, uniform skip bits), seeded."""
    if n < 1:
        raise InputError(f"number of random genotypes must be >= 1, got {n}")
    rng = random.Random(seed)
    valid = valid_upsample_indices()
    seen: dict[Genotype, None] = {}
    while len(seen) < n:
        g = Genotype(rng.choice(valid), "".join(rng.choice("01") for _ in range(25)))
        seen.setdefault(g, None)
    return list(seen)
