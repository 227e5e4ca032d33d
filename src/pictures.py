"""Pictures drawn with Pillow: loss curves, a linear model's weight map, mistakes. Arrays in, images out.

Pillow rather than matplotlib: matplotlib's import alone takes 0.4 s, a tenth of the whole default
run, and these pictures need only lines, pixels and text.

Sized for TensorBoard, which shrinks an image to its card, about 300-350 px wide: pictures are at most
about 480 px wide, with text of 20 px or more and lines 4 px wide, so they stay readable at that size.
"""

import functools
import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFont

Curve = Sequence[tuple[float, float]]  # (x: an epoch, a probability, ..., y)
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf"]  # fmt: skip
GREY = "#c8c8c8"  # the curves past the first len(COLORS), behind them
CHART_SIZE = (480, 340)
LEGEND_ROW = 30  # height of one legend line below a chart
# The longer side, in pixels, of images drawn enlarged: the weight map, each class's map in the grid of
# them, each mistake's tile. On 28x28 images each pixel becomes a 12, 4 or 3 pixel block.
WEIGHT_SIDE, TEMPLATE_SIDE, TILE_SIDE = 336, 112, 84
SCALE_BAR = 96  # below the weight map: its colour scale, with labels
GRID_COLUMNS, GRID_MAX = 5, 20


@functools.cache
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # a quarter of the default's time
    return buffer.getvalue()


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round numbers spanning [low, high] (steps of 1, 2 or 5 times a power of ten)."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def line_chart(
    curves: Mapping[str, Curve],
    title: str,
    y_label: str,
    x_label: str = "epoch",
    bands: Mapping[str, Sequence[tuple[int, float, float]]] | None = None,
    highlighted: int = len(COLORS),
    rest: str = "{count} more, in grey",
) -> Image.Image:
    """Curves on shared axes, with a legend below: one line per curve, in its color; `bands` shades
    (x, low, high) around the curve of the same name (a spread over seeds).

    Only the first `highlighted` curves (the best first) get a colour of their own and a legend row; the
    others are drawn thin and grey behind them, under one legend row (`rest`, with their count), and do
    not set the y axis: a job that diverged would flatten every other curve, and twenty colours repeat."""
    curves = {name: [(x, y) for x, y in points if math.isfinite(y)] for name, points in curves.items()}
    curves = {name: points for name, points in curves.items() if points}
    shown = dict(list(curves.items())[:highlighted])
    greyed = dict(list(curves.items())[highlighted:])
    bands = {name: [(x, lo, hi) for x, lo, hi in (bands or {}).get(name, []) if math.isfinite(lo + hi)]
             for name in shown}  # fmt: skip
    width, plot_height = CHART_SIZE
    legend_height = LEGEND_ROW * (len(shown) + bool(greyed)) + 10
    image = Image.new("RGB", (width, plot_height + legend_height), "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 84, width - 22, 74, plot_height - 66
    if not curves:
        draw_title(draw, title, width)
        draw.text((width // 2, plot_height // 2), "no finite values", fill="gray", font=font(22), anchor="mm")
        return image

    xs = [x for points in curves.values() for x, _ in points]
    ys = [y for points in shown.values() for _, y in points]
    ys += [y for band in bands.values() for _, low, high in band for y in (low, high)]
    x_low, x_high = min(xs), max(max(xs), min(xs) + 1)
    y_low, y_high = min(ys), max(ys)
    pad = (y_high - y_low) * 0.05 or abs(y_high) * 0.05 or 1.0
    y_low, y_high = y_low - pad, y_high + pad

    def to_pixel(x: float, y: float) -> tuple[float, float]:
        return (
            left + (x - x_low) / (x_high - x_low) * (right - left),
            bottom - (y - y_low) / (y_high - y_low) * (bottom - top),
        )

    y_ticks, x_ticks = nice_ticks(y_low, y_high, count=4), nice_ticks(x_low, x_high, count=4)
    for y in y_ticks:
        _, py = to_pixel(x_low, y)
        draw.line([(left, py), (right, py)], fill="#e0e0e0", width=2)
    for x in x_ticks:
        px, _ = to_pixel(x, y_low)
        draw.line([(px, top), (px, bottom)], fill="#e0e0e0", width=2)

    def draw_curve(points: Curve, color: str, line_width: int) -> None:
        pixels = [to_pixel(x, y) for x, y in points]
        if len(pixels) == 1:
            px, py = pixels[0]
            radius = line_width + 2
            draw.ellipse([px - radius, py - radius, px + radius, py + radius], fill=color)
        else:
            draw.line(pixels, fill=color, width=line_width, joint="curve")

    for points in greyed.values():
        draw_curve(points, GREY, 2)
    shade = ImageDraw.Draw(image, "RGBA")  # blends: overlapping bands stay visible
    for index, band in enumerate(bands.values()):
        if len(band) > 1:
            red, green, blue = ImageColor.getrgb(COLORS[index])[:3]
            outline = [to_pixel(x, high) for x, _, high in band] + [
                to_pixel(x, low) for x, low, _ in band[::-1]
            ]
            shade.polygon(outline, fill=(red, green, blue, 48))
    for index, points in enumerate(shown.values()):
        draw_curve(points, COLORS[index], 4)
    # What went past the axes (a grey job's spike) is cut off at the frame: the margins are painted
    # over before the title and the ticks are written on them.
    draw.rectangle([0, 0, width, top - 1], fill="white")
    draw.rectangle([0, bottom + 1, width, plot_height - 1], fill="white")

    draw_title(draw, title, width)
    tick_font = font(20)
    for y in y_ticks:
        draw.text((left - 10, to_pixel(x_low, y)[1]), f"{y:.4g}", fill="#333333", font=tick_font, anchor="rm")
    for x in x_ticks:
        draw.text((to_pixel(x, y_low)[0], bottom + 10), f"{x:g}", fill="#333333", font=tick_font, anchor="mt")
    draw.rectangle([left, top, right, bottom], outline="#444444", width=2)
    draw.text(((left + right) // 2, bottom + 36), x_label, fill="black", font=font(22), anchor="mt")
    draw.text((left, top - 8), y_label, fill="black", font=font(22), anchor="lb")

    legend = [(name, COLORS[index]) for index, name in enumerate(shown)]
    if greyed:
        legend.append((rest.format(count=len(greyed)), GREY))
    for index, (name, color) in enumerate(legend):
        legend_y = plot_height + 4 + LEGEND_ROW * index + LEGEND_ROW // 2
        draw.line([(16, legend_y), (48, legend_y)], fill=color, width=6)
        draw.text((58, legend_y), fit(name, font(20), width - 76), fill="black", font=font(20), anchor="lm")
    return image


def title_lines(title: str, width: int) -> tuple[int, list[str]]:
    """How a title fits `width`: one line at 24 px, or two at 18 px when it is longer (a run's
    overrides), so its end, which tells runs apart, is not cut short; cut ("...") only past two lines."""
    if font(24).getlength(title) <= width - 16:
        return 24, [title]
    small, lines = font(18), [""]
    for word in title.split(" "):
        joined = f"{lines[-1]} {word}".strip()
        if small.getlength(joined) <= width - 16 or not lines[-1]:
            lines[-1] = joined
        else:
            lines.append(word)
    return 18, [fit(lines[0], small, width - 16), fit(" ".join(lines[1:]), small, width - 16)]


def draw_title(draw: ImageDraw.ImageDraw, title: str, width: int) -> None:
    size, lines = title_lines(title, width)
    for index, line in enumerate(lines):
        draw.text((width // 2, 4 + 22 * index if size < 24 else 8), line, fill="black", font=font(size),
                  anchor="mt")  # fmt: skip


def fit(text: str, text_font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> str:
    """`text`, cut with "..." where it would be wider than `width` pixels in `text_font`."""
    if text_font.getlength(text) <= width:
        return text
    while text and text_font.getlength(text + "...") > width:
        text = text[:-1]
    return text + "..."


def enlarged(image: Image.Image, longest: int) -> Image.Image:
    """`image` scaled so that its longer side is `longest` pixels: each pixel a sharp block, or, for an
    image larger than that, pixels averaged."""
    size = enlarged_size(image.width, image.height, longest)
    return image.resize(size, Image.Resampling.NEAREST if size[0] >= image.width else Image.Resampling.BOX)


def enlarged_size(width: int, height: int, longest: int) -> tuple[int, int]:
    """(width, height) of a `width` by `height` image scaled so that its longer side is `longest`."""
    scale = longest / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def weight_map(weights: np.ndarray, positive: str, negative: str) -> Image.Image:
    """A map of a linear model's weights on images, (height, width): red pixels push towards `positive`,
    blue towards `negative`, white not at all; a colour scale below gives the weights' values."""
    limit = float(np.abs(weights).max()) or 1.0
    pixels = enlarged(Image.fromarray(diverging(weights / limit), "RGB"), WEIGHT_SIDE)
    width = max(pixels.width, WEIGHT_SIDE)  # room for the scale's labels below a narrow map
    image = Image.new("RGB", (width, pixels.height + SCALE_BAR), "white")
    image.paste(pixels, ((width - pixels.width) // 2, 0))
    draw = ImageDraw.Draw(image)
    bar_top, bar_left, bar_right = pixels.height + 10, 24, width - 24
    ramp = diverging(np.linspace(-1.0, 1.0, bar_right - bar_left)[None, :].repeat(18, axis=0))
    image.paste(Image.fromarray(ramp, "RGB"), (bar_left, bar_top))
    draw.rectangle([bar_left - 1, bar_top - 1, bar_right, bar_top + 18], outline="#444444")
    label_font = font(20)
    for x, text, anchor in ((bar_left, f"{-limit:.2g}", "lt"), ((bar_left + bar_right) // 2, "0", "mt"),
                            (bar_right, f"{limit:.2g}", "rt")):  # fmt: skip
        draw.text((x, bar_top + 24), text, fill="#333333", font=label_font, anchor=anchor)
    draw.text((bar_left, bar_top + 52), f"blue: {negative}", fill="#2c5aa0", font=font(22), anchor="lt")
    draw.text((bar_right, bar_top + 52), f"red: {positive}", fill="#c0392b", font=font(22), anchor="rt")
    return image


def diverging(t: np.ndarray) -> np.ndarray:
    """Values in [-1, 1] as RGB: -1 blue, 0 white, 1 red."""
    t = np.clip(t, -1.0, 1.0)
    fade = (255 * (1 - np.abs(t))).astype(np.uint8)
    full = np.full_like(fade, 255)
    rgb = np.where(t[..., None] >= 0, np.stack([full, fade, fade], -1), np.stack([fade, fade, full], -1))
    return rgb.astype(np.uint8)


def weight_templates(weights: np.ndarray, class_names: Sequence[str], columns: int = 5) -> Image.Image:
    """One weight map per class (`weights` is (classes, height, width)), each labelled with its class:
    red pixels raise that class's logit, blue ones lower it. Each map has its own colour scale."""
    maps = [_template(row) for row in weights]
    tile_width, tile_height = maps[0].width, maps[0].height
    label_height, gap, header = 26, 8, 40
    rows = math.ceil(len(maps) / columns)
    width = gap + min(columns, len(maps)) * (tile_width + gap)
    image = Image.new("RGB", (width, header + rows * (tile_height + label_height + gap)), "white")
    draw = ImageDraw.Draw(image)
    title = "weights per class: red raises its logit, blue lowers it"
    draw.text((gap, 8), title, fill="black", font=font(20))
    for index, (pixels, name) in enumerate(zip(maps, class_names, strict=True)):
        x = gap + (index % columns) * (tile_width + gap)
        y = header + (index // columns) * (tile_height + label_height + gap)
        draw.text(
            (x + tile_width // 2, y + 2),
            fit(name, font(20), tile_width),
            fill="black",
            font=font(20),
            anchor="mt",
        )
        image.paste(pixels, (x, y + label_height))
    return image


def _template(weights: np.ndarray) -> Image.Image:
    """One class's weights as a small picture, in the weight map's colours and its own scale."""
    limit = float(np.abs(weights).max()) or 1.0
    return enlarged(Image.fromarray(diverging(weights / limit), "RGB"), TEMPLATE_SIDE)


def confusion_matrix(counts: np.ndarray, class_names: Sequence[str]) -> Image.Image:
    """Counts of true class (row) against predicted class (column); darker cells hold more examples, and
    the diagonal, the correct ones, is green, the mistakes red."""
    names = list(class_names)
    label_font, count_font = font(16), font(16)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    name_width = int(max(measure.textlength(name, font=label_font) for name in names))
    count_width = int(measure.textlength(str(int(counts.max(initial=0))), font=count_font))
    cell = max(40, count_width + 12, min(name_width + 8, 80))
    left, top = name_width + 64, 90
    size = len(names)
    title = "confusion matrix: true (row) by predicted (column)"
    width = max(left + size * cell + 16, int(measure.textlength(title, font=font(20))) + 16)  # 2 classes too
    image = Image.new("RGB", (width, top + size * cell + 16), "white")
    draw = ImageDraw.Draw(image)
    draw.text((8, 8), title, fill="black", font=font(20))
    draw.text((left + size * cell // 2, 40), "predicted", fill="#444444", font=font(16), anchor="mt")
    draw.text((8, top + size * cell // 2), "true", fill="#444444", font=font(16), anchor="lm")
    row_totals = counts.sum(axis=1, keepdims=True).clip(min=1)
    shares = counts / row_totals
    for index, name in enumerate(names):
        y = top + index * cell + cell // 2
        draw.text((left - 6, y), name, fill="black", font=label_font, anchor="rm")
        x = left + index * cell + cell // 2
        fits = measure.textlength(name, font=label_font) <= cell - 2
        short = name if fits else name[: max(1, cell // 8)] + "."
        draw.text((x, top - 6), short, fill="black", font=label_font, anchor="mb")
    for row in range(size):
        for column in range(size):
            x, y = left + column * cell, top + row * cell
            strength = float(shares[row, column])
            fade = int(255 * (1 - (0.15 + 0.85 * strength if counts[row, column] else 0)))
            color = (fade, 255 - (255 - fade) // 3, fade) if row == column else (255, fade, fade)
            draw.rectangle([x, y, x + cell, y + cell], fill=color, outline="#cccccc")
            ink = "white" if strength > 0.6 else "black"
            draw.text((x + cell // 2, y + cell // 2), str(int(counts[row, column])), fill=ink,
                      font=count_font, anchor="mm")  # fmt: skip
    return image


ARROW_WIDTH = 16  # "→" drawn as a line and a head: Pillow's built-in font has no arrow glyph


def arrow_caption_width(draw: ImageDraw.ImageDraw, left: str, right: str, text_font: ImageFont.FreeTypeFont
                        | ImageFont.ImageFont) -> float:  # fmt: skip
    return draw.textlength(left, font=text_font) + ARROW_WIDTH + draw.textlength(right, font=text_font)


def arrow_caption(
    draw: ImageDraw.ImageDraw,
    top_center: tuple[int, int],
    left: str,
    right: str,
    text_font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
) -> None:
    """`left → right`, centred below `top_center`."""
    x = top_center[0] - arrow_caption_width(draw, left, right, text_font) / 2
    y = top_center[1]
    draw.text((x, y), left, fill="black", font=text_font, anchor="lt")
    x += draw.textlength(left, font=text_font)
    middle = y + int(text_font.size * 0.5) if hasattr(text_font, "size") else y + 5
    draw.line([(x + 4, middle), (x + ARROW_WIDTH - 4, middle)], fill="black", width=1)
    draw.polygon([(x + ARROW_WIDTH - 3, middle), (x + ARROW_WIDTH - 7, middle - 3),
                  (x + ARROW_WIDTH - 7, middle + 3)], fill="black")  # fmt: skip
    draw.text((x + ARROW_WIDTH, y), right, fill="black", font=text_font, anchor="lt")


def mistakes_grid(
    images: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    confidence: np.ndarray,
    class_names: Sequence[str],
) -> Image.Image:
    """Misclassified test images (up to 20; `images` is (N, channels, height, width), one channel or
    three, red, green and blue), each captioned "true → predicted" and the probability the model gave
    its prediction."""
    _, channels, height, width = images.shape
    tile_width, tile_height = enlarged_size(width, height, TILE_SIDE)
    count = min(len(images), GRID_MAX)
    captions = [(class_names[int(labels[i])], class_names[int(predicted[i])]) for i in range(count)]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widest = max((arrow_caption_width(measure, *pair, font(18)) for pair in captions), default=0)
    cell_width = max(tile_width, int(widest) + 4)
    rows = max(1, math.ceil(count / GRID_COLUMNS))
    cell_height, top = tile_height + 48, 64
    image = Image.new("RGB", (GRID_COLUMNS * (cell_width + 8) + 8, rows * cell_height + top), "white")
    draw = ImageDraw.Draw(image)
    draw.text((8, 6), f"misclassified: {len(images)} (first {count})", fill="black", font=font(22))
    caption = ("caption: true", "predicted, its probability")
    arrow_caption(draw, (8 + int(arrow_caption_width(draw, *caption, font(18)) / 2), 36), *caption, font(18))
    for index in range(count):
        pixels = images[index].transpose(1, 2, 0)  # (height, width, channels), as Pillow reads them
        low, high = float(pixels.min()), float(pixels.max())  # normalized inputs back to 0-255
        levels = ((pixels - low) / ((high - low) or 1.0) * 255).astype(np.uint8)
        picture = Image.fromarray(
            levels[..., 0] if channels == 1 else levels, "L" if channels == 1 else "RGB"
        )
        x = 8 + (index % GRID_COLUMNS) * (cell_width + 8)
        y = top + (index // GRID_COLUMNS) * cell_height
        image.paste(enlarged(picture, TILE_SIDE), (x + (cell_width - tile_width) // 2, y))
        center = x + cell_width // 2
        arrow_caption(draw, (center, y + tile_height + 2), *captions[index], font(18))
        draw.text((center, y + tile_height + 24), f"p={confidence[index]:.2f}", fill="#555555", font=font(16),
                  anchor="mt")  # fmt: skip
    return image
