"""The `vidattn` command on real tiny runs, in process: overrides anywhere, resume safety, one-line errors."""

import pytest

from vidattn import cli
from vidattn.engine.run_log import read_metrics_csv
from vidattn.engine.train import run_training


def test_split_overrides_takes_key_value_tokens_anywhere():
    rest, ov = cli.split_overrides(["train", "--resume", "runs/R", "train.epochs=5", "seed=2"])
    assert rest == ["train", "--resume", "runs/R"] and ov == ["train.epochs=5", "seed=2"]
    rest, ov = cli.split_overrides(["-v", "test", "runs/R", "--split", "val", "eval.clips=2", "eval.full_res=true"])
    assert rest == ["-v", "test", "runs/R", "--split", "val"] and ov == ["eval.clips=2", "eval.full_res=true"]
    # predict/visualize take the same section.key overrides; paths and other commands are left alone
    assert cli.split_overrides(["predict", "v.mp4", "eval.clips=2", "--weights", "w"]) == (
        ["predict", "v.mp4", "--weights", "w"], ["eval.clips=2"])
    argv = ["predict", "a=b.mp4", "--weights", "w"]
    assert cli.split_overrides(argv) == (argv, [])
    assert cli.split_overrides(["test", "runs/x=1"])[1] == []


def test_resume_override_after_the_flag_is_applied(tiny_config, capsys):
    run = run_training(tiny_config()).run_dir
    assert cli.main(["train", "--resume", str(run), "train.epochs=2"]) == 0
    assert [r["epoch"] for r in read_metrics_csv(run / "metrics.csv")] == [1, 2]


def test_failing_resume_override_keeps_config_yaml(tiny_config, capsys):
    run = run_training(tiny_config()).run_dir
    before = (run / "config.yaml").read_text()
    assert cli.main(["train", "--resume", str(run), "train.epochs=2", "data.root=/nowhere/at/all"]) == 2
    assert (run / "config.yaml").read_text() == before
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["before", "after"])
def test_test_accepts_overrides_before_or_after_flags(tiny_config, capsys, where):
    run = run_training(tiny_config()).run_dir
    args = ["--split", "val"]
    ov = ["eval.clips=2", "eval.full_res=true", "train.progress=false"]
    argv = ["test", str(run), *ov, *args] if where == "before" else ["test", str(run), *args, *ov]
    assert cli.main(argv) == 0
    assert "2clip-centre-fullres" in capsys.readouterr().out
