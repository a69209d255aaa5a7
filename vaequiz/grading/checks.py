"""One small function per check kind, and the registry that maps a check's name to it.

Each function reads the evidence (hidden inputs, the snippet's outputs, the reference's values)
and returns ``(passed, message)``; :func:`run_check` wraps that into a :class:`CheckResult`
with the check's name, points and hidden flag. A value that does not exist (the snippet raised,
never assigned it, a probe failed) fails the check with that reason.

Statistical checks (``gaussian``, ``independent``, ``uniform_rows``) use z-scores with a bound of
:data:`Z_LIMIT` = 6. Under a correct answer each statistic is (by the central limit theorem, on
the thousands of samples a question's trials produce) close to standard normal, so one test
fails with probability about 2e-9; a check combines at most four tests, so a correct answer
fails a check less than once in 10^8 gradings. ``with_replacement`` computes its statistic's
exact distribution instead and fails where either tail holds less than :data:`TAIL_LIMIT`, the
mass beyond |z| = 6 on one side, so it spends the same 2e-9. The coverage tests of
``uniform_rows`` (a code that never appears) spend 1e-6; its first/last-code test is sequential:
it asks for more runs (:class:`NeedsMoreRuns`) only while undecided, and its verdict equals the
fixed test's on all the runs it could ask for, so it keeps that test's budget on fewer runs.
Inputs and run seeds are derived from the question id, so the same submission always gets the
same verdict.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import torch
import torch.nn.functional as F

from vaequiz.bank.models import (
    CheckSpec,
    CloseCheck,
    DtypeCheck,
    FitCheck,
    FreshCheck,
    GaussianCheck,
    GradientCheck,
    IndependenceCheck,
    ModuleCheck,
    NearestCheck,
    RangeCheck,
    RowsFromCheck,
    ShapeCheck,
    UniformRowsCheck,
    WithReplacementCheck,
    grad_output_name,
)
from vaequiz.grading.evidence import Evidence, Unavailable, describe_value, format_shape
from vaequiz.grading.inputs import resolve_dim
from vaequiz.grading.models import CheckResult
from vaequiz.grading.sandbox.api import ModuleSummary
from vaequiz.identity import ByIdentity

Z_LIMIT = 6.0
"""|z-score| above which a statistical test fails (two-sided normal tail about 2e-9)."""

TAIL_LIMIT = 0.5 * math.erfc(Z_LIMIT / math.sqrt(2))
"""Probability beyond z = 6 on one side (about 1e-9): the budget of each tail of an exact test."""

Verdict = tuple[bool, str]
CheckFunction = Callable[[Any, Evidence], Verdict]

OK: Verdict = (True, "")


class CheckFailed(Exception):
    """Raised inside a check to fail it with a message."""


def _fail(message: str) -> CheckFailed:
    return CheckFailed(message)


def _where(ev: Evidence, index: int) -> str:
    """" on hidden inputs with B=257, D=13" when a question has several trials."""
    if len({r.trial for r in ev.runs}) <= 1:
        return ""
    return f" (on hidden inputs with {ev.runs[index].describe()})"


def _tensor(ev: Evidence, index: int, name: str) -> torch.Tensor:
    value = ev.value(index, name)
    if not isinstance(value, torch.Tensor):
        raise _fail(f"{name} is {describe_value(value)}; expected a tensor")
    return value


def _fmt(x: float) -> str:
    return f"{x:.4g}"


# --------------------------------------------------------------------------- shape and dtype


def _like_target(spec: ShapeCheck | DtypeCheck, ev: Evidence, i: int, what: str) -> torch.Tensor:
    """The tensor a ``like:`` check compares with: the reference's value or a given."""
    assert spec.like is not None
    target = ev.reference(i, spec.of) if spec.like == "reference" else ev.value(i, spec.like)
    if not isinstance(target, torch.Tensor):
        raise _fail(f"{spec.like} is not a tensor, so the {what} of {spec.of} cannot be compared")
    return target


def check_shape(spec: ShapeCheck, ev: Evidence) -> Verdict:
    """``of`` has one of the listed shapes, or the shape of a given / the reference."""
    for i in ev.run_indices():
        value = _tensor(ev, i, spec.of)
        if spec.like is not None:
            expected = [tuple(_like_target(spec, ev, i, "shape").shape)]
            note = "the expected shape" if spec.like == "reference" else f"the shape of {spec.like}"
        else:
            bind = ev.runs[i].bind
            expected = [tuple(resolve_dim(d, bind, "shape check") for d in s) for s in spec.is_ or []]
            note = ""
        if tuple(value.shape) not in expected:
            wanted = " or ".join(format_shape(s) for s in expected)
            return False, (
                f"{spec.of} has shape {format_shape(value.shape)}{_where(ev, i)}; expected {wanted}"
                + (f", {note}" if note else "")
            )
    return OK


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def check_dtype(spec: DtypeCheck, ev: Evidence) -> Verdict:
    """``of`` has one of the listed dtypes, or the dtype of a given / the reference."""
    for i in ev.run_indices():
        value = _tensor(ev, i, spec.of)
        if spec.like is not None:
            expected = [_dtype_name(_like_target(spec, ev, i, "dtype").dtype)]
            note = "" if spec.like == "reference" else f", the dtype of {spec.like}"
        else:
            expected = list(spec.is_ or [])
            note = ""
        if _dtype_name(value.dtype) not in expected:
            return False, (
                f"{spec.of} has dtype {_dtype_name(value.dtype)}; expected {' or '.join(expected)}{note}"
            )
    return OK


# --------------------------------------------------------------------------- values


def _as_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (bool, int, float)):
        return torch.tensor(value)
    raise _fail(f"{name} is {describe_value(value)}; expected a tensor")


def check_close(spec: CloseCheck, ev: Evidence) -> Verdict:
    """``of`` equals the reference's value on the same inputs, within rtol/atol."""
    for i in ev.run_indices():
        got = _as_tensor(ev.value(i, spec.of), spec.of)
        want = _as_tensor(ev.reference(i, spec.of), "the reference value")
        if got.numel() != want.numel():
            return False, (
                f"{spec.of} has {got.numel()} element(s) (shape {format_shape(got.shape)}){_where(ev, i)}; "
                f"expected {want.numel()} (shape {format_shape(want.shape)})"
            )
        a = got.detach().reshape(want.shape).to(torch.float64)
        b = want.detach().to(torch.float64)
        if not torch.isfinite(a).all() and torch.isfinite(b).all():
            return False, f"{spec.of} contains NaN or infinite values{_where(ev, i)}"
        close = torch.isclose(a, b, rtol=spec.rtol, atol=spec.atol)
        if not close.all():
            if b.numel() == 1:
                return False, f"{spec.of} = {_fmt(a.item())}{_where(ev, i)}; expected {_fmt(b.item())}"
            wrong = (~close).nonzero()[0].tolist()
            index = "(" + ", ".join(str(k) for k in wrong) + ")"
            count = int((~close).sum())
            return False, (
                f"{spec.of} differs from the expected values at {count} of {b.numel()} elements"
                f"{_where(ev, i)}, e.g. at index {index}: {_fmt(a[tuple(wrong)].item())} "
                f"instead of {_fmt(b[tuple(wrong)].item())}"
            )
    return OK


def check_range(spec: RangeCheck, ev: Evidence) -> Verdict:
    """Every element of ``of`` lies in [min, max]."""
    bounds = f"[{'-inf' if spec.min is None else _fmt(spec.min)}, {'inf' if spec.max is None else _fmt(spec.max)}]"
    for i in ev.run_indices():
        value = _tensor(ev, i, spec.of).detach().to(torch.float64)
        if value.numel() == 0:
            continue
        if torch.isnan(value).any():
            return False, f"{spec.of} contains NaN{_where(ev, i)}; expected values in {bounds}"
        low, high = value.min().item(), value.max().item()
        if spec.min is not None and low < spec.min:
            return False, f"{spec.of} has values as low as {_fmt(low)}{_where(ev, i)}; expected values in {bounds}"
        if spec.max is not None and high > spec.max:
            return False, f"{spec.of} has values as high as {_fmt(high)}{_where(ev, i)}; expected values in {bounds}"
    return OK


# --------------------------------------------------------------------------- distributions


def _residuals(ev: Evidence, i: int, of: str, mean: str, logvar: str) -> torch.Tensor:
    """(of - mean) / exp(logvar / 2) for one run, in float64; fails on a shape mismatch."""
    value = _tensor(ev, i, of).detach().to(torch.float64)
    mu = _tensor(ev, i, mean).detach().to(torch.float64)
    lv = _tensor(ev, i, logvar).detach().to(torch.float64)
    if value.shape != mu.shape:
        raise _fail(
            f"{of} has shape {format_shape(value.shape)}{_where(ev, i)}; its distribution can only be "
            f"tested with the shape of {mean}, {format_shape(mu.shape)}"
        )
    if not torch.isfinite(value).all():
        raise _fail(f"{of} contains NaN or infinite values{_where(ev, i)}")
    return (value - mu) / torch.exp(0.5 * lv)


def _z_of_correlation(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(correlation, z-score) of paired samples around 0; z ~ N(0, 1) when a, b independent."""
    a, b = a.reshape(-1), b.reshape(-1)
    denominator = math.sqrt(float(a.pow(2).sum()) * float(b.pow(2).sum()))
    if denominator == 0.0:
        raise _fail("the values have no random part, so they cannot be independent samples")
    corr = float((a * b).sum()) / denominator
    return corr, corr * math.sqrt(a.numel())


P_WITHIN_ONE_SD = math.erf(1 / math.sqrt(2))
"""Share of a Gaussian within one standard deviation of its mean (0.6827)."""


def check_gaussian(spec: GaussianCheck, ev: Evidence) -> Verdict:
    """Standardised residuals r = (of - mean) / exp(logvar / 2), pooled over all runs, look N(0, 1).

    Four z-tests, each failing a correct answer with probability about 2e-9: the mean of r is 0
    (sd 1/sqrt(n)); the mean of r^2 is 1 (sd sqrt(2/n)); the share of |r| < 1 is 0.6827 (sd
    sqrt(p(1-p)/n)), which tells a Gaussian from other unit-variance noise; and r^2 is
    uncorrelated with logvar (sd 1/sqrt(n)), which catches a spread that follows the variance
    (exp(logvar)) or the log-variance instead of the standard deviation.
    """
    rs, lvs = [], []
    for i in ev.run_indices():
        rs.append(_residuals(ev, i, spec.of, spec.mean, spec.logvar).reshape(-1))
        lvs.append(_tensor(ev, i, spec.logvar).detach().to(torch.float64).reshape(-1))
    r, lv = torch.cat(rs), torch.cat(lvs)
    n = r.numel()
    if n == 0:
        raise _fail(f"{spec.of} is empty")
    mean = float(r.mean())
    if abs(mean) * math.sqrt(n) > Z_LIMIT:
        return False, (
            f"{spec.of} is off-centre: (z - {spec.mean}) / sigma averages {_fmt(mean)} over {n} samples; "
            f"a sample of N({spec.mean}, exp({spec.logvar})) averages 0"
        )
    square = float(r.pow(2).mean())
    if abs(square - 1) / math.sqrt(2 / n) > Z_LIMIT:
        spread = "too wide" if square > 1 else "too narrow"
        return False, (
            f"the spread of {spec.of} is {spread}: its mean squared distance from {spec.mean} is "
            f"{_fmt(square)} variances; expected 1 (the standard deviation is exp({spec.logvar} / 2))"
        )
    within = float((r.abs() < 1).to(torch.float64).mean())
    p = P_WITHIN_ONE_SD
    if abs(within - p) / math.sqrt(p * (1 - p) / n) > Z_LIMIT:
        return False, (
            f"{spec.of} is not Gaussian: {within:.1%} of samples lie within one standard deviation of "
            f"{spec.mean}; a Gaussian puts {p:.1%} there (draw the noise with torch.randn)"
        )
    if float(lv.std()) > 0:
        corr, z = _z_of_correlation(r.pow(2) - 1, lv - lv.mean())
        if abs(z) > Z_LIMIT:
            return False, (
                f"after scaling by the standard deviation exp({spec.logvar} / 2), the spread of "
                f"{spec.of} still depends on {spec.logvar} (correlation {corr:.2f}); check how "
                f"{spec.logvar} becomes the standard deviation"
            )
    return OK


def check_independent(spec: IndependenceCheck, ev: Evidence) -> Verdict:
    """Standardised residuals are uncorrelated between neighbouring elements, rows and repeats.

    Each family of pairs (element j with j+1 in a row; row i with i+1; repeat k with k+1 of the
    same trial) gives a correlation whose z-score sqrt(n) * corr is N(0, 1) under independence
    (products of neighbouring pairs are themselves uncorrelated); |z| > 6 fails, and the message
    names the family with the strongest correlation.
    """
    families: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = {
        "neighbouring elements of a row": ([], []),
        "neighbouring rows": ([], []),
        "runs with the same inputs": ([], []),
    }
    previous: dict[int, torch.Tensor] = {}
    for i in ev.run_indices():
        r = _residuals(ev, i, spec.of, spec.mean, spec.logvar)
        if r.dim() >= 2:
            families["neighbouring elements of a row"][0].append(r[..., :-1])
            families["neighbouring elements of a row"][1].append(r[..., 1:])
        if r.dim() >= 1:
            families["neighbouring rows"][0].append(r[:-1])
            families["neighbouring rows"][1].append(r[1:])
        trial = ev.runs[i].trial
        if trial in previous:
            families["runs with the same inputs"][0].append(previous[trial])
            families["runs with the same inputs"][1].append(r)
        previous[trial] = r
    worst: tuple[float, float, str] | None = None
    for label, (left, right) in families.items():
        if not left:
            continue
        a = torch.cat([t.reshape(-1) for t in left])
        b = torch.cat([t.reshape(-1) for t in right])
        if a.numel() == 0:
            continue
        corr, z = _z_of_correlation(a, b)
        if abs(z) > Z_LIMIT and (worst is None or abs(z) > worst[1]):
            worst = (corr, abs(z), label)
    if worst is not None:
        corr, _, label = worst
        return False, (
            f"the noise in {spec.of} is shared or correlated between {label} (correlation "
            f"{corr:.2f}); draw independent noise for every element, e.g. torch.randn_like({spec.mean})"
        )
    return OK


def check_fresh(spec: FreshCheck, ev: Evidence) -> Verdict:
    """Repeats of a trial (same inputs, new seed) differ: the snippet does not fix a seed."""
    previous: dict[int, tuple[int, torch.Tensor]] = {}
    compared = False
    for i in ev.run_indices():
        value = _tensor(ev, i, spec.of).detach()
        trial = ev.runs[i].trial
        if trial in previous:
            compared = True
            _, earlier = previous[trial]
            if earlier.shape == value.shape and torch.equal(earlier, value):
                return False, (
                    f"{spec.of} came out identical on two runs with the same inputs; each run must draw "
                    "fresh random numbers (do not call torch.manual_seed or reuse a fixed tensor)"
                )
        previous[trial] = (i, value)
    if not compared:
        raise _fail("this question has no repeated trial, so freshness cannot be tested")
    return OK


# --------------------------------------------------------------------------- gradients


def check_gradient(spec: GradientCheck, ev: Evidence) -> Verdict:
    """The gradient of ``of.sum()`` reaches every element of each ``wrt`` (or equals the reference's)."""
    for i in ev.run_indices():
        for w in spec.wrt:
            name = grad_output_name(spec.of, w)
            grad = ev.value(i, name)
            if grad is None:
                return False, (
                    f"no gradient reaches {w} from {spec.of}: {spec.of} was computed from {w} in a way "
                    "autograd cannot follow (detach(), .data, .item(), numpy) or does not use it at all"
                )
            if not isinstance(grad, torch.Tensor):
                raise _fail(f"the gradient with respect to {w} is {describe_value(grad)}")
            grad = grad.detach().to(torch.float64)
            if not torch.isfinite(grad).all():
                return False, f"the gradient of {spec.of} with respect to {w} contains NaN or infinite values{_where(ev, i)}"
            if spec.compare == "nonzero":
                zeros = int((grad == 0).sum())
                if zeros:
                    return False, (
                        f"the gradient of {spec.of}.sum() with respect to {w} is zero at {zeros} of "
                        f"{grad.numel()} elements{_where(ev, i)}: part of {spec.of} is cut off from {w}"
                    )
            else:
                want = ev.reference(i, name)
                if want is None or not isinstance(want, torch.Tensor):
                    raise _fail(f"the reference has no gradient with respect to {w}")
                want = want.to(torch.float64)
                if grad.shape != want.shape or not torch.allclose(grad, want, rtol=spec.rtol, atol=spec.atol):
                    worst = float((grad - want).abs().max()) if grad.shape == want.shape else float("nan")
                    return False, (
                        f"the gradient of {spec.of} with respect to {w} differs from the expected one"
                        f"{_where(ev, i)} (largest difference {_fmt(worst)}); {spec.of} is not the "
                        "right function of its inputs"
                    )
    return OK


# --------------------------------------------------------------------------- codebooks


_TABLE_INDEX: ByIdentity[_RowIndex] = ByIdentity()
_KEY_WEIGHTS = torch.randint(1, 2**20, (4096,), generator=torch.Generator().manual_seed(20261201))
"""Fixed weights for row keys: a row's key is its 32-bit words dotted with these (below 2^51 per
term, so 4096 terms cannot overflow). Exactness is checked after the key lookup, so a collision
can only cost the slow path, never a wrong index."""
_CHUNK = 16384
"""Elements per batch of key arithmetic: torch runs smaller operations on one thread, which
here, with every core busy grading, is much faster than splitting them."""


class _RowIndex:
    """Row contents -> first row index of an embedding table, answered for many rows at once.

    Rows are keyed by a weighted sum of their words (after turning -0.0 into 0.0, so keys agree
    where float equality does); the table row a key names is confirmed by comparing the rows
    exactly. Tables whose distinct rows share a key, or rows too wide for the weights, use a
    dictionary of row tuples instead. (Sorting and fancy indexing are avoided: torch splits them
    over threads even when tiny, which is far slower while other processes hold the cores.)
    """

    def __init__(self, table: torch.Tensor) -> None:
        self.table = _normalised(table.detach())
        self.exact: dict[tuple[float, ...], int] | None = None
        self.by_key: dict[int, int] = {}
        keys = _row_keys(self.table)
        if keys is None:
            self._use_dictionary()
            return
        for index, key in enumerate(keys.tolist()):
            first = self.by_key.setdefault(key, index)
            if first != index and not torch.equal(self.table[first], self.table[index]):
                self._use_dictionary()
                return

    def _use_dictionary(self) -> None:
        self.exact = {}
        for index, row in enumerate(self.table.tolist()):
            self.exact.setdefault(tuple(row), index)

    def lookup(self, rows: torch.Tensor) -> torch.Tensor:
        """For each row, the index of the first identical table row, or -1."""
        rows = rows.to(self.table.dtype)
        if self.exact is None and rows.numel():
            step = max(1, _CHUNK // max(1, rows.shape[1]))
            found = [self._lookup(part) for part in rows.split(step)]
            if all(part is not None for part in found):
                return torch.cat(found)  # type: ignore[arg-type]
        if self.exact is None:
            self._use_dictionary()
        assert self.exact is not None
        return torch.tensor([self.exact.get(tuple(row), -1) for row in rows.tolist()], dtype=torch.int64)

    def _lookup(self, rows: torch.Tensor) -> torch.Tensor | None:
        rows = _normalised(rows)
        keys = _row_keys(rows)
        if keys is None:
            return None
        named = [self.by_key.get(key, -1) for key in keys.tolist()]
        candidate = torch.tensor(named, dtype=torch.int64)
        same = (torch.index_select(self.table, 0, candidate.clamp(min=0)) == rows).all(1)
        return torch.where(same & (candidate >= 0), candidate, torch.full_like(candidate, -1))


def _normalised(rows: torch.Tensor) -> torch.Tensor:
    rows = rows.contiguous()
    return rows + 0.0 if rows.is_floating_point() else rows


def _row_keys(rows: torch.Tensor) -> torch.Tensor | None:
    """One int64 per row from its bytes read as 32-bit words (16 or 8 bits for narrower types),
    or None when a row has more words than there are weights."""
    if rows.is_complex() or rows.dtype == torch.bool or rows.dim() != 2:
        return None
    size = rows.element_size()
    word = {1: torch.uint8, 2: torch.int16}.get(size, torch.int32)
    words = rows.view(word).reshape(rows.shape[0], -1)
    if words.shape[1] > _KEY_WEIGHTS.numel():
        return None
    return (words.to(torch.int64) * _KEY_WEIGHTS[: words.shape[1]]).sum(1)


def _table_index(table: torch.Tensor) -> _RowIndex:
    """The row index of an embedding table, memoised per table tensor (the same tensor serves
    every run of a trial and every student). The cache holds the tensor itself, so its id cannot
    be reused by another table while the entry lives."""
    return _TABLE_INDEX.get(table, lambda: _RowIndex(table))


def _row_indices(rows: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """For each row of ``rows``, the index of an identical row of ``table``, or -1."""
    return _table_index(table).lookup(rows)


def _codes(
    spec: RowsFromCheck | UniformRowsCheck | WithReplacementCheck, ev: Evidence, indices: range
) -> list[torch.Tensor]:
    """The table index of every row of ``of`` in each of these runs, looked up in one batch per
    table and shared by the checks of one grading. Fails, for the first run in order that has
    one, with the reason: no tensor, the wrong shape, or a row that is not in the table."""
    memo: dict[int, torch.Tensor] = ev.memo.setdefault(("codes", spec.of, spec.table), {})
    todo: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    stop: Exception | None = None
    for i in indices:
        if i in memo:
            continue
        try:
            value = _tensor(ev, i, spec.of).detach()
            table = _tensor(ev, i, spec.table)  # not detached: the same object keys the row index
            if value.dim() != 2 or value.shape[1] != table.shape[1]:
                raise _fail(
                    f"{spec.of} has shape {format_shape(value.shape)}; rows of {spec.table} have shape "
                    f"({table.shape[1]},), so {spec.of} should be (N, {table.shape[1]})"
                )
        except (CheckFailed, Unavailable) as err:
            stop = err
            break
        todo.append((i, value, table))
    by_table: dict[int, list[tuple[int, torch.Tensor, torch.Tensor]]] = {}
    for item in todo:
        by_table.setdefault(id(item[2]), []).append(item)
    for group in by_table.values():
        table = group[0][2]
        found = _row_indices(torch.cat([v.to(table.dtype) for _, v, _ in group]), table)
        for (i, _, _), codes in zip(group, found.split([v.shape[0] for _, v, _ in group])):
            memo[i] = codes
    for i, value, _ in todo:
        bad = (memo[i] < 0).nonzero()
        if bad.numel():
            del memo[i]
            raise _fail(
                f"row {int(bad[0])} of {spec.of} is not a row of {spec.table} ({bad.numel()} of "
                f"{value.shape[0]} rows are not); look the codes up in {spec.table} instead of "
                "drawing new vectors"
            )
    if stop is not None:
        raise stop
    return [memo[i] for i in indices]


def check_rows_from(spec: RowsFromCheck, ev: Evidence) -> Verdict:
    """Every row of ``of`` is exactly a row of the embedding table."""
    _codes(spec, ev, ev.run_indices())
    return OK


COVERAGE_BUDGET = 1e-6
"""False-fail budget of the coverage tests of ``uniform_rows`` (a code never seen)."""
MAX_RUNS = 4096
"""Most runs a sequential check may ask for in all; past that its test is not made."""


class NeedsMoreRuns(Exception):
    """A sequential check cannot decide on the runs so far: it asks for ``runs`` runs in all."""

    def __init__(self, runs: int) -> None:
        super().__init__(f"needs {runs} runs")
        self.runs = runs


def end_code_draws(k: int, budget: float = COVERAGE_BUDGET) -> int:
    """Fewest uniform draws from k codes after which code 0 or code k-1 is still unseen with
    probability at most ``budget`` (union bound: 2 (1 - 1/k)^n <= budget)."""
    return math.ceil(math.log(budget / 2) / math.log1p(-1 / k))


def check_uniform_rows(spec: UniformRowsCheck, ev: Evidence) -> Verdict:
    """Codes pooled over all runs are uniform over the table's K rows, and every code can appear.

    Pearson's chi-square over the K counts of the declared runs, turned into a z-score by the
    Wilson-Hilferty cube-root transform (accurate in the upper tail for K - 1 degrees of
    freedom), fails above 6. When those runs draw n >= K ln(K 10^6) codes, every code must also
    appear at least once (by the union bound a uniform sampler misses one with probability below
    1e-6). And the first and last codes must appear, which catches an off-by-one such as
    ``torch.randint(0, K - 1, ...)`` or ``randint(1, K)``: sequentially, the check passes as
    soon as both have appeared, and otherwise asks for more runs (:class:`NeedsMoreRuns`), up to
    the :func:`end_code_draws` draws after which a uniform sampler has missed one with
    probability at most 1e-6; it fails only if one is still missing then. It stops early only
    once both codes have appeared, when the fixed test on all those draws would pass too, so its
    verdict and budget are those of that fixed test, at a fraction of the runs for most answers.
    """
    codes = _codes(spec, ev, ev.run_indices())
    size = 0
    for i in ev.run_indices():
        size = _tensor(ev, i, spec.table).shape[0]
    pooled = torch.cat(codes) if codes else torch.zeros(0, dtype=torch.int64)
    n, k = pooled.numel(), size
    if k < 2 or n == 0:
        raise _fail(f"{spec.table} needs at least two rows and {spec.of} at least one")
    counts = torch.bincount(pooled, minlength=k).to(torch.float64)
    expected = n / k
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    df = k - 1
    z = ((chi2 / df) ** (1 / 3) - (1 - 2 / (9 * df))) / math.sqrt(2 / (9 * df))
    if z > Z_LIMIT:
        distinct = int((counts > 0).sum())
        return False, (
            f"the codes in {spec.of} are not drawn uniformly from all {k} rows of {spec.table}: over "
            f"{n} draws only {distinct} distinct codes appeared, the most common {int(counts.max())} "
            f"times (about {expected:.2g} expected); draw indices with torch.randint(0, {k}, ...)"
        )
    if n >= k * math.log(k / COVERAGE_BUDGET):
        missing = (counts == 0).nonzero().reshape(-1)
        if missing.numel():
            return _never_appeared(spec, int(missing[0]), n, k)
    return _first_and_last_codes(spec, ev, counts, n, k)


def _never_appeared(spec: UniformRowsCheck, code: int, n: int, k: int) -> Verdict:
    return False, (
        f"code {code} of {spec.table} never appeared in {n} draws; every one of the "
        f"{k} codes must be possible (check the upper bound of your random indices)"
    )


def _first_and_last_codes(spec: UniformRowsCheck, ev: Evidence, counts: torch.Tensor, n: int, k: int) -> Verdict:
    """The sequential end-code test of :func:`check_uniform_rows`."""
    ends = {0, k - 1}
    unseen = {c for c in ends if counts[c] == 0}
    declared = len(ev.run_indices())
    more = range(declared, len(ev.all_run_indices()))
    if unseen and len(more):
        for codes in _codes(spec, ev, more):
            n += codes.numel()
            unseen -= set(codes.tolist())
    if not unseen:
        return OK
    needed = end_code_draws(k)
    if n >= needed:
        return _never_appeared(spec, min(unseen), n, k)
    runs = declared + len(more)
    wanted = math.ceil(needed * runs / n)
    if wanted > MAX_RUNS:
        return OK  # too few draws per run to test the ends: as with no coverage test at all
    raise NeedsMoreRuns(wanted)


@functools.lru_cache(maxsize=256)
def _all_distinct_probability(n: int, k: int) -> float:
    """P(n independent uniform draws from k codes are all different) = prod (1 - i/k)."""
    return math.prod(max(0.0, 1 - i / k) for i in range(n))


def _success_count_distribution(probabilities: list[float]) -> torch.Tensor:
    """Exact distribution of how many of these independent events happen (Poisson binomial)."""
    return _count_distribution(tuple(probabilities)).clone()


@functools.lru_cache(maxsize=64)
def _count_distribution(probabilities: tuple[float, ...]) -> torch.Tensor:
    """:func:`_success_count_distribution`, memoised: every answer to a question whose runs draw
    as many codes as asked has the same chances."""
    pmf = [1.0]
    for q in probabilities:
        pmf = [a * (1 - q) + b * q for a, b in zip(pmf + [0.0], [0.0] + pmf)]
    return torch.tensor(pmf, dtype=torch.float64)


def _runs_with_a_repeat(codes: list[torch.Tensor]) -> int:
    """How many of these runs hold some code twice (runs of one size sorted together)."""
    by_size: dict[int, list[torch.Tensor]] = {}
    for run in codes:
        by_size.setdefault(run.numel(), []).append(run.reshape(-1))
    repeated = 0
    for size, runs in by_size.items():
        if size > 1:
            ordered = torch.stack(runs).sort(dim=1).values
            repeated += int((ordered[:, 1:] == ordered[:, :-1]).any(1).sum())
    return repeated


def check_with_replacement(spec: WithReplacementCheck, ev: Evidence) -> Verdict:
    """Within a run, codes repeat as often as independent uniform draws with replacement make them.

    The statistic is the number of runs whose codes are not all different. A run of n draws from
    K codes has one with probability 1 - prod_{i<n} (1 - i/K) (the birthday problem), so the
    count's exact distribution over the runs follows (a Poisson binomial); the check fails where
    either tail, at the observed count, holds less than :data:`TAIL_LIMIT`. Draws without
    replacement (``randperm``, ``multinomial`` without ``replacement=True``) never repeat a code
    and fail the lower tail; a sampler confined to a few codes fails the upper one. A question
    whose runs are too few to tell the two apart fails for every answer, which ``vaequiz
    verify`` reports against the reference.
    """
    chances: list[float] = []
    repeated = 0
    sizes: set[int] = set()
    k = 0
    all_codes = _codes(spec, ev, ev.run_indices())
    for i, codes in zip(ev.run_indices(), all_codes):
        k = _tensor(ev, i, spec.table).shape[0]
        sizes.add(codes.numel())
        chances.append(1 - _all_distinct_probability(codes.numel(), k))
    repeated = _runs_with_a_repeat(all_codes)
    runs = len(chances)
    pmf = _success_count_distribution(chances)
    if float(pmf[0]) >= TAIL_LIMIT:
        raise _fail(
            f"{runs} runs cannot tell draws with replacement from draws without (all-distinct "
            f"draws would happen by chance with probability {float(pmf[0]):.2g}); the question "
            "needs more repeats or more draws per run"
        )
    expected = sum(chances)
    each = f" ({sizes.pop()} codes each)" if len(sizes) == 1 else ""
    if float(pmf[: repeated + 1].sum()) < TAIL_LIMIT:
        seen = f"no code appeared twice in any of {runs}" if repeated == 0 else (
            f"a code appeared twice in only {repeated} of {runs}"
        )
        return False, (
            f"the codes in {spec.of} are not drawn with replacement: {seen} runs of your code{each}, "
            f"while drawing every code independently from all {k} "
            f"repeats one in about {expected:.0f} of them (the birthday problem); draw the indices "
            f"with torch.randint(0, {k}, ...), not torch.randperm or torch.multinomial without "
            "replacement=True"
        )
    if float(pmf[repeated:].sum()) < TAIL_LIMIT:
        return False, (
            f"the codes in {spec.of} repeat too often: a code appeared twice in {repeated} of {runs} "
            f"runs of your code{each}, while drawing every code independently and uniformly from all "
            f"{k} repeats one in about {expected:.0f} of them; draw each index from all the rows"
        )
    return OK


def check_nearest(spec: NearestCheck, ev: Evidence) -> Verdict:
    """``of[i]`` indexes a row of ``table`` at minimal Euclidean distance from ``points[i]``.

    Ties and float32 rounding are allowed: the chosen squared distance may exceed the minimum by
    1e-4 of the squared norms involved.
    """
    for i in ev.run_indices():
        value = _tensor(ev, i, spec.of).detach()
        points = _tensor(ev, i, spec.rows).detach().to(torch.float64)
        table = _tensor(ev, i, spec.table).detach().to(torch.float64)
        n, k = points.shape[0], table.shape[0]
        if tuple(value.shape) != (n,):
            return False, (
                f"{spec.of} has shape {format_shape(value.shape)}{_where(ev, i)}; expected ({n},), "
                f"one index per row of {spec.rows}"
            )
        if value.is_floating_point() or value.is_complex():
            if not torch.equal(value, value.round()):
                return False, f"{spec.of} holds non-integer values; expected row indices of {spec.table}"
        indices = value.to(torch.int64)
        if n and (indices.min() < 0 or indices.max() >= k):
            return False, f"{spec.of} holds indices outside 0..{k - 1}, the rows of {spec.table}"
        d2 = torch.cdist(points, table).pow(2)
        chosen = d2.gather(1, indices.reshape(-1, 1)).reshape(-1)
        best, best_index = d2.min(1)
        slack = 1e-4 * (points.pow(2).sum(1) + table.pow(2).sum(1).max())
        wrong = (chosen > best + slack).nonzero().reshape(-1)
        if wrong.numel():
            row = int(wrong[0])
            return False, (
                f"{spec.of}[{row}] = {int(indices[row])}{_where(ev, i)}, a row at distance "
                f"{_fmt(chosen[row].sqrt().item())} from {spec.rows}[{row}], but row {int(best_index[row])} "
                f"of {spec.table} is closer ({_fmt(best[row].sqrt().item())}); {wrong.numel()} of {n} "
                "indices are not nearest"
            )
    return OK


# --------------------------------------------------------------------------- modules


def check_module(spec: ModuleCheck, ev: Evidence) -> Verdict:
    """``of`` is an nn.Module with at least ``min_trainable`` trainable parameters."""
    for i in ev.run_indices():
        value = ev.value(i, spec.of)
        if not isinstance(value, ModuleSummary):
            return False, f"{spec.of} is {describe_value(value)}; expected an nn.Module"
        if value.trainable_parameters < spec.min_trainable:
            return False, (
                f"{spec.of} ({value.class_name}) has {value.trainable_parameters} trainable parameters; "
                f"expected at least {spec.min_trainable}"
            )
    return OK


def check_fit(spec: FitCheck, ev: Evidence) -> Verdict:
    """The fit probe's final predictions reach a mean loss below ``below`` on its batch.

    The loss is computed here from the predictions and the grader's own targets, never taken
    from the snippet.
    """
    for i in ev.run_indices():
        probe = next((p for p in ev.runs[i].probes if p.kind == "fit" and p.as_ == spec.of), None)
        if probe is None:
            raise _fail(f"no fit probe produces {spec.of}")
        prediction = _tensor(ev, i, spec.of).detach().to(torch.float64)
        target = probe.args[1].to(torch.float64)
        if prediction.numel() != target.numel():
            return False, (
                f"{probe.target} produced {prediction.numel()} values for a batch of {target.numel()} "
                "targets, so it cannot be fitted"
            )
        prediction = prediction.reshape(target.shape)
        if not torch.isfinite(prediction).all():
            return False, f"training {probe.target} produced NaN or infinite outputs"
        if probe.loss == "bce":
            if prediction.min() < 0 or prediction.max() > 1:
                return False, (
                    f"{probe.target} outputs values in [{_fmt(prediction.min().item())}, "
                    f"{_fmt(prediction.max().item())}]; binary cross-entropy needs probabilities in [0, 1]"
                )
            loss = float(F.binary_cross_entropy(prediction.clamp(1e-7, 1 - 1e-7), target))
            what = "binary cross-entropy"
        else:
            loss = float(F.mse_loss(prediction, target))
            what = "mean squared error"
        if not loss < spec.below:
            return False, (
                f"after {probe.steps} steps of Adam (lr {probe.lr:g}) on a batch of {target.shape[0]}, "
                f"{probe.target} reaches a {what} of {loss:.3f} per element; a model that can learn gets "
                f"below {spec.below:g}"
            )
    return OK


# --------------------------------------------------------------------------- registry

CHECKS: dict[str, CheckFunction] = {
    "shape": check_shape,
    "dtype": check_dtype,
    "close": check_close,
    "range": check_range,
    "gaussian": check_gaussian,
    "independent": check_independent,
    "fresh": check_fresh,
    "gradient": check_gradient,
    "rows_from": check_rows_from,
    "uniform_rows": check_uniform_rows,
    "with_replacement": check_with_replacement,
    "nearest": check_nearest,
    "module": check_module,
    "fit": check_fit,
}
"""Check kind (the ``check`` field in the bank) -> the function that evaluates it."""


def run_check(spec: CheckSpec, ev: Evidence, extensible: bool = False) -> CheckResult:
    """Evaluate one check; any missing value or failure becomes a failed result with its reason.

    A sequential check that cannot decide yet raises :class:`NeedsMoreRuns` to the caller when
    ``extensible`` (the caller can make more runs); otherwise it fails, saying so.
    """
    try:
        passed, message = CHECKS[spec.check](spec, ev)
    except NeedsMoreRuns as more:
        if extensible:
            raise
        passed, message = False, (
            f"could not be decided on {len(ev.all_run_indices())} runs of your code; "
            f"it needs {more.runs}"
        )
    except (Unavailable, CheckFailed) as err:
        passed, message = False, str(err)
    except Exception as err:  # a malformed value must fail the check, never the grader
        passed, message = False, f"could not be checked: {type(err).__name__}: {err}"
    if not passed and spec.message:
        message = f"{spec.message} ({message})" if message else spec.message
    return CheckResult(
        name=spec.title,
        passed=passed,
        message=message if not passed else "",
        points=spec.points,
        hidden=spec.hidden,
    )


