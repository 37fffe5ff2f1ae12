#!/usr/bin/python3
"""Writes the image fixtures under tests/data/images/ and what Pillow (and PyTorch) make of them,
for tests/vision/test_image.c and tests/ops/test_interpolate.c.

  - small images in several formats (PNG gray / RGB / RGBA / gray+alpha / palette; JPEG baseline
    4:2:0 / 4:2:2 / 4:4:4, gray, progressive, CMYK; WebP lossy / lossless / lossy with alpha;
    BMP, a top-down BMP written byte by byte (Pillow writes only bottom-up ones); PPM; 16-bit
    gray PNG and PGM; PGM/PPM at maxvals Pillow rescales; GIF first frames; 16-bit BMPs; animated
    WebP) and broken
    files (empty, truncated, garbage, absurd dimensions);
  - pillow.safetensors: for each image, the pixels of Image.open(p).convert("RGB"), its
    Image.resize((w, h), Image.BICUBIC) at several sizes (uint8 values, stored as F16, which holds
    them exactly), InternVL's dynamic_preprocess + ToTensor + Normalize (F32 tiles and the grid)
    for a few tile sizes, and the grid InternVL picks for many image sizes;
  - torch_bicubic.safetensors (only where torch imports): F.interpolate(mode="bicubic",
    align_corners=False) of small channels-last grids, forward and backward.

Pillow 9.4 (Debian's python3-pil) and numpy; torch optional. Run from the repository root:
  /usr/bin/python3 tools/reference/make_image_goldens.py
"""
import gzip
import io
import os
import struct
import sys
import zlib

import numpy as np
import PIL
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_safetensors_fixtures import serialize, write  # noqa: E402

OUT = os.path.join("tests", "data", "images")
FMNIST = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


# ---- InternVL's preprocessing, as in its README / modeling code (load_image) ----

def find_closest_aspect_ratio(aspect_ratio, target_ratios, width, height, image_size):
    best_diff, best = float("inf"), (1, 1)
    area = width * height
    for ratio in target_ratios:
        diff = abs(aspect_ratio - ratio[0] / ratio[1])
        if diff < best_diff:
            best_diff, best = diff, ratio
        elif diff == best_diff and area > 0.5 * image_size * image_size * ratio[0] * ratio[1]:
            best = ratio
    return best


def target_grid(width, height, image_size, min_num, max_num):
    # the candidate order is InternVL's: a set sorted by i·j (ties in the set's order)
    ratios = set((i, j) for n in range(min_num, max_num + 1) for i in range(1, n + 1)
                 for j in range(1, n + 1) if min_num <= i * j <= max_num)
    ratios = sorted(ratios, key=lambda x: x[0] * x[1])
    return find_closest_aspect_ratio(width / height, ratios, width, height, image_size)


def dynamic_preprocess(image, min_num, max_num, image_size, use_thumbnail):
    cols, rows = target_grid(*image.size, image_size, min_num, max_num)
    resized = image.resize((image_size * cols, image_size * rows))  # default: BICUBIC
    tiles = []
    for i in range(cols * rows):
        x, y = (i % cols) * image_size, (i // cols) * image_size
        tiles.append(resized.crop((x, y, x + image_size, y + image_size)))
    if use_thumbnail and len(tiles) != 1:
        tiles.append(image.resize((image_size, image_size)))
    return tiles, (cols, rows)


def to_tensor_normalize(tile):
    """torchvision ToTensor (u8 -> fp32 / 255, CHW) then Normalize ((x - mean) / std, fp32)."""
    x = np.asarray(tile, dtype=np.uint8).astype(np.float32) / np.float32(255)
    x = (x - MEAN) / STD
    return x.transpose(2, 0, 1)


# ---- fixture images ----

def fmnist_images(count):
    with gzip.open(FMNIST) as f:
        data = f.read()
    magic, n, h, w = struct.unpack(">IIII", data[:16])
    assert magic == 2051 and h == w == 28 and n >= count
    return [np.frombuffer(data, np.uint8, 784, 16 + 784 * i).reshape(28, 28) for i in range(count)]


def make_images(rng):
    fm = fmnist_images(5)
    imgs = {}
    imgs["fmnist_28"] = Image.fromarray(fm[0], "L")
    # a 2×2 grid of tinted clothing items, the picture a corner question is asked about
    tints = [(255, 64, 64), (64, 255, 64), (64, 64, 255), (255, 255, 255)]
    grid = np.zeros((56, 56, 3), np.uint8)
    for q in range(4):
        y, x = 28 * (q // 2), 28 * (q % 2)
        grid[y:y + 28, x:x + 28] = (fm[q + 1][..., None] * np.array(tints[q]) // 255)
    imgs["grid_56"] = Image.fromarray(grid, "RGB")
    yy, xx = np.mgrid[0:23, 0:37]
    rgba = np.stack([xx * 7, yy * 11, (xx * yy) % 256, 255 - yy * 10], -1).astype(np.int64)
    rgba[..., :3] += rng.integers(-20, 21, (23, 37, 3))
    imgs["rgba_37x23"] = Image.fromarray(np.clip(rgba, 0, 255).astype(np.uint8), "RGBA")
    yy, xx = np.mgrid[0:90, 0:5]
    thin = np.stack([yy * 2.8, xx * 60, 128 + 100 * np.sin(yy / 7.0)], -1)
    imgs["thin_5x90"] = Image.fromarray(thin.astype(np.uint8), "RGB")
    imgs["noise_48x40"] = Image.fromarray(rng.integers(0, 256, (40, 48, 3), np.uint8), "RGB")
    la = np.stack([rng.integers(0, 256, (7, 9)), rng.integers(0, 256, (7, 9))], -1)
    imgs["la_9x7"] = Image.fromarray(la.astype(np.uint8), "LA")
    pal = Image.fromarray(rng.integers(0, 256, (10, 12, 3), np.uint8), "RGB")
    imgs["palette_12x10"] = pal.quantize(colors=16)
    return imgs


# (file, width, height, mode, Pillow save options)
JPEGS = [
    ("jpeg420_37x23.jpg", 37, 23, "RGB", dict(quality=85, subsampling=2)),
    ("jpeg422_45x31.jpg", 45, 31, "RGB", dict(quality=90, subsampling=1)),
    ("jpeg444_29x17.jpg", 29, 17, "RGB", dict(quality=95, subsampling=0)),
    ("gray_33x21.jpg", 33, 21, "L", dict(quality=80)),
    ("progressive_41x27.jpg", 41, 27, "RGB", dict(quality=75, progressive=True)),
    ("cmyk_26x19.jpg", 26, 19, "CMYK", dict(quality=90)),
]
WEBPS = [
    ("lossy_37x23.webp", 37, 23, "RGB", dict(quality=80)),
    ("lossless_37x23.webp", 37, 23, "RGB", dict(lossless=True)),
    ("alpha_31x19.webp", 31, 19, "RGBA", dict(quality=70)),
]


def textured(rng, w, h, alpha=False):
    """Smooth gradients with edges and noise: every DCT frequency and chroma detail matters."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([128 + 110 * np.sin(xx / 3.0 + yy / 7.0), 128 + 110 * np.cos(yy / 2.5),
                    (xx * 9 + yy * 5) % 256 * ((xx // 4 + yy // 4) % 2)], -1)
    img = img + rng.integers(-25, 26, img.shape)
    if alpha:
        img = np.concatenate([img, (xx * 255 // max(w - 1, 1))[..., None]], -1)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGBA" if alpha else "RGB")


PNMS = [("maxval10_7x3.pgm", 10), ("maxval1023_7x3.pgm", 1023), ("maxval300_7x3.pgm", 300),
        ("maxval100_5x3.ppm", 100), ("maxval1000_5x3.ppm", 1000), ("maxval65535_5x3.ppm", 65535)]


def pnm_bytes(rng, name, maxval):
    """A binary PGM (P5) or PPM (P6) of random samples up to maxval + maxval // 8."""
    w, h = (int(v) for v in name.split("_")[1].split(".")[0].split("x"))
    n = w * h * (3 if name.endswith(".ppm") else 1)
    v = rng.integers(0, maxval + maxval // 8 + 1, n)
    data = v.astype(">u2").tobytes() if maxval > 255 else np.minimum(v, 255).astype(np.uint8).tobytes()
    return b"P%d\n# maxval %d\n%d %d\n%d\n" % (6 if name.endswith(".ppm") else 5, maxval, w, h,
                                                maxval) + data


def gif_lzw(indices, m):
    """LZW data that only ever sends literals, clearing before the code width would grow."""
    clear = 1 << m
    codes = []
    for i, v in enumerate(indices):
        if i % (clear - 2) == 0:
            codes.append(clear)
        codes.append(int(v))
    codes.append(clear + 1)
    acc = nbits = 0
    out = bytearray()
    for c in codes:
        acc |= c << nbits
        nbits += m + 1
        while nbits >= 8:
            out.append(acc & 255)
            acc >>= 8
            nbits -= 8
    if nbits:
        out.append(acc)
    return b"".join(bytes([len(out[i:i + 255])]) + out[i:i + 255] for i in range(0, len(out), 255))


def small_gifs(rng):
    """(file, bytes): GIFs written byte by byte."""
    specs = [  # name, screen, frame (x, y, w, h), background, transparency
        ("partial_9x7.gif", (9, 7), (2, 3, 4, 2), 1, None),
        ("partial_transp_9x7.gif", (9, 7), (2, 3, 4, 2), 1, 2),
        ("beyond_screen_6x5.gif", (4, 3), (3, 1, 3, 4), 0, None),
    ]
    out = []
    for name, (sw, sh), (x, y, w, h), bg, transp in specs:
        pal = rng.integers(0, 256, 4 * 3, np.uint8).tobytes()  # 4 entries; indices go to 7
        data = b"GIF89a" + struct.pack("<HHBBB", sw, sh, 0x81, bg, 0) + pal
        if transp is not None:
            data += b"\x21\xf9\x04\x01\x00\x00" + bytes([transp]) + b"\x00"
        data += b"\x2c" + struct.pack("<HHHHB", x, y, w, h, 0) + b"\x03"
        data += gif_lzw(rng.integers(0, 8, w * h), 3) + b"\x00\x3b"
        out.append((name, data))
    return out


def bmp16s(rng):
    """(file, bytes): 16-bit BMPs of 9x5 random pixels, the first two all-zero and all-one."""
    out = []
    for name, masks, hsz, h in [("bgr555_9x5.bmp", None, 40, 5),
                                ("rgb565_9x5.bmp", (0xF800, 0x7E0, 0x1F), 124, -5)]:
        v = rng.integers(0, 1 << 16, (5, 9))
        v.flat[0], v.flat[1] = 0, 0xFFFF
        stride = (9 * 2 + 3) & ~3
        rows = b"".join(v[y].astype("<u2").tobytes() + b"\0" * (stride - 18) for y in range(5))
        info = struct.pack("<IiiHHIIiiII", hsz, 9, h, 1, 16, 3 if masks else 0, len(rows), 2835,
                           2835, 0, 0)
        if hsz > 40:
            info += struct.pack("<IIII", *masks, 0) + b"\0" * (hsz - 56)
        off = 14 + len(info)
        out.append((name, b"BM" + struct.pack("<IHHI", off + len(rows), 0, 0, off) + info + rows))
    return out


def topdown_bmp(rng, w, h):
    """A 24-bit BMP with a negative height: rows stored top first."""
    px = rng.integers(0, 256, (h, w, 3), np.uint8)
    stride = (w * 3 + 3) & ~3
    rows = b"".join(px[y, :, ::-1].tobytes() + b"\0" * (stride - w * 3) for y in range(h))
    info = struct.pack("<IiiHHIIiiII", 40, w, -h, 1, 24, 0, len(rows), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + len(rows), 0, 0, 14 + len(info)) + \
        info + rows


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def save(img, name, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    write(os.path.join(OUT, name), buf.getvalue())
    return buf.getvalue()


def main():
    rng = np.random.default_rng(20240611)
    imgs = make_images(rng)
    files = {}  # file name -> the image PIL reads back from it
    for name, img in imgs.items():
        save(img, name + ".png", "PNG")
        files[name + ".png"] = name
    yy, xx = np.mgrid[0:30, 0:40]
    photo = np.stack([128 + 120 * np.sin(xx / 6.0), 128 + 120 * np.cos(yy / 5.0),
                      (xx + yy) * 3.5], -1)
    photo = Image.fromarray(photo.astype(np.uint8), "RGB")
    jpeg = save(photo, "photo_40x30.jpg", "JPEG", quality=90)
    # BMP and PPM copies of two PNGs: the test compares them with what it loads from the PNG
    save(imgs["thin_5x90"], "thin_5x90.bmp", "BMP")
    save(imgs["rgba_37x23"].convert("RGB"), "rgb_37x23.ppm", "PPM")
    files["photo_40x30.jpg"] = "photo_40x30"
    # JPEG and WebP at odd sizes (partial MCUs, odd chroma columns and rows), each decoded by
    # Pillow with libjpeg-turbo / libwebp, which mmm uses the same way (their own random stream,
    # so the older fixtures keep their bytes)
    rng2 = np.random.default_rng(20261207)
    for name, w, h, mode, kw in JPEGS:
        save(textured(rng2, w, h).convert(mode), name, "JPEG", **kw)
        files[name] = name.replace(".", "_")
    for name, w, h, mode, kw in WEBPS:
        save(textured(rng2, w, h, mode == "RGBA").convert(mode), name, "WEBP", **kw)
        files[name] = name.replace(".", "_")
    write(os.path.join(OUT, "topdown_7x5.bmp"), topdown_bmp(rng2, 7, 5))
    files["topdown_7x5.bmp"] = "topdown_7x5_bmp"
    # 16-bit gray: PIL opens it as 32-bit integers, which convert("RGB") clips to 255
    g16 = rng2.integers(0, 600, (11, 13)) * rng2.integers(1, 110, (11, 13)) // 100
    g16 = Image.fromarray(g16.astype(np.uint16), "I;16")
    save(g16, "gray16_13x11.png", "PNG")
    save(g16.convert("I"), "gray16_13x11.pgm", "PPM")
    files["gray16_13x11.png"] = "gray16_13x11_png"
    files["gray16_13x11.pgm"] = "gray16_13x11_pgm"
    # PGM/PPM at other maxvals, which Pillow rescales (written byte by byte: Pillow writes only
    # 255 and 65535); a few samples above maxval, which it clips
    for name, maxval in PNMS:
        write(os.path.join(OUT, name), pnm_bytes(rng2, name, maxval))
        files[name] = name.replace(".", "_")
    # GIF first frames: Pillow's (interlaced, 256 colours: LZW codes up to 12 bits), and byte-built
    # ones where Pillow's rules show: a frame smaller than the screen (the rest is the
    # transparency index, else index 0, not the background), a frame reaching past the screen
    # (which grows), indices past the palette's end
    save(textured(rng2, 97, 61).quantize(256), "interlaced_97x61.gif", "GIF", interlace=True)
    files["interlaced_97x61.gif"] = "interlaced_97x61_gif"
    for name, data in small_gifs(rng2):
        write(os.path.join(OUT, name), data)
        files[name] = name.replace(".", "_")
    # animated WebP: Pillow keeps the first frame (libwebp's animation decoder, RGBA)
    for name, mode, kw in [("anim_23x19.webp", "RGB", dict(lossless=True)),
                           ("anim_alpha_23x19.webp", "RGBA", dict(quality=70))]:
        frames = [textured(rng2, 23, 19, mode == "RGBA") for _ in range(2)]
        save(frames[0], name, "WEBP", save_all=True, append_images=frames[1:], **kw)
        files[name] = name.replace(".", "_")
    # 16-bit BMPs (5-5-5, and 5-6-5 bit fields, top-down): Pillow expands a channel as v·255/31
    for name, data in bmp16s(rng2):
        write(os.path.join(OUT, name), data)
        files[name] = name.replace(".", "_")

    # broken files
    png = open(os.path.join(OUT, "noise_48x40.png"), "rb").read()
    write(os.path.join(OUT, "empty.png"), b"")
    write(os.path.join(OUT, "truncated.png"), png[:len(png) * 3 // 5])
    # cut inside the entropy-coded scan
    write(os.path.join(OUT, "truncated.jpg"), jpeg[:len(jpeg) * 4 // 5])
    write(os.path.join(OUT, "zero.ppm"), b"P6\n0 0\n255\n")
    write(os.path.join(OUT, "garbage.png"), b"this is not an image, only some text\n" * 3)
    # headers of absurd sizes: over mmm's 16384 per side, and over stb's own 1 GiB of pixels
    for name, w, h in (("huge.png", 20000, 10000), ("huge_too_large.png", 30000, 30000)):
        ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
        write(os.path.join(OUT, name), b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) +
              png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b""))

    t = {}
    rgb = {}
    for fname, key in files.items():
        rgb[key] = Image.open(os.path.join(OUT, fname)).convert("RGB")
    # the pixels PIL loads (uint8, exact in F16); noise and grid are covered by the goldens
    # below, which would fail if their pixels did
    for key in [k for k in files.values() if k not in ("noise_48x40", "grid_56")]:
        im = rgb[key]
        t[key + ".rgb"] = ("F16", [im.height, im.width, 3],
                           np.asarray(im).astype(np.float64).ravel().tolist())

    # resized images, saved as PNG (lossless, small) under pillow/
    resizes = {
        "fmnist_28": [(45, 45), (13, 9), (28, 5)],
        "grid_56": [(28, 28), (17, 17), (5, 3), (112, 56)],
        "rgba_37x23": [(48, 30), (20, 50), (37, 11), (10, 23)],
        "thin_5x90": [(45, 8), (5, 31)],
        "noise_48x40": [(31, 37), (19, 13), (48, 17), (23, 40), (97, 9)],
    }
    for key, sizes in resizes.items():
        for w, h in sizes:
            save(rgb[key].resize((w, h), Image.BICUBIC),
                 os.path.join("pillow", "%s.%dx%d.png" % (key, w, h)), "PNG")

    # dynamic_preprocess cases: (image, tile, max_tiles), min 1, thumbnails on
    cases = [("fmnist_28", 32, 6), ("grid_56", 28, 6), ("rgba_37x23", 12, 6),
             ("thin_5x90", 10, 6), ("noise_48x40", 12, 6), ("photo_40x30", 12, 6),
             ("jpeg444_29x17_jpg", 8, 6), ("lossy_37x23_webp", 10, 6)]
    for key, tile, max_num in cases:
        tiles, (cols, rows) = dynamic_preprocess(rgb[key], 1, max_num, tile, True)
        arr = np.stack([to_tensor_normalize(x) for x in tiles])
        name = "%s.tiles.t%d.max%d" % (key, tile, max_num)
        t[name] = ("F32", list(arr.shape), arr.astype(np.float64).ravel().tolist())
        t[name + ".grid"] = ("I32", [3], [cols, rows, len(tiles)])
        print("%s: grid %dx%d, %d tiles" % (name, cols, rows, len(tiles)))

    # the grid InternVL picks: (w, h, tile, max_tiles, cols, rows), min_tiles 1
    rows_ = []
    specials = [(56, 56, 28, 6), (56, 56, 28, 3), (448, 448, 448, 12), (896, 448, 448, 12),
                (300, 200, 448, 12), (1000, 400, 448, 6), (5, 90, 14, 6), (90, 5, 14, 40),
                (1344, 896, 448, 6), (3, 2, 1, 12), (150, 100, 100, 12), (1000, 1, 448, 12)]
    for w, h, tile, mx in specials:
        rows_.append((w, h, tile, mx) + target_grid(w, h, tile, 1, mx))
    for _ in range(300):
        w, h = (int(v) for v in rng.integers(1, 3000, 2))
        tile = int(rng.choice([14, 28, 224, 448]))
        mx = int(rng.integers(1, 41))
        rows_.append((w, h, tile, mx) + target_grid(w, h, tile, 1, mx))
    t["grid_choice"] = ("I32", [len(rows_), 6], [v for r in rows_ for v in r])

    write(os.path.join(OUT, "pillow.safetensors"),
          serialize(t, {"pillow": PIL.__version__}))
    torch_goldens(rng)


def torch_goldens(rng):
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("torch not importable: torch_bicubic.safetensors left as it is")
        return
    t = {}
    for hi, wi, ho, wo, c in [(4, 4, 7, 7, 3), (5, 3, 2, 6, 2), (6, 6, 6, 6, 2), (3, 5, 8, 4, 1),
                              (16, 16, 9, 9, 1), (7, 9, 14, 18, 2)]:
        x = rng.standard_normal((hi, wi, c)).astype(np.float32)
        g = rng.standard_normal((ho, wo, c)).astype(np.float32)
        xt = torch.from_numpy(x).permute(2, 0, 1)[None].clone().requires_grad_(True)
        y = F.interpolate(xt, size=(ho, wo), mode="bicubic", align_corners=False)
        y.backward(torch.from_numpy(g).permute(2, 0, 1)[None])
        name = "%dx%d_to_%dx%d_c%d" % (hi, wi, ho, wo, c)
        y = y.detach()[0].permute(1, 2, 0).numpy()
        dx = xt.grad[0].permute(1, 2, 0).numpy()
        for key, arr in (("inp", x), ("out", y), ("dout", g), ("dinp", dx)):
            t[name + "." + key] = ("F32", list(arr.shape),
                                   arr.astype(np.float64).ravel().tolist())
    write(os.path.join(OUT, "torch_bicubic.safetensors"),
          serialize(t, {"torch": torch.__version__}))


if __name__ == "__main__":
    main()
