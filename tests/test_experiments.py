"""The experiment runner: real trials in their own processes, MFR after its teacher, resume, aggregation."""

import json
import math
from pathlib import Path

import pytest

from vidattn.benchmark import METRICS, Row, SynthBudget, attention_figures, row_trials, select_rows
from vidattn.experiments import TrialError, aggregate, mean_std, plot_seed_curves, run_trials


def test_mean_std_is_the_sample_spread():
    mean, std, n = mean_std([1.0, 2.0, 3.0, None, float("nan")])
    assert (mean, n) == (2.0, 3) and math.isclose(std, 1.0)
    assert mean_std([4.0]) == (4.0, 0.0, 1)
    assert math.isnan(mean_std([])[0])


def test_aggregate_groups_rows_over_seeds():
    results = {f"a-seed{s}": {"key": "a", "seed": s, "test_top1": v, "attention": {"where": {"ratio": r}}}
               for s, v, r in ((0, 50.0, 1.0), (1, 70.0, 3.0))}
    results["b-seed0"] = {"key": "b", "seed": 0, "test_top1": 40.0}
    stats = aggregate(results, ["test_top1", "attention.where.ratio"])
    assert stats["a"]["test_top1"]["mean"] == 60.0 and math.isclose(stats["a"]["test_top1"]["std"], 200 ** 0.5)
    assert stats["a"]["attention.where.ratio"]["values"] == [1.0, 3.0]
    assert "attention.where.ratio" not in stats["b"] and stats["b"]["test_top1"]["n"] == 1


@pytest.fixture(scope="module")
def tiny_budget_and_data(tmp_path_factory):
    from vidattn.data import generate_synth_actions

    root = tmp_path_factory.mktemp("www")
    data = generate_synth_actions(root / "data", mode="www", num_classes=2, videos_per_class=5, num_frames=8,
                                  size=32, split=(0.4, 0.2, 0.4), workers=2, progress=False)
    budget = SynthBudget(seeds=(0, 1), epochs=1, base_width=4, num_segments=4, batch_size=2, pretrained=False,
                         c3d_frames=4, progress=False)
    return budget, data, root


def test_trials_run_in_processes_mfr_waits_for_its_teacher_and_reruns_skip(tiny_budget_and_data):
    budget, data, root = tiny_budget_and_data
    rows = (Row("w3", "W3", "tsm_w3_r18", attention=True, early=True),
            Row("w3_mfr", "W3 MFR", "tsm_w3_r18", teacher="w3"),
            Row("c3d_attention", "C3D+att", "c3d_attention", c3d=True))
    trials = row_trials(rows, budget, data, None)
    out = root / "exp"
    results = run_trials(trials, out, workers=2, progress=False)
    assert sorted(results) == sorted(f"{k}-seed{s}" for k in ("w3", "w3_mfr", "c3d_attention") for s in (0, 1))
    for name, r in results.items():
        assert 0 <= r["test_top1"] <= 100 and r["history"], name
        assert 0 <= r["reversal_pair_accuracy"] <= 100
    assert "where" in results["w3-seed0"]["attention"] and "when" in results["w3-seed0"]["attention"]
    for seed in (0, 1):  # all 4 frames seen: the test evaluation itself, through the same Predictor path
        early = results[f"w3-seed{seed}"]["early_recognition"]
        assert list(early) == ["1", "2", "3", "4"] and all(0 <= v <= 100 for v in early.values())
        assert early["4"] == pytest.approx(results[f"w3-seed{seed}"]["test_top1"])
    assert "early_recognition" not in results["w3_mfr-seed0"]
    student = json.loads((out / "runs" / "w3_mfr-seed1" / "trial.json").read_text())
    assert student["config"]["distill"]["teacher"].endswith("w3-seed1")
    c3d = results["c3d_attention-seed0"]["history"][0]
    assert {"train_top1", "val_top1", "test_top1"} <= set(c3d)  # the UCF-101 paper's Fig. 3 rows
    stamps = {n: (out / "runs" / n / "result.json").stat().st_mtime_ns for n in results}
    again = run_trials(trials, out, workers=2, progress=False)
    assert again == results
    assert stamps == {n: (out / "runs" / n / "result.json").stat().st_mtime_ns for n in results}
    png = plot_seed_curves(results, out / "curves.png", {r.key: r.label for r in rows})
    assert png.stat().st_size > 1000
    per_video = results["w3-seed0"]["attention_per_video"]  # the temporal profile is drawn from these alone
    assert len(per_video) == results["w3-seed0"]["attention"]["num_videos"]
    assert len(per_video[0]["frame_weights"]["spatial"]) == len(per_video[0]["frame_indices"]) == 4
    stats = aggregate(results, METRICS)
    figures = attention_figures(root / "figs", results, stats, rows, seed=0)
    assert Path(figures["temporal_profile"]).stat().st_size > 1000


def test_default_rows_leave_the_init_measurement_opt_in_and_rows_are_checked():
    keys = [r.key for r in select_rows()]
    assert "tsm_w3_mfr" in keys and "c3d_attention" in keys and "w3_paper_init" not in keys
    assert [r.key for r in select_rows(["tsm_w3", "w3_paper_init"])] == ["tsm_w3", "w3_paper_init"]
    with pytest.raises(ValueError, match="teacher rows too: add \\['tsm_w3'\\]"):
        select_rows(["tsm_w3_mfr"])


def test_a_failing_trial_names_its_log_and_a_rerun_continues(tiny_budget_and_data):
    budget, data, root = tiny_budget_and_data
    bad = row_trials((Row("tsm", "TSM", "tsm_r18", {"no_such_option": 1}),), budget, data, None)[:1]
    with pytest.raises(TrialError, match=r"trial tsm-seed0 failed .*log\.txt"):
        run_trials(bad, root / "bad", workers=1, progress=False)
    with pytest.raises(ValueError, match="teacher"):
        run_trials(row_trials((Row("x", "x", "tsm_r18", teacher="missing"),), budget, data, None), root / "bad2",
                   progress=False)


def test_finished_results_report_what_has_finished(tiny_budget_and_data):
    """`vidattn benchmark --report-only` reads these: finished trials only, nothing trained."""
    from vidattn.experiments import finished_results

    budget, data, root = tiny_budget_and_data
    trials = row_trials((Row("w3", "W3", "tsm_w3_r18", attention=True), Row("tsm", "TSM", "tsm_r18")), budget,
                        data, None)
    done = finished_results(trials, root / "exp")  # the trials of the first test, when it ran before this one
    assert all(name.startswith("w3-") for name in done) and not any(name.startswith("tsm-") for name in done)
    assert finished_results(trials, root / "nothing") == {}


def test_the_report_shows_each_seed_and_leaves_out_tables_of_rows_not_run():
    from dataclasses import asdict

    from vidattn.benchmark import benchmark_report

    results = {f"{k}-seed{s}": {"key": k, "seed": s, "test_top1": v}
               for k, values in (("tsm", (91.7, 93.3, 94.2)), ("tsm_w3", (25.0, 92.5, 89.2)))
               for s, v in enumerate(values)}
    summary = {"stats": aggregate(results, METRICS), "settings": {**asdict(SynthBudget()), "seeds": [0, 1, 2]},
               "wall_seconds": 60.0}
    report = benchmark_report(summary, select_rows(["tsm", "tsm_w3"]))
    assert "| TSM + W3 w/o MFR | 68.9 ± 38.1 | 25.0 / 92.5 / 89.2 |" in report
    assert "Mask initialisation" not in report  # its opt-in rows were not selected
    with_init = benchmark_report(summary, select_rows(["tsm", "tsm_w3", "w3_paper_init", "cbam_paper_init"]))
    assert "Mask initialisation" in with_init
    assert "Early recognition" not in report  # no trial measured it


def test_the_report_and_plot_show_early_recognition_over_seeds(tmp_path):
    from dataclasses import asdict

    from vidattn.benchmark import benchmark_report, early_metrics, plot_early_recognition

    frames = SynthBudget().num_segments
    results = {f"{k}-seed{s}": {"key": k, "seed": s, "test_top1": 90.0 + s,
                                "early_recognition": {str(i): 10.0 * i + s + off for i in range(1, frames + 1)}}
               for k, off in (("tsm", 0.0), ("tsm_causal", 1.0)) for s in range(3)}
    stats = aggregate(results, (*METRICS, *early_metrics(frames)))
    summary = {"stats": stats, "settings": {**asdict(SynthBudget()), "seeds": [0, 1, 2]}, "wall_seconds": 1.0}
    rows = select_rows(["tsm", "tsm_causal"])
    report = benchmark_report(summary, rows)
    assert "## Early recognition" in report
    assert "| TSM | 11.0 ± 1.0 | 21.0 ± 1.0 |" in report
    png = plot_early_recognition(stats, rows, frames, tmp_path / "early.png")
    assert png.stat().st_size > 1000
