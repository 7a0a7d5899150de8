"""Draws the example cut-out shipped in examples/ (a cosmetic bottle on transparency).

The image is the project's own work: drawn here with Pillow at 4x and downsampled so the
edges are antialiased, which is what a real cut-out's alpha looks like. Run from the repo
root: `python3 tools/make_examples.py` (needs `pip install pillow numpy`).
"""

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

S = 4  # supersampling factor
W, H = 640, 640


def cylinder_shade(w, h, base, light=0.35, dark=0.55):
    """A horizontal cylinder shading ramp: bright stripe left of centre, dark edges."""
    x = np.linspace(-1.0, 1.0, w)
    lum = np.sqrt(np.clip(1 - x**2, 0, 1)) * (1 - dark) + dark
    lum += light * np.exp(-((x + 0.45) ** 2) / 0.01)  # specular stripe
    lum += 0.12 * np.exp(-((x - 0.6) ** 2) / 0.004)  # rim light
    rgb = np.clip(np.outer(np.ones(h), lum)[..., None] * np.array(base)[None, None, :], 0, 255)
    return rgb.astype(np.uint8)


def main():
    big = Image.new("RGBA", (W * S, H * S), (0, 0, 0, 0))
    # Bottle body.
    bx0, by0, bx1, by1 = 200 * S, 230 * S, 440 * S, 600 * S
    body = Image.fromarray(cylinder_shade(bx1 - bx0, by1 - by0, (214, 120, 142)), "RGB").convert("RGBA")
    mask = Image.new("L", body.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, body.size[0] - 1, body.size[1] - 1), radius=38 * S, fill=255)
    big.paste(body, (bx0, by0), mask)
    # Shoulder and neck.
    neck = Image.fromarray(cylinder_shade(90 * S, 50 * S, (200, 200, 205)), "RGB").convert("RGBA")
    nmask = Image.new("L", neck.size, 0)
    ImageDraw.Draw(nmask).rounded_rectangle((0, 0, neck.size[0] - 1, neck.size[1] - 1), radius=10 * S, fill=255)
    big.paste(neck, (275 * S, 190 * S), nmask)
    # Cap.
    cap = Image.fromarray(cylinder_shade(130 * S, 130 * S, (60, 52, 48), light=0.6), "RGB").convert("RGBA")
    cmask = Image.new("L", cap.size, 0)
    ImageDraw.Draw(cmask).rounded_rectangle((0, 0, cap.size[0] - 1, cap.size[1] - 1), radius=14 * S, fill=255)
    big.paste(cap, (255 * S, 70 * S), cmask)
    # Label.
    d = ImageDraw.Draw(big)
    d.rounded_rectangle((235 * S, 380 * S, 405 * S, 520 * S), radius=8 * S, fill=(250, 246, 238, 255))
    d.rectangle((255 * S, 410 * S, 385 * S, 418 * S), fill=(60, 52, 48, 255))
    d.rectangle((275 * S, 432 * S, 365 * S, 437 * S), fill=(170, 150, 140, 255))
    d.rectangle((285 * S, 446 * S, 355 * S, 450 * S), fill=(170, 150, 140, 255))
    d.ellipse((300 * S, 470 * S, 340 * S, 505 * S), outline=(214, 120, 142, 255), width=3 * S)
    img = big.resize((W, H), Image.LANCZOS)
    img.save("examples/bottle-cutout.png", optimize=True)


if __name__ == "__main__":
    main()
