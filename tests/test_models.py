"""Loading the original JSON format: architectures, class names, and clear errors."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from conftest import model_path
from synth import model_entries, write_model
from w2x import ModelFormatError, load_model
from w2x.cli.main import main as cli_main
from w2x.nn.archs import ARCHS

# numba's Winograd forms against numpy's im2col + GEMM through a whole random net of weights
# N(0, 0.03), whose outputs lie around 0.25-0.5: float32 rounding, measured at 0.6-1.2e-7.
WINOGRAD_ATOL = 1e-6


@pytest.mark.parametrize("rel, arch, channels, scale, offset", [
    ("vgg_7/art/scale2.0x_model.json.gz", "vgg_7", 3, 1, 7),
    ("vgg_7/art_y_chainer/noise1_model.json.gz", "vgg_7", 1, 1, 7),
    ("upconv_7/photo/scale2.0x_model.json.gz", "upconv_7", 3, 2, 14),
    ("cunet/art/scale2.0x_model.json.gz", "upcunet", 3, 2, 36),
    ("cunet/art/noise0_model.json.gz", "cunet", 3, 1, 28),
])
def test_real_models_load_with_their_geometry(rel, arch, channels, scale, offset):
    c = load_model(model_path(rel)).config
    assert (c.arch_name, c.channels, c.scale_factor, c.offset) == (arch, channels, scale, offset)


@pytest.mark.parametrize("arch", ["vgg_7", "upconv_7", "cunet", "upcunet"])
def test_arch_is_inferred_without_model_config_and_cudnn_names_accepted(tmp_path, arch):
    entries = model_entries(arch, seed=1)
    ref = load_model(write_model(tmp_path / "a.json", entries))
    for e in entries:
        e["class_name"] = e["class_name"].replace("nn.", "cudnn.").replace("ConvolutionMM", "Convolution")
    del entries[0]["model_config"]
    inferred = load_model(write_model(tmp_path / "b.json", entries))
    assert inferred.config == ref.config
    size = 104 if arch == "cunet" else 84
    x = np.random.default_rng(2).random((1, 3, size, size), dtype=np.float32)
    np.testing.assert_array_equal(inferred.forward(x), ref.forward(x))


def test_gzip_and_plain_json_load_the_same(tmp_path):
    entries = model_entries("vgg_7", seed=3)
    (tmp_path / "m.json.gz").write_bytes(gzip.compress(json.dumps(entries).encode()))
    a = load_model(write_model(tmp_path / "m.json", entries))
    b = load_model(tmp_path / "m.json.gz")
    np.testing.assert_array_equal(a.layers["conv4"].w2d, b.layers["conv4"].w2d)


def _broken(entries_fn, arch="vgg_7"):
    def make(tmp_path):
        entries = model_entries(arch, seed=4)
        entries_fn(entries)
        return write_model(tmp_path / "bad.json", entries)
    return make


BAD_MODELS = {
    r"layer 3 \(conv4\): weight has shape": _broken(lambda e: e[3].update(weight=np.zeros((64, 64, 3, 2)).tolist())),
    r"layer 2 \(conv3\): missing key": _broken(lambda e: e[2].pop("bias")),
    "vgg_7 has 7 layers, the file has 6": _broken(lambda e: e.pop()),
    "NaN or infinity": _broken(lambda e: e[1]["bias"].__setitem__(0, float("nan"))),
    r"layer 4 \(conv5\): expected conv 64->128": _broken(lambda e: e[4].update(nOutputPlane=96)),
    r"layer 17 \(unet2.down2\): expected conv 128->128 k2 s2": _broken(lambda e: e[17].update(dW=1, dH=1),
                                                                      arch="cunet"),
    "architecture 'resnet_14l' is not supported": _broken(lambda e: e[0]["model_config"].update(arch_name="resnet_14l")),
    "bias has shape": _broken(lambda e: e[5].update(bias=[0.0] * 3)),
}


@pytest.mark.parametrize("message", BAD_MODELS)
def test_bad_model_raises_naming_file_and_layer(tmp_path, message):
    path = BAD_MODELS[message](tmp_path)
    with pytest.raises(ModelFormatError, match=message) as info:
        load_model(path)
    assert "bad.json" in str(info.value)


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2]", b"\x1f\x8b\x08broken gzip", b'{"a": 1}'])
def test_unreadable_model_file_is_a_format_error(tmp_path, content):
    p = tmp_path / "bad.json"
    p.write_bytes(content)
    with pytest.raises(ModelFormatError, match="bad.json"):
        load_model(p)


def test_missing_model_file():
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        load_model("/nonexistent/nowhere.json")


def test_cli_bad_model_exits_2_and_writes_nothing(tmp_path, capsys):
    mdir = tmp_path / "models"
    mdir.mkdir()
    entries = model_entries("vgg_7", seed=5)
    entries[6]["weight"] = entries[6]["weight"][:2]
    write_model(mdir / "noise1_model.json", entries)
    out = tmp_path / "out.png"
    from conftest import IMAGES
    rc = cli_main(["-i", str(IMAGES / "tone.png"), "-o", str(out), "-m", "noise", "--model-dir", str(mdir)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "layer 6" in err and "noise1_model.json" in err
    assert not out.exists() and list(tmp_path.iterdir()) == [mdir]


@pytest.mark.parametrize("arch", ["vgg_7", "upconv_7", "upcunet", "cunet"])
def test_numba_keeps_activations_channel_last_and_images_channel_major(tmp_path, arch):
    """Model.on: on numba, every layer whose output is an activation writes it channel-last
    (but the SE blocks' 1x1 convs on (C, N, 1, 1), where the order is moot), the layers that
    output an image (``Arch.image_layers``) channel-major; the forward is the numpy
    backend's."""
    pytest.importorskip("numba")
    from w2x.nn.backend import get_backend
    entries = model_entries(arch, seed=3, scale=0.03)
    images = ARCHS[arch].image_layers
    for entry, spec in zip(entries, ARCHS[arch].spec(3)):
        if spec.name in images:               # outputs around 0.25, not clipped to 0
            entry["bias"] = [v + 0.25 for v in entry["bias"]]
    model = load_model(write_model(tmp_path / "m.json", entries))
    layers = model.on(get_backend("numba")).layers
    assert images and set(images) <= set(layers)
    expected = {name: name not in images and ".se." not in name for name in layers}
    assert {name: layer.channels_last for name, layer in layers.items()} == expected
    x = np.random.default_rng(4).random((2, 3, 112, 108), dtype=np.float32)
    want = model.forward(x, "numpy")
    assert 0.1 < want.mean() < 0.9 and ((want > 0) & (want < 1)).mean() > 0.99     # not clipped
    np.testing.assert_allclose(model.forward(x, "numba"), want, rtol=0, atol=WINOGRAD_ATOL)


def test_model_on_is_one_model_per_backend_table(tmp_path):
    """Model.on caches per backend, and a backend changed in any field is another: numba
    without its packed Winograd weights (``winograd_panels``) or without channel-last
    outputs gets layers in those forms, and the same forward."""
    pytest.importorskip("numba")
    import dataclasses

    from w2x.nn.backend import get_backend
    be = get_backend("numba")
    model = load_model(write_model(tmp_path / "m.json", model_entries("vgg_7", seed=6, scale=0.03)))
    on = model.on(be)
    assert model.on(be) is on and model.on(get_backend("numba", "fp32")) is on and model.on(get_backend()) is on
    unpacked = model.on(dataclasses.replace(be, winograd_panels=None))
    major = model.on(dataclasses.replace(be, channels_last=False))
    from w2x.kernels.cpu_gemm import fits
    assert on.layers["conv2"].winograd_u.ndim == (4 if fits(32) else 3) and unpacked.layers["conv2"].winograd_u.ndim == 3
    assert on.layers["conv2"].channels_last and not major.layers["conv2"].channels_last
    x = np.random.default_rng(7).random((3, 1, 40, 40), dtype=np.float32)
    want = on.config.arch.forward(on.layers, x, be)
    for other in (unpacked, major):
        np.testing.assert_allclose(other.config.arch.forward(other.layers, x, be), want, rtol=0, atol=WINOGRAD_ATOL)
