"""Config loading: types, unknown keys, base recipes, overrides, interpolation, round trip."""

import pytest
import yaml

from vidattn.config import Config, ConfigError, apply_overrides, config_from_dict, config_to_dict, load_config


def write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def test_load_defaults_and_name_from_file(tmp_path):
    cfg = load_config(write(tmp_path / "my_recipe.yaml", {"optim": {"lr": 0.1}}))
    assert isinstance(cfg, Config)
    assert cfg.name == "my_recipe"
    assert cfg.optim.lr == 0.1
    assert cfg.optim.milestones == [20, 40]


def test_int_is_accepted_for_float_but_not_bool(tmp_path):
    assert load_config(write(tmp_path / "a.yaml", {"optim": {"lr": 1}})).optim.lr == 1.0
    assert load_config(tmp_path / "a.yaml", ["optim.lr=1e-4"]).optim.lr == 1e-4  # YAML 1.1 reads a string
    with pytest.raises(ConfigError, match=r"a\.yaml: key 'optim\.lr': .*'bool' could not be converted to Float"):
        load_config(write(tmp_path / "a.yaml", {"optim": {"lr": True}}))


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path / "bad.yaml", {"optim": {"lrr": 0.1}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert "bad.yaml" in msg and "'optim.lrr'" in msg and "did you mean 'lr'?" in msg and "\n" not in msg


def test_wrong_type_and_literal(tmp_path):
    with pytest.raises(ConfigError, match="'train.epochs': .* could not be converted to Integer"):
        load_config(write(tmp_path / "a.yaml", {"train": {"epochs": "ten"}}))
    with pytest.raises(ConfigError, match="'optim.schedule': Invalid value 'linear', expected one of"):
        load_config(write(tmp_path / "a.yaml", {"optim": {"schedule": "linear"}}))
    with pytest.raises(ConfigError, match="'data.num_classes'"):
        load_config(write(tmp_path / "a.yaml", {"data": {"num_classes": "ten"}}))


def test_base_merge_and_error_points_at_the_base_file(tmp_path):
    write(
        tmp_path / "base.yaml",
        {"name": "base", "optim": {"lr": 0.01, "momentum": 0.9}, "model": {"options": {"dropout": 0.5}}},
    )
    child = write(
        tmp_path / "child.yaml",
        {"base": "base.yaml", "optim": {"lr": 0.02}, "model": {"options": {"afr": True}}},
    )
    cfg = load_config(child)
    assert cfg.name == "child"
    assert cfg.optim.lr == 0.02 and cfg.optim.momentum == 0.9
    assert cfg.model.options == {"dropout": 0.5, "afr": True}
    write(tmp_path / "base.yaml", {"train": {"epochs": 1.5}})
    with pytest.raises(ConfigError, match=r"base\.yaml.*'train\.epochs'"):
        load_config(child)


def test_base_of_base_is_refused(tmp_path):
    write(tmp_path / "root.yaml", {})
    write(tmp_path / "mid.yaml", {"base": "root.yaml"})
    with pytest.raises(ConfigError, match="one level"):
        load_config(write(tmp_path / "leaf.yaml", {"base": "mid.yaml"}))


def test_overrides_are_yaml_values(tmp_path):
    path = write(tmp_path / "a.yaml", {})
    cfg = load_config(
        path,
        [
            "optim.lr=0.5",
            "optim.milestones=[3, 7]",
            "distill.teacher=runs/x",
            "data.num_classes=[125, 331]",
            "train.grad_clip=null",
        ],
    )
    assert cfg.optim.lr == 0.5 and cfg.optim.milestones == [3, 7]
    assert cfg.distill.teacher == "runs/x" and cfg.data.num_classes == [125, 331]
    assert cfg.train.grad_clip is None
    with pytest.raises(ConfigError, match="override 'optim.nope=1'.*unknown key 'optim.nope'"):
        load_config(path, ["optim.nope=1"])
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        load_config(path, ["optim.lr"])


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("optim: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml.*invalid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("name: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(unsafe)


def test_round_trip(tmp_path):
    cfg = load_config(write(tmp_path / "a.yaml", {"data": {"num_classes": [3, 4]}}), ["eval.crops=10"])
    again = config_from_dict(yaml.safe_load(yaml.safe_dump(config_to_dict(cfg))))
    assert again == cfg


@pytest.mark.parametrize(
    "override, key",
    [
        ("data.crop_size=0", "data.crop_size"),
        ("data.scale_size=-1", "data.scale_size"),
        ("data.num_classes=0", "data.num_classes"),
        ("data.num_classes=[3, 0]", "data.num_classes[1]"),
        ("model.options={base_width: 0}", "model.options.base_width"),
        ("eval.clips=0", "eval.clips"),
        ("train.epochs=0", "train.epochs"),
        ("train.epochs=-2", "train.epochs"),
        ("train.accumulate_steps=0", "train.accumulate_steps"),
        ("train.grad_clip=-1", "train.grad_clip"),
        ("train.max_steps_per_epoch=0", "train.max_steps_per_epoch"),
    ],
)
def test_out_of_range_values_are_one_line_errors_naming_the_key(tmp_path, override, key):
    path = write(tmp_path / "a.yaml", {})
    with pytest.raises(ConfigError) as err:
        load_config(path, [override])
    msg = str(err.value)
    assert f"'{key}'" in msg and "\n" not in msg and msg.startswith(f"override '{override}'")


def test_zero_grad_clip_and_null_caps_stay_valid(tmp_path):
    cfg = load_config(write(tmp_path / "a.yaml", {}), ["train.grad_clip=0", "train.max_steps_per_epoch=null"])
    assert cfg.train.grad_clip == 0


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_cuda_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="'train.device' is cuda but CUDA is not available"):
        load_config(write(tmp_path / "a.yaml", {}), ["train.device=cuda"])


@pytest.mark.parametrize(
    "recipe, override, where, message",
    [
        ({"data": {"mean": {"a": 1}}}, None, "a.yaml", "key 'data.mean' expects a list, got {'a': 1}"),
        ({"model": {"options": [1]}}, None, "a.yaml", "key 'model.options' expects a mapping"),
        ({"optim": None}, None, "a.yaml", "key 'optim' expects a mapping, got None"),
        ({}, "optim=3", "override 'optim=3'", "key 'optim' expects a mapping, got 3"),
        ({}, "nope.x=1", "override 'nope.x=1'", "unknown key 'nope'"),
        ({}, "optim.milestones=[1, x]", "override 'optim.milestones=[1, x]'", "key 'optim.milestones[1]': "),
        ({}, "train.run_name=${nope}", "override 'train.run_name=${nope}'", "key 'train.run_name': "),
    ],
)
def test_type_errors_are_one_line_naming_the_source_and_the_exact_key(tmp_path, recipe, override, where, message):
    path = write(tmp_path / "a.yaml", recipe)
    with pytest.raises(ConfigError) as err:
        load_config(path, [override] if override else [])
    msg = str(err.value)
    assert msg.startswith(str(path) if where == "a.yaml" else where) and message in msg and "\n" not in msg


def test_a_child_or_override_may_repair_what_its_base_sets(tmp_path):
    write(tmp_path / "base.yaml", {"train": {"device": "cuda", "epochs": 0}})
    child = write(tmp_path / "child.yaml", {"base": "base.yaml", "train": {"epochs": 3}})
    assert load_config(child, ["train.device=cpu"]).train.epochs == 3


def test_interpolation_and_its_escape(tmp_path):
    path = write(tmp_path / "exp.yaml", {"train": {"run_name": "${name}-s${seed}"}, "data": {"root": "\\${x}"}})
    cfg = load_config(path, ["seed=3"])
    assert cfg.train.run_name == "exp-s3" and cfg.data.root == "${x}"
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(config_to_dict(cfg)))) == cfg  # config.yaml resumes


def test_apply_overrides_validates_and_names_the_override(tmp_path):
    raw = config_to_dict(load_config(write(tmp_path / "a.yaml", {})))
    assert apply_overrides(raw, ["eval.clips=2"])["eval"]["clips"] == 2
    with pytest.raises(ConfigError, match=r"^override 'eval.clips=0': key 'eval.clips' must be >= 1"):
        apply_overrides(raw, ["eval.clips=0"])


def test_an_override_replaces_a_mapping_that_a_recipe_merges_into(tmp_path):
    write(tmp_path / "base.yaml", {"model": {"options": {"base_width": 16, "dropout": 0.5}}})
    child = write(tmp_path / "child.yaml", {"base": "base.yaml", "model": {"options": {"afr": True}}})
    merged = {"base_width": 16, "dropout": 0.5, "afr": True}
    assert load_config(child).model.options == merged
    assert load_config(child, ["model.options={channels: 8}"]).model.options == {"channels": 8}
    assert load_config(child, ["model.options.channels=8"]).model.options == {**merged, "channels": 8}
