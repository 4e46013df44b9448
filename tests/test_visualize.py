"""``w2x visualize`` (w2x/visualize.py, w2x/cli/visualize.py): it runs on vgg_7, upconv_7 and
cunet, writes one grid per layer with the sizes the layer shapes give, and a layer's
values equal an independent computation (tests/reference_net.py's float64 convolution)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import MODEL_DIR
from reference_net import LEAKY_SLOPE, _conv, load_layers
from w2x import visualize
from w2x.cli.main import main
from w2x.io import read_image
from w2x.nn.models import load_model

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "docs" / "sample.jpg"
CROP = (40, 36, 88, 76)        # a 48x40 crop of the sample: small enough for cunet in seconds
BUNDLED = ROOT / "weights"
MODELS = {                     # arch -> (model file relative to a model folder, in the bundle?)
    "vgg_7": ("vgg_7/photo/noise1_model.json.gz", True),
    "upconv_7": ("upconv_7/photo/scale2.0x_model.json.gz", True),
    "cunet": ("cunet/art/noise1_model.json.gz", False),
}
FLOAT32_TOL = 1e-4             # float32 im2col + GEMM against float64 over 3 layers (values ~1)
PNG_LEVELS = 1                 # the picture rounds each value to 8 bits once


def model_path(arch: str) -> Path:
    rel, bundled = MODELS[arch]
    for folder in (MODEL_DIR, BUNDLED) if bundled else (MODEL_DIR,):
        if (folder / rel).is_file():
            return folder / rel
    pytest.skip(f"needs {rel} (in ../shared/weights)")


@pytest.fixture(scope="module")
def crop_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "crop.png"
    Image.open(SAMPLE).convert("RGB").crop(CROP).save(path)
    return path


def expected_grid(maps: int, h: int, w: int) -> tuple[int, int]:
    """(height, width) of image.toDisplayTensor{padding=2}: floor(sqrt(M)) maps a row."""
    cols = max(1, math.isqrt(maps))
    return -(-maps // cols) * (h + 2), cols * (w + 2)


def sequential_shapes(arch: str, h: int, w: int) -> list[tuple[int, int, int]]:
    """(channels, rows, cols) of the input (edge-padded by 7) and of every layer, from the
    architecture as lib/srcnn.lua writes it: valid 3x3 convs lose 2 px, the 4x4 s2 p3
    transposed conv gives 2n - 4."""
    widths = [3, 32, 32, 64, 64, 128, 128, 3] if arch == "vgg_7" else [3, 16, 32, 64, 128, 128, 256]
    h, w = h + 14, w + 14
    shapes = [(3, h, w)]
    for c in widths[1:]:
        h, w = h - 2, w - 2
        shapes.append((c, h, w))
    if arch == "upconv_7":
        shapes.append((3, 2 * h - 4, 2 * w - 4))
    return shapes


@pytest.mark.parametrize("arch", ["vgg_7", "upconv_7"])
def test_sequential_nets_write_a_grid_per_layer(arch, crop_file, tmp_path, capsys):
    out = tmp_path / "pictures"
    assert main(["visualize", "-i", str(crop_file), "-o", str(out), "--model", str(model_path(arch))]) == 0
    layers = sorted(out.glob("layer-*.png"))
    shapes = sequential_shapes(arch, CROP[3] - CROP[1], CROP[2] - CROP[0])
    assert len(layers) == len(shapes)
    with Image.open(layers[0]) as im:                    # the input itself, in colour
        assert im.mode == "RGB" and (im.size[1], im.size[0]) == shapes[0][1:]
    for path, (c, h, w) in zip(layers[1:], shapes[1:]):
        height, width = expected_grid(c, h, w)
        assert Image.open(path).size == (width, height), path.name
    with Image.open(out / "filters.png") as im:          # 16 or 32 first-layer 3x3 filters, 8x
        first = shapes[1][0]
        assert (im.size[1], im.size[0]) == expected_grid(first, 24, 24) and im.mode == "RGB"
    with Image.open(out / "im2col.png") as im:           # 27 rows (3 channels x 3x3), 16 windows
        assert im.size == (16 * 12, 27 * 12)


def test_cunet_runs_and_its_sizes_follow_the_unet(crop_file, tmp_path, capsys):
    path = model_path("cunet")
    out = tmp_path / "pictures"
    assert main(["visualize", "-i", str(crop_file), "-o", str(out), "--model", str(path)]) == 0
    layers = sorted(out.glob("layer-*.png"))
    assert len(layers) == 1 + 30                         # the input and the 30 JSON layers
    h, w = CROP[3] - CROP[1], CROP[2] - CROP[0]          # 40 x 48
    side = lambda n: max(100, -(-(n + 56) // 4) * 4)     # noqa: E731  padded by 28, then a valid size
    sh, sw = side(h), side(w)                            # 100 x 104
    assert Image.open(out / "layer-00-input.png").size == (sw, sh)
    expect = {
        "layer-03-unet1.down1.png": (64, (sh - 4) // 2, (sw - 4) // 2),      # 2 convs, then 2x2 s2
        "layer-06-unet1.conv2.se.squeeze.png": (8, 1, 1),                   # the SE's 64/8 squeeze
        "layer-10-unet1.out.png": (3, sh - 16, sw - 16),                    # unet1 loses 8 a side
        "layer-30-unet2.out.png": (3, sh - 56, sw - 56),                    # offset 28 a side
    }
    for name, (c, hh, ww) in expect.items():
        height, width = expected_grid(c, hh, ww)
        assert Image.open(out / name).size == (width, height), name


def test_a_layer_picture_is_the_networks_intermediate_output(crop_file, tmp_path, capsys):
    """conv3 of vgg_7: w2x's recorded output against three float64 convolutions computed
    from the JSON by tests/reference_net.py, and the PNG against that output scaled to 8 bits."""
    path = model_path("vgg_7")
    image = read_image(crop_file).rgb
    outputs = visualize.layer_outputs(load_model(path), image)

    x = np.pad(image.astype(np.float64), ((0, 0), (7, 7), (7, 7)), mode="edge")
    for layer in load_layers(path)[:3]:
        x = _conv(x, np.asarray(layer["weight"], np.float64), np.asarray(layer["bias"], np.float64))
        x = np.maximum(x, LEAKY_SLOPE * x)                                  # (OC, H, W) after LeakyReLU
    np.testing.assert_allclose(outputs["conv3"], x, atol=FLOAT32_TOL)

    out = tmp_path / "pictures"
    assert main(["visualize", "-i", str(crop_file), "-o", str(out), "--model", str(path)]) == 0
    picture = np.asarray(Image.open(out / "layer-03-conv3.png"), dtype=np.int64)
    c, h, w = x.shape
    cols = math.isqrt(c)
    scaled = np.rint((x - x.min()) / (x.max() - x.min()) * 255)
    for i in (0, c // 2, c - 1):                                            # first, middle, last map
        r, q = divmod(i, cols)
        cell = picture[r * (h + 2) + 1:r * (h + 2) + 1 + h, q * (w + 2) + 1:q * (w + 2) + 1 + w]
        assert np.abs(cell - scaled[i]).max() <= PNG_LEVELS


def test_a_large_image_is_refused_in_one_line(tmp_path, capsys):
    big = tmp_path / "big.png"
    Image.new("RGB", (600, 20)).save(big)
    assert main(["visualize", "-i", str(big), "-o", str(tmp_path / "o"),
                 "--model", str(model_path("upconv_7"))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "crop it first" in err


@pytest.mark.parametrize("case, says", [
    ("missing image", "no such file"),
    ("not an image", "not an image format"),
    ("unknown model", "w2x models list"),
    ("output is a file", "is a file; give a folder"),
    ("patch outside", "give ROW 0..48 and COL 0..56"),
])
def test_bad_input_is_one_line_and_writes_nothing(case, says, crop_file, tmp_path, capsys):
    """Each mistake is caught before the network runs: one line that says what to give."""
    model, out, extra = str(model_path("vgg_7")), tmp_path / "pictures", []
    image = crop_file
    if case == "missing image":
        image = tmp_path / "nope.png"
    elif case == "not an image":
        image = tmp_path / "notes.png"
        image.write_text("not pixels")
    elif case == "unknown model":
        model = "vgg_7/nostyle/noise1"
    elif case == "output is a file":
        out.write_text("")
    else:                                                # 40 rows x 48 columns padded by 7: 54 x 62
        extra = ["--patch-at", "49", "0"]
    assert main(["visualize", "-i", str(image), "-o", str(out), "--model", model, *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("w2x visualize: error: ") and says in err, err
    assert not out.is_dir() or not any(out.iterdir())
