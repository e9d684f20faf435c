"""`vidattn export`: real exports of narrow models in every format; the written file, run by its own runtime
(onnxruntime, torch.jit.load, torch.export.load), gives PyTorch's logits; the sidecar says how to preprocess;
the CLI writes both; a broken export is one line."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from vidattn.data.clips import InputSpec
from vidattn.export import (
    FORMATS,
    TORCH_FOR_ONNX,
    ExportError,
    adaptive_avg_pool3d,
    export_model,
    load_exported,
    require_onnx,
    require_torch_for_onnx,
)
from vidattn.models import create_model, save_weights
from vidattn.models.temporal_shift import TemporalShift

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# name -> (options, clip frames, crop size); narrow (base width 8) so the arithmetic is negligible
MODELS = {
    "tsn_r18": ({"base_width": 8}, 4, 64),
    "tsm_r18": ({"base_width": 8}, 4, 64),
    "tsm_w3_r18": ({"base_width": 8}, 4, 64),  # with AFR, the paper's model
    "tsm_cbam_r18": ({"base_width": 8}, 4, 64),
    "tsm_nl_r18": ({"base_width": 8}, 4, 64),
    "tam_r18": ({"base_width": 8}, 4, 64),
    "i3d_r18": ({"base_width": 8}, 8, 64),
    "i3d_w3_r18": ({"base_width": 8}, 8, 64),
    "c3d": ({"channels": 8, "hidden": (32,)}, 8, 56),
    "c3d_attention": ({"channels": 8, "hidden": (32,)}, 8, 56),
}
# An export's time is tracing (torch.export, the ONNX exporter's decomposition and optimiser), which grows with
# the graph, not with the arithmetic: 2-35 s per model here, all formats of all models ~4 minutes
# (docs/deploy.md). The default suite traces W3 with AFR to TorchScript; CI's slow run exports the rest.
FAST = {("tsm_w3_r18", "torchscript")}


# on torch older than TORCH_FOR_ONNX (the floor of the rest, 2.4, is tested with these skipped) `vidattn export
# --format onnx` refuses in one line (test_onnx_needs_a_recent_torch_and_says_so)
NEEDS_ONNX_TORCH = pytest.mark.skipif(torch.__version__ < TORCH_FOR_ONNX,
                                      reason=f"ONNX export needs torch >= {TORCH_FOR_ONNX}")


def _marks(name, fmt):
    marks = () if (name, fmt) in FAST else (pytest.mark.slow,)
    return (*marks, NEEDS_ONNX_TORCH) if fmt == "onnx" else marks


CASES = [pytest.param(name, fmt, marks=_marks(name, fmt)) for name in MODELS for fmt in FORMATS]
CLASSES = list("abcde")


def trained_like(model):
    """Give every BatchNorm running statistics and affine parameters away from their initial 0/1, and the
    classifier larger weights, as in a trained model: folding BN and the logits' scale are then exercised."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
        elif isinstance(m, nn.Linear):
            m.weight.data.normal_(0, 0.1, generator=g)
    return model


def build(name):
    options, frames, size = MODELS[name]
    model = trained_like(create_model(name, 5, frames, **options))
    sampling = "consecutive" if name.startswith("c3d") else "dense" if name.startswith("i3d") else "tsn"
    return model, InputSpec(frames, sampling, size=size, resize=size * 8 // 7)  # 256 / 224, as for ImageNet


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """`export(name, fmt)` -> (model, spec, result): each file is exported once per test module and read by
    every test that checks it (the parity test and the ONNX sidecar test read the same TSM+W3 file)."""
    files = {}

    def export(name, fmt):
        if (name, fmt) not in files:
            model, spec = build(name)
            out = tmp_path_factory.mktemp("export") / f"{name}{FORMATS[fmt]}"
            dynamic = fmt != "torchscript"  # TorchScript follows the batch size by tracing its arithmetic
            result = export_model(model, out, fmt, spec=spec, batch=2, dynamic_batch=dynamic, class_names=CLASSES)
            assert result.path == out and out.is_file()
            files[name, fmt] = model, spec, result
        return files[name, fmt]

    return export


@pytest.mark.parametrize("name, fmt", CASES)
def test_exported_file_gives_pytorchs_logits(name, fmt, exported):
    model, spec, result = exported(name, fmt)
    out, dynamic = result.path, result.input_shape[0] == "batch"
    assert result.rel_diff <= 1e-4
    # an independent check: a fresh load, another batch size when dynamic, clips unlike the export's
    run, _ = load_exported(out)
    clips = torch.rand(3 if dynamic else 2, 3, spec.num_frames, spec.size, spec.size) * 4 - 2
    with torch.no_grad():
        expected = model.eval()(clips)
    (got,) = run(clips)
    assert got.shape == expected.shape == (clips.shape[0], 5)
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()
    assert expected.abs().max() > 0.1  # logits of a trained-like scale, so the bound is not vacuous


@pytest.mark.slow
@NEEDS_ONNX_TORCH
def test_onnx_file_and_sidecar_describe_the_input(exported):
    _, spec, result = exported("tsm_w3_r18", "onnx")
    graph = onnx.load(str(result.path)).graph
    (clips,) = graph.input
    assert clips.name == "clips" and [o.name for o in graph.output] == ["logits"]
    dims = [d.dim_value or d.dim_param for d in clips.type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1:] == [3, 4, 64, 64]  # batch dynamic
    sidecar = json.loads(result.sidecar.read_text())
    assert result.sidecar == result.path.with_name("tsm_w3_r18.onnx.json") and sidecar["file"] == "tsm_w3_r18.onnx"
    assert sidecar["input"]["shape"] == ["batch", 3, 4, 64, 64] and sidecar["input"]["sampling"] == "tsn"
    assert sidecar["input"]["resize"] == {"short_side": 73} and sidecar["input"]["crop"] == {"center": 64}
    assert sidecar["input"]["mean"] == list(spec.mean) and sidecar["input"]["std"] == list(spec.std)
    assert sidecar["outputs"] == [{"name": "logits", "shape": ["batch", 5], "classes": CLASSES,
                                   "meaning": "logits (softmax gives probabilities)"}]
    assert sidecar["model"]["name"] == "tsm_w3_r18" and sidecar["verified"]["rel_diff"] <= 1e-4


def test_onnx_pooling_of_afr_is_the_same_average():
    # AFR's eq. 7 pools masks to the last stage's size; ONNX has no such pooling, so export rewrites it
    x = torch.rand(2, 1, 7, 9, 11)
    for size in ((7, 3, 3), (2, 4, 5), (1, 1, 1), (7, 9, 11), 2, (None, 4, None)):
        torch.testing.assert_close(adaptive_avg_pool3d(x, size), nn.functional.adaptive_avg_pool3d(x, size))


def test_temporal_shift_exports_with_the_torchscript_based_onnx_exporter(tmp_path):
    """The root cause of the once silently wrong TSM ONNX file: the shift wrote through a view of its output,
    which this exporter does not follow, so the shift became a constant of zeros that ignores the input."""
    import onnxruntime as ort

    shift, traced, other = TemporalShift(16, 4), torch.randn(8, 16, 3, 3), torch.randn(8, 16, 3, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(shift, (traced,), str(tmp_path / "shift.onnx"), dynamo=False)
    session = ort.InferenceSession(str(tmp_path / "shift.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()], "the graph does not read its input"
    (got,) = session.run(None, {session.get_inputs()[0].name: other.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), shift(other))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "tsm.safetensors"
    save_weights(trained_like(create_model("tsm_r18", 3, 4, base_width=8)), path)
    (path.parent / "classes.txt").write_text("jump\nrun\nsit\n")
    return path


def vidattn(*args):
    return subprocess.run([sys.executable, "-m", "vidattn.cli", *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=ROOT)


def test_cli_writes_the_file_and_its_sidecar(weights, tmp_path):
    out = tmp_path / "deploy" / "tsm.pt"
    proc = vidattn("export", weights, "--format", "torchscript", "--out", out, "--size", "64", "--batch", "2")
    assert proc.returncode == 0, proc.stderr
    assert f"{out}: torchscript, input clips 2x3x4x64x64" in proc.stdout and "verified with" in proc.stdout
    sidecar = json.loads((tmp_path / "deploy" / "tsm.pt.json").read_text())
    assert sidecar["input"]["shape"] == [2, 3, 4, 64, 64] and sidecar["outputs"][0]["classes"] == ["jump", "run", "sit"]
    run, _ = load_exported(out)
    (logits,) = run(torch.randn(2, 3, 4, 64, 64))
    assert logits.shape == (2, 3)


def test_a_broken_export_is_one_line_and_leaves_no_file(weights, tmp_path):
    # the model's own check: a 2D recognizer is built for its number of frames
    proc = vidattn("export", weights, "--format", "torchscript", "--out", tmp_path / "m.pt", "--frames", "3")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == "vidattn: error: model built for num_segments=4 got clips of 3 frames"
    assert not (tmp_path / "m.pt").exists()
    # an exporter failure: data-dependent control flow cannot be exported, and says so in one line
    with pytest.raises(ExportError, match=r"^SignBranch: exported-program export failed: \w+") as err:
        export_model(SignBranch(), tmp_path / "m.pt2", "exported-program", spec=InputSpec(2, size=8))
    assert "\n" not in str(err.value) and not (tmp_path / "m.pt2").exists()


def test_logits_beyond_the_tolerance_fail_with_the_difference(tmp_path):
    model, spec = build("tsm_w3_r18")
    # the file's convs have BN folded in: not bit-identical to PyTorch's, so a tolerance of 0 fails, by how much
    with pytest.raises(ExportError, match=r"logits differ from PyTorch's by up to [0-9.e-]+ \(.* of the largest "
                                          r"logit, tolerance 0\) on a random .*\(torch.jit .*\); removed m.pt$") as err:
        export_model(model, tmp_path / "m.pt", "torchscript", spec=spec, tolerance=0.0)
    assert "\n" not in str(err.value) and not (tmp_path / "m.pt").exists()
    assert not (tmp_path / "m.pt.json").exists()


def test_missing_onnxruntime_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what `import onnxruntime` sees when not installed
    with pytest.raises(ExportError, match=r"^ONNX export needs onnxruntime: pip install 'vidattn\[onnx\]'"):
        require_onnx()


def test_onnx_needs_a_recent_torch_and_says_so(tmp_path):
    for version in (TORCH_FOR_ONNX, "2.6.0+cu124", "2.13.0", "2.10.0"):
        require_torch_for_onnx(version)
    with pytest.raises(ExportError, match=r"^ONNX export needs torch >= 2.6 \(.*\), this is torch 2.4.1\+cu121; the "
                                          r"exported-program and torchscript formats work with it$"):
        require_torch_for_onnx("2.4.1+cu121")
    if torch.__version__ < TORCH_FOR_ONNX:  # the torch of this run: `export_model` refuses before it traces
        model, spec = build("tsn_r18")
        with pytest.raises(ExportError, match="ONNX export needs torch"):
            export_model(model, tmp_path / "m.onnx", "onnx", spec=spec)
        assert not (tmp_path / "m.onnx").exists()


class SignBranch(nn.Module):
    """A forward whose path depends on the data: torch.export refuses it."""

    def forward(self, x):
        return x.mean(dim=(2, 3, 4)) if x.sum() > 0 else -x.mean(dim=(2, 3, 4))
