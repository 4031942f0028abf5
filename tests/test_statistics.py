"""Statistics for small evaluations, against hand-computed expectations (arithmetic in the comments)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from fractions import Fraction

import pytest

from app.evaluation.statistics import (
    DEFAULT_THRESHOLDS,
    CalibrationBin,
    ScoredCall,
    calibration,
    fit_threshold,
    mcnemar_exact,
    threshold_sweep,
    verdict,
    wilson_interval,
)

Z2 = 1.959963984540054**2  # z² = 3.841459...

# --- McNemar -------------------------------------------------------------------------------------------------


def test_mcnemar_hand_values():
    assert mcnemar_exact(0, 0) == 1.0  # n = 0: nothing discordant
    assert mcnemar_exact(5, 0) == 0.0625  # 2 * C(5,0)/2^5 = 2/32
    # 2 * (C(12,0) + C(12,1) + C(12,2)) / 2^12 = 2 * (1 + 12 + 66) / 4096 = 158/4096 = 0.03857421875
    assert mcnemar_exact(10, 2) == pytest.approx(158 / 4096, rel=1e-15)
    assert mcnemar_exact(10, 2) == pytest.approx(0.0385742, abs=1e-7)
    # 2 * (1 + 6 + 15 + 20) / 64 = 84/64 > 1, clamped
    assert mcnemar_exact(3, 3) == 1.0
    # n = 5: 2 * (C(5,0) + C(5,1)) / 32 = 2 * 6/32 = 0.375
    assert mcnemar_exact(4, 1) == 0.375


@pytest.mark.parametrize(("b", "c"), [(0, 1), (1, 4), (10, 2), (7, 3), (40, 20), (1100, 900)])
def test_mcnemar_symmetric(b, c):
    assert mcnemar_exact(b, c) == mcnemar_exact(c, b)


def test_mcnemar_matches_fractions_moderate_n():
    # n = 60, k <= 20: the exact rational value, rounded once
    exact = 2 * Fraction(sum(math.comb(60, k) for k in range(21)), 2**60)
    assert mcnemar_exact(40, 20) == float(exact)


def test_mcnemar_large_n():
    # b = c = 1000: the lower tail is already over half the mass (it includes the middle term), so 2 * tail > 1
    assert mcnemar_exact(1000, 1000) == 1.0
    # b = 1001, c = 999: just under half + half the middle term... still ≈ 1 (far from significant)
    assert mcnemar_exact(1001, 999) == pytest.approx(1.0, abs=0.05)
    # b = 1100, c = 900, n = 2000: compare with a log-space sum (lgamma + log-sum-exp), no big integers
    n, k_max = 2000, 900
    logs = [math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) for k in range(k_max + 1)]
    top = max(logs)
    log_p = math.log(2) + top + math.log(sum(math.exp(v - top) for v in logs)) - n * math.log(2)
    p = mcnemar_exact(1100, 900)
    assert 0 < p < 1e-4  # normal approximation: z ≈ (200 - 1)/sqrt(2000) ≈ 4.45, p ≈ 8.6e-6
    assert p == pytest.approx(math.exp(log_p), rel=1e-9)


def test_mcnemar_tiny_values_do_not_underflow_early():
    # b = 1000, c = 1: 2 * (C(1001,0) + C(1001,1)) / 2^1001 = 2 * 1002 * 2^-1001 = 2004 * 2^-1001 ≈ 1e-298
    assert mcnemar_exact(1000, 1) == math.ldexp(2004, -1001)
    assert mcnemar_exact(3000, 0) == 0.0  # 2^-2999 is below the smallest float


def test_mcnemar_rejects_negative():
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_verdict_words():
    assert verdict(0, 0, 1.0) == "no change (identical answers)"
    assert verdict(12, 1, 0.004) == "better, p = 0.004"
    assert verdict(1, 12, 0.0123) == "worse, p = 0.012"  # two significant figures
    assert verdict(10, 2, mcnemar_exact(10, 2)) == "better, p = 0.039"  # 0.03857 -> 0.039
    assert verdict(2, 10, mcnemar_exact(2, 10)) == "worse, p = 0.039"
    assert verdict(5, 3, 0.41) == "no significant change (p = 0.41)"
    assert verdict(3, 3, 1.0) == "no significant change (p = 1)"
    assert verdict(30, 1, 1e-7) == "better, p < 0.001"
    assert verdict(5, 0, 0.05) == "no significant change (p = 0.05)"  # significant means p < alpha
    assert verdict(5, 0, 0.0625, alpha=0.1) == "better, p = 0.062"  # 0.0625 rounds half-to-even


# --- Wilson --------------------------------------------------------------------------------------------------


def test_wilson_8_of_10():
    # p = 0.8, n = 10, z² = 3.841459
    # denominator 1 + z²/n = 1.3841459
    # centre (p + z²/2n)/den = (0.8 + 0.1920730)/1.3841459 = 0.9920730/1.3841459 = 0.716744
    # half z*sqrt(p(1-p)/n + z²/4n²)/den = 1.959964*sqrt(0.016 + 0.0096036)/1.3841459
    #      = 1.959964*sqrt(0.0256036)/1.3841459 = 1.959964*0.1600114/1.3841459 = 0.313617/1.3841459 = 0.226578
    # -> (0.716744 - 0.226578, 0.716744 + 0.226578) = (0.490166, 0.943322)
    low, high = wilson_interval(8, 10)
    assert round(low, 4) == 0.4902
    assert round(high, 4) == 0.9433


def test_wilson_edges():
    # 0/10: lower 0; upper = z²/(n + z²) = 3.841459/13.841459 = 0.277531
    low, high = wilson_interval(0, 10)
    assert low == 0.0
    assert high == pytest.approx(Z2 / (10 + Z2))
    assert round(high, 4) == 0.2775
    # 10/10: lower = n/(n + z²) = 10/13.841459 = 0.722469; upper 1
    low, high = wilson_interval(10, 10)
    assert low == pytest.approx(10 / (10 + Z2))
    assert round(low, 4) == 0.7225
    assert high == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


# --- calibration ---------------------------------------------------------------------------------------------


def test_calibration_hand_example():
    # bins of width 0.1: 0.95 and 0.9 -> bin 9 [0.9, 1.0]; 0.15 -> bin 1; 0.55 -> bin 5
    # bin 9: count 2, mean score (0.95+0.9)/2 = 0.925, accuracy 1/2 -> weight 2/4 * |0.5 - 0.925| = 0.5*0.425 = 0.2125
    # bin 1: count 1, mean 0.15, accuracy 0       -> 1/4 * 0.15 = 0.0375
    # bin 5: count 1, mean 0.55, accuracy 1       -> 1/4 * 0.45 = 0.1125
    # ECE = 0.2125 + 0.0375 + 0.1125 = 0.3625
    result = calibration([0.95, 0.9, 0.15, 0.55], [True, False, False, True])
    assert result.ece == pytest.approx(0.3625)
    bins = result.bins
    assert len(bins) == 10
    assert [b.count for b in bins] == [0, 1, 0, 0, 0, 1, 0, 0, 0, 2]
    assert bins[9].low == 0.9
    assert bins[9].high == 1.0
    assert bins[9].mean_score == pytest.approx(0.925)
    assert bins[9].accuracy == 0.5
    assert bins[1].accuracy == 0.0
    assert bins[0] == CalibrationBin(low=0.0, high=0.1, count=0, mean_score=None, accuracy=None)
    assert json.loads(json.dumps(asdict(result)))["bins"][0] == {"low": 0.0, "high": 0.1, "count": 0,
                                                                 "mean_score": None, "accuracy": None}


def test_calibration_edges():
    # 1.0 goes in the last bin; perfectly calibrated extremes give ECE 0
    result = calibration([1.0, 0.0], [True, False], bins=4)
    assert [b.count for b in result.bins] == [1, 0, 0, 1]
    assert result.ece == 0.0
    assert calibration([], []).ece is None
    with pytest.raises(ValueError):
        calibration([1.2], [True])
    with pytest.raises(ValueError):
        calibration([0.5], [True, False])


@pytest.mark.parametrize("bins", [1, 3, 7, 10, 20])
def test_calibration_bin_edges_are_consistent(bins):
    # each score falls in the bin whose reported [low, high) holds it (1.0 in the last), despite float rounding
    for i in range(101):
        score = i / 100
        [row] = [b for b in calibration([score], [True], bins=bins).bins if b.count]
        assert row.low <= score
        assert score < row.high or (score == 1.0 and row.high == 1.0)


# --- threshold sweep and fit ---------------------------------------------------------------------------------

# 8 calls, one without a score -> 7 scored
SMALL = [
    ScoredCall("a", 0.95, "a"),  # 1: right when answered
    ScoredCall("b", 0.85, "b"),  # 2: right when answered
    ScoredCall("c", 0.6, "d"),  # 3: wrong either way (answered c, or none; expected d)
    ScoredCall("a", 0.4, "none"),  # 4: right only when not answered
    ScoredCall("none", 0.9, "none"),  # 5: router said none: never answered, always right
    ScoredCall("none", 0.7, "b"),  # 6: router said none: never answered, always wrong
    ScoredCall("e", None, "e"),  # 7: no score -> skipped
    ScoredCall("b", 0.3, "b"),  # 8: right only when answered
]
THRESHOLDS = [0.0, 0.5, 0.8, 0.9, 1.0]


def test_sweep_small_by_hand():
    sweep = threshold_sweep(SMALL, THRESHOLDS)
    assert sweep.skipped == 1
    assert sweep.scored == 7
    rows = {r.threshold: r for r in sweep.rows}
    assert list(rows) == THRESHOLDS

    # t=0.0: answered 1,2,3,4,8 (5 of 7); right among them 1,2,8 -> 3/5
    # unanswered 5 (right), 6 (wrong) -> overall (3 + 1)/7; none predicted {5,6}, right 1 -> 1/2; expected none {4,5}
    # predicted none among them {5} -> recall 1/2
    r = rows[0.0]
    assert (r.answered_count, r.answered_correct) == (5, 3)
    assert r.answered == pytest.approx(5 / 7)
    assert r.accuracy_answered == pytest.approx(3 / 5)
    assert r.accuracy == pytest.approx(4 / 7)
    assert (r.none_precision, r.none_recall) == (0.5, 0.5)

    # t=0.5: answered 1,2,3 -> 2/3 right; unanswered 4 (right), 5 (right), 6 (wrong), 8 (wrong)
    # overall (2 + 2)/7; none precision 2/4; recall {4,5} both -> 1
    r = rows[0.5]
    assert r.answered_count == 3
    assert r.accuracy_answered == pytest.approx(2 / 3)
    assert r.accuracy == pytest.approx(4 / 7)
    assert (r.none_precision, r.none_recall) == (0.5, 1.0)

    # t=0.8: answered 1,2 -> 2/2; unanswered 3 (wrong), 4, 5 (right), 6, 8 (wrong) -> overall (2 + 2)/7
    # none precision 2/5
    r = rows[0.8]
    assert r.answered_count == 2
    assert r.accuracy_answered == 1.0
    assert r.accuracy == pytest.approx(4 / 7)
    assert r.none_precision == pytest.approx(2 / 5)
    assert r.none_recall == 1.0

    # t=0.9: answered 1 only (0.85 < 0.9; call 5 scores 0.9 but said none) -> 1/1; overall (1 + 2)/7; none 2/6
    r = rows[0.9]
    assert r.answered_count == 1
    assert r.accuracy_answered == 1.0
    assert r.accuracy == pytest.approx(3 / 7)
    assert r.none_precision == pytest.approx(1 / 3)

    # t=1.0: nothing answered -> accuracy_answered None; overall = expected none 2/7; none precision 2/7
    r = rows[1.0]
    assert r.answered_count == 0
    assert r.answered == 0.0
    assert r.accuracy_answered is None
    assert r.accuracy == pytest.approx(2 / 7)
    assert r.none_precision == pytest.approx(2 / 7)
    assert r.none_recall == 1.0


def test_sweep_defaults_undefined_ratios_and_json():
    sweep = threshold_sweep(SMALL)
    assert [r.threshold for r in sweep.rows] == list(DEFAULT_THRESHOLDS)
    assert DEFAULT_THRESHOLDS[0] == 0.0
    assert DEFAULT_THRESHOLDS[7] == 0.35
    assert DEFAULT_THRESHOLDS[-1] == 1.0
    assert len(DEFAULT_THRESHOLDS) == 21
    # no expected none -> recall None; everything answered -> no none predicted -> precision None
    [row] = threshold_sweep([ScoredCall("a", 0.5, "a")], [0.0]).rows
    assert (row.none_precision, row.none_recall) == (None, None)
    # unsorted, duplicated thresholds come back sorted and unique
    assert [r.threshold for r in threshold_sweep(SMALL, [0.5, 0.0, 0.5]).rows] == [0.0, 0.5]
    data = asdict(sweep)
    assert data["skipped"] == 1
    json.dumps(data)


def test_sweep_and_fit_without_scores():
    calls = [ScoredCall("a", None, "a"), ScoredCall("none", None, "none"), ScoredCall("b", math.nan, "b")]
    sweep = threshold_sweep(calls)
    assert (sweep.rows, sweep.scored, sweep.skipped) == ([], 0, 3)
    fit = fit_threshold(calls)
    assert fit.threshold is None
    assert "all 3 calls lack a score" in fit.reason
    assert fit.warning is not None


def test_fit_max_accuracy_small():
    # accuracies by threshold: 4/7, 4/7, 4/7, 3/7, 2/7 -> tie at 0.0, 0.5, 0.8 -> lowest, 0.0 (answers 5/7)
    fit = fit_threshold(SMALL, thresholds=THRESHOLDS)
    assert fit.threshold == 0.0
    assert fit.accuracy == pytest.approx(4 / 7)
    assert fit.answered == pytest.approx(5 / 7)
    assert fit.accuracy_answered == pytest.approx(3 / 5)
    assert fit.reason == "maximises accuracy"
    assert fit.warning is not None
    assert "only 7 scored calls (fewer than 50)" in fit.warning
    assert "only 5 calls answered at threshold 0 (fewer than 10)" in fit.warning
    assert "Wilson" not in fit.warning  # no precision target
    json.dumps(asdict(fit))


def test_fit_precision_target_small():
    # precision on answered: 3/5, 2/3, 1, 1, None -> reaching 95%: 0.8 (2 answered), 0.9 (1) -> 0.8, answers 2/7
    fit = fit_threshold(SMALL, target_precision=0.95, thresholds=THRESHOLDS)
    assert fit.threshold == 0.8
    assert fit.accuracy_answered == 1.0
    assert fit.answered == pytest.approx(2 / 7)
    # 2/7 = 0.2857 -> 28.6%
    assert fit.reason == "the lowest threshold reaching 95% precision on answered calls, answering 28.6% of calls"
    assert fit.warning is not None
    assert "only 7 scored calls" in fit.warning
    assert "only 2 calls answered at threshold 0.8" in fit.warning
    # Wilson lower bound for 2/2 = n/(n + z²) = 2/5.841459 = 0.34238 -> 34.2%
    assert "2/2 = 100%, but its 95% Wilson lower bound 34.2% is below the 95% target" in fit.warning


def test_fit_precision_target_unreachable():
    # with thresholds 0.0 and 0.5 the precision on answered calls is 3/5 and 2/3; the best is 2/3 = 66.7% at 0.5
    fit = fit_threshold(SMALL, target_precision=0.9, thresholds=[0.0, 0.5])
    assert fit.threshold is None
    assert (fit.accuracy, fit.answered, fit.accuracy_answered) == (None, None, None)
    assert fit.reason == ("no threshold reaches 90% precision on answered calls; "
                          "the best is 66.7% at threshold 0.5 (3 calls answered)")
    assert fit.warning is not None
    assert "only 7 scored calls" in fit.warning
    # nothing ever answered
    fit = fit_threshold([ScoredCall("none", 0.9, "a")], target_precision=0.5, thresholds=[0.0])
    assert fit.threshold is None
    assert "no threshold answers any call" in fit.reason


# 100 calls: 90 confident and right, 10 low-scored where the right answer was none
BIG = [ScoredCall("x", 0.9, "x")] * 90 + [ScoredCall("y", 0.3, "none")] * 10


def test_fit_enough_data_no_warning():
    # t <= 0.30: all 100 answered, 90 right -> accuracy 0.9; 0.35 <= t <= 0.90: 90 answered (all right) and the
    # 10 none calls left unanswered (right) -> 1.0; t >= 0.95: nothing answered -> 10/100. Lowest of the best: 0.35
    fit = fit_threshold(BIG)
    assert fit.threshold == 0.35
    assert fit.accuracy == 1.0
    assert fit.answered == 0.9
    assert fit.warning is None
    # 95% target: first reached at 0.35 (90/90); Wilson lower 90/(90 + z²) = 90/93.841459 = 0.95906 >= 0.95
    fit = fit_threshold(BIG, target_precision=0.95)
    assert fit.threshold == 0.35
    assert fit.reason == "the lowest threshold reaching 95% precision on answered calls, answering 90% of calls"
    assert fit.warning is None


def test_fit_warns_on_wilson_bound_only():
    # 97% target: 0.35 reaches it (100%) but the Wilson lower bound 95.9% < 97%; 100 scored and 90 answered are fine
    fit = fit_threshold(BIG, target_precision=0.97)
    assert fit.threshold == 0.35
    assert fit.warning == "precision on answered calls is 90/90 = 100%, but its 95% Wilson lower bound 95.9% " \
                          "is below the 97% target"


def test_fit_warns_on_few_answered_only():
    # 60 scored calls but the router answers only 5 (all right); the others are correct nones -> accuracy 1 at 0.0
    calls = [ScoredCall("x", 0.9, "x")] * 5 + [ScoredCall("none", 0.5, "none")] * 55
    fit = fit_threshold(calls)
    assert fit.threshold == 0.0
    assert fit.accuracy == 1.0
    assert fit.warning == "only 5 calls answered at threshold 0 (fewer than 10)"


def test_fit_rejects_bad_target():
    with pytest.raises(ValueError):
        fit_threshold(SMALL, target_precision=95)
