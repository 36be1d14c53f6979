"""Attention and gate maps of mmext's attention designs, captured during an
ordinary forward pass and rendered as one image grid.

Why hooks: the design files stay as they are, and what is shown is exactly the
tensor the module multiplies its features with, not a re-derivation that could
drift from it. No design is named here: a module class declares its maps in
its own file, as ``attention_maps`` (:class:`~mmext.models.layers.protocols.
AttentionMaps`), naming the submodule whose output *is* the map (or from which
the module derives it with one cheap, documented step such as SK's softmax);
this module hooks every module of a model whose class declares them. What
each design records is listed by :func:`supported_designs` (and in the error
for a model without any), from the declarations themselves.

:func:`collect_attention` works on a lone module, a backbone, or a whole
detector / segmentor (it then runs ``extract_feat``: backbone and neck).
:func:`render_grid` writes one PNG with matplotlib: the input image, then every
map as a tile titled with its module name and kind, in the order the modules
ran (stage by stage). :func:`visualize` is what
``tools/analysis_tools/visualize_attention.py`` runs: config -> model ->
preprocessed images -> one grid per image.
"""
import dataclasses
import glob
import math
import os
import os.path as osp
import re

import cv2
import numpy as np
import torch

from mmext.utils.errors import MMExtError

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
KINDS = ('channel', 'spatial')


# --------------------------------------------------------------------------
# records and the declarations
@dataclasses.dataclass
class AttentionRecord:
    """One map captured from one module call.

    Attributes:
        name (str): The module's name in the model (``named_modules``), e.g.
            ``'backbone.layer1.0.cbam'``; ``''`` for the model itself.
        design (str): The design, e.g. ``'CBAM'``.
        kind (str): ``'channel'`` (tensor (N, C)) or ``'spatial'`` (tensor
            (N, 1 or C, H, W)).
        tensor (torch.Tensor): The map, detached, float32, on the CPU.
        label (str): Which of the module's maps, e.g. ``'spatial'`` or
            ``'branch 1'``.
    """

    name: str
    design: str
    kind: str
    tensor: torch.Tensor
    label: str = ''

    @property
    def title(self):
        return f"{self.name or '<model>'} {self.design} {self.label or self.kind}"


def declared_maps(module):
    """The ``attention_maps`` declaration of ``module``'s class (an
    :class:`~mmext.models.layers.protocols.AttentionMaps` or any object with
    ``design``, ``summary`` and ``maps``), else None."""
    return getattr(type(module), 'attention_maps', None)


def supported_designs():
    """``'design (summary)'`` of every class registered in mmext's ``MODELS``
    that declares ``attention_maps``, sorted by design."""
    import mmext.models  # noqa: F401  (fills the registry)
    from mmext.registry import MODELS
    found = {}
    for cls in MODELS.module_dict.values():
        spec = getattr(cls, 'attention_maps', None)
        if spec is not None:
            found.setdefault(spec.design, spec.summary)
    return [f'{design} ({summary})' for design, summary in sorted(found.items())]


def _attach(module, spec, emit):
    """Forward hooks on the declared sources of ``module``; each calls
    ``emit(kind, label, tensor)`` for every map its output holds."""
    handles = []
    for entry in spec.maps:
        transform = getattr(module, entry.transform) if entry.transform else None

        def hook(_m, _inp, out, entry=entry, transform=transform):
            value = transform(out) if transform is not None else out
            pairs = value if isinstance(value, list) else \
                [(entry.label or entry.kind, value)]
            for label, tensor in pairs:
                emit(entry.kind, label, tensor.flatten(1) if entry.kind == 'channel' else tensor)

        handles.append(module.get_submodule(entry.source).register_forward_hook(hook))
    return handles


# --------------------------------------------------------------------------
# collection
def attention_modules(model, modules=None):
    """``(name, module, declaration)`` of every module of ``model`` whose
    class declares ``attention_maps``, in ``named_modules`` order;
    ``modules`` is a regex searched in the names."""
    pattern = re.compile(modules) if modules else None
    found = []
    for name, module in model.named_modules():
        spec = declared_maps(module)
        if spec is None:
            continue
        if pattern is not None and not pattern.search(name):
            continue
        found.append((name, module, spec))
    return found


def check_has_attention(model, modules=None):
    """Raise :class:`MMExtError` if ``model`` has no supported module (or
    none whose name matches ``modules``); return the list otherwise."""
    found = attention_modules(model, modules)
    if found:
        return found
    everything = attention_modules(model)
    what = type(model).__name__
    if everything:
        names = ', '.join(n for n, _, _ in everything[:8])
        more = ', ...' if len(everything) > 8 else ''
        raise MMExtError(f"no attention module of {what} matches --modules '{modules}'; "
                         f'its attention modules are: {names}{more}')
    raise MMExtError(f'{what} has no supported attention module; supported designs: '
                     f"{'; '.join(supported_designs())}")


def _forward(model, inputs):
    # Detectors and segmentors: backbone and neck, no heads (nothing to show
    # there, and heads want data samples).
    if hasattr(model, 'extract_feat') and hasattr(model, 'data_preprocessor'):
        return model.extract_feat(inputs)
    return model(inputs)


def collect_attention(model, inputs, modules=None):
    """Run ``model`` on ``inputs`` in eval mode without gradients and return
    the maps of every supported attention module.

    Args:
        model (nn.Module): A lone attention module, a backbone or a whole
            mmdet / mmseg model (then ``extract_feat`` runs).
        inputs (torch.Tensor): Normalised batch (N, 3, H, W), or whatever a
            lone module takes.
        modules (str, optional): Regex; only modules whose name it matches.

    Returns:
        list[AttentionRecord]: In the order the modules ran, a module's maps
        in the order the module computes them.

    Raises:
        MMExtError: If no (matching) supported module is in ``model``.
    """
    found = check_has_attention(model, modules)
    records, handles = [], []
    for name, module, spec in found:

        def emit(kind, label, tensor, _name=name, _design=spec.design):
            assert kind in KINDS, kind
            records.append(AttentionRecord(_name, _design, kind,
                                           tensor.detach().float().cpu().clone(), label))

        handles.extend(_attach(module, spec, emit))
    # Remember every module's mode: a backbone may keep some in eval on purpose.
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            _forward(model, inputs)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.training = mode
    return records


# --------------------------------------------------------------------------
# rendering
@dataclasses.dataclass(frozen=True)
class GridLayout:
    """Geometry of a grid written by :func:`render_grid`.

    Attributes:
        titles (tuple[str]): Title of every tile, row-major; the first is
            the input image.
        rows, cols (int): Grid size.
        tile_w, tile_h (int): Size of a tile's picture (without the title).
        title_h (int): Height of the title band above each picture.
        gap (int): Border between tiles (and around the grid).
        records (int): Records rendered; ``skipped`` were beyond ``max_maps``.
    """

    titles: tuple
    rows: int
    cols: int
    tile_w: int
    tile_h: int
    title_h: int
    gap: int
    records: int
    skipped: int

    @property
    def num_tiles(self):
        return len(self.titles)

    @property
    def shape(self):
        """(height, width) of the PNG, in pixels."""
        return (self.rows * (self.tile_h + self.title_h + self.gap) + self.gap,
                self.cols * (self.tile_w + self.gap) + self.gap)

    def picture_box(self, index):
        """``(y0, x0, y1, x1)`` of tile ``index``'s picture in the PNG."""
        r, c = divmod(index, self.cols)
        y0 = self.gap + r * (self.tile_h + self.title_h + self.gap) + self.title_h
        x0 = self.gap + c * (self.tile_w + self.gap)
        return y0, x0, y0 + self.tile_h, x0 + self.tile_w


# One figure pixel per PNG pixel: the layout's geometry is the PNG's.
_DPI = 100
_FONT_SIZE = 6.5
_LINE_H = 12
_BACKGROUND = '#141414'
_BAND = '#282828'


def _fit_text(text, width, measure, keep='end'):
    """Shorten ``text`` to fit ``width`` pixels (``measure(text)`` gives its
    width), dropping from the front for module names (their tail says which
    block) and from the back otherwise."""
    if measure(text) <= width:
        return text
    while len(text) > 1:
        text = text[1:] if keep == 'end' else text[:-1]
        shown = '..' + text if keep == 'end' else text + '..'
        if measure(shown) <= width:
            return shown
    return text


def _as_rgb(image):
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise MMExtError(f'render_grid needs an (H, W, 3) BGR image, got shape {image.shape}')
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image[..., ::-1])


def _draw_heat(ax, picture, value_map):
    """``value_map`` (h, w) min-max scaled, bilinearly stretched over the
    picture and overlaid as a JET heatmap; returns the value range."""
    lo, hi = float(value_map.min()), float(value_map.max())
    norm = (value_map - lo) / (hi - lo) if hi > lo else np.full_like(value_map, 0.5)
    h, w = picture.shape[:2]
    ax.imshow(picture, interpolation='nearest', aspect='auto')
    ax.imshow(norm, cmap='jet', vmin=0, vmax=1, alpha=0.6, interpolation='bilinear', aspect='auto',
              extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    return lo, hi


def _draw_bars(ax, values):
    """One bar per channel weight (neighbouring channels averaged when there
    are more channels than pixels), on a [0, 1] axis for weights in that
    range so that tiles compare; each bar coloured by its min-max scaled
    value (weights near 0.5 all look alike as bars, the colour shows which
    channels stand out). Returns the value range."""
    import matplotlib
    values = np.asarray(values, np.float64)
    lo, hi = float(values.min()), float(values.max())
    if lo >= 0 and hi <= 1:
        axis_lo, axis_hi = 0.0, 1.0
    else:
        axis_lo, axis_hi = min(lo, 0.0), max(hi, lo + 1e-6)
    width = ax.bbox.width
    bins = np.array([b.mean() for b in np.array_split(values, max(1, min(len(values),
                                                                         int(width))))])
    rel = (bins - bins.min()) / max(bins.max() - bins.min(), 1e-12)
    ax.set_facecolor('#fafafa')
    ax.bar(np.arange(len(bins)), bins, width=1.0, color=matplotlib.colormaps['jet'](rel),
           linewidth=0)
    ax.axhline(0, color='#5a5a5a', linewidth=0.8)
    ax.set_xlim(-0.5, len(bins) - 0.5)
    ax.set_ylim(axis_lo, axis_hi)
    return lo, hi


def _tiles_of(record, sample, channels_per_map):
    """``(title lines, draw)`` pairs of one record; ``draw(ax, picture)``
    draws the tile and returns its info line."""
    tensor = record.tensor[sample].numpy()
    name_line = (record.name or '<model>', 'end')
    if record.kind == 'channel':
        def draw_channel(ax, _picture, values=tensor.reshape(-1)):
            lo, hi = _draw_bars(ax, values)
            return f'{record.design} {record.label} C={values.size} [{lo:.2f}, {hi:.2f}]'

        return [(name_line, draw_channel)]
    maps = []
    if tensor.shape[0] == 1:
        maps.append(('', tensor[0]))
    else:
        maps.append((f'mean of {tensor.shape[0]} ch', tensor.mean(axis=0)))
        # The channels that vary most across the image say the most.
        order = np.argsort(-tensor.reshape(tensor.shape[0], -1).std(axis=1), kind='stable')
        maps.extend((f'ch {int(c)}', tensor[c]) for c in order[:channels_per_map])
    out = []
    for which, value_map in maps:
        def draw_spatial(ax, picture, which=which, value_map=value_map):
            lo, hi = _draw_heat(ax, picture, value_map)
            which = f' {which}' if which else ''
            return f'{record.design} {record.label}{which} [{lo:.2g}, {hi:.2g}]'

        out.append((name_line, draw_spatial))
    return out


def render_grid(image, records, out_file=None, max_maps=32, channels_per_map=2, tile_size=192,
                cols=None, sample=0):
    """Compose the input image and the maps of ``records`` into one grid,
    drawn with matplotlib.

    Spatial maps are min-max scaled per tile (the title gives the range),
    stretched over the image and overlaid as a JET heatmap; a map with C > 1
    channels (LKA, MogaNet) gets a tile for the channel mean and one for each
    of the ``channels_per_map`` channels that vary most over the image.
    Channel weights are bar plots (one bar per channel, on a [0, 1] axis for
    weights in that range), each bar coloured by its min-max scaled value.

    Args:
        image (np.ndarray): The input image as fed (after any resize), BGR
            uint8 (H, W, 3) or grey (H, W).
        records (list[AttentionRecord]): From :func:`collect_attention`; they
            are drawn in this order after the image tile.
        out_file (str, optional): PNG to write (folders are created).
        max_maps (int): At most this many records are drawn; the rest are
            counted in ``GridLayout.skipped``.
        channels_per_map (int): Single channels shown per multi-channel map.
        tile_size (int): Longest side of each tile's picture, in pixels.
        cols (int, optional): Columns; default about square, at most 8.
        sample (int): Which sample of the batch the maps are taken from.

    Returns:
        GridLayout: The geometry (tile titles, rows, cols, sizes, in pixels
        of the PNG).

    Raises:
        MMExtError: For an image that is not (H, W, 3) or (H, W), a negative
            ``max_maps``, a ``sample`` outside the batch, or a PNG that cannot
            be written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties

    image = _as_rgb(image)
    if max_maps < 0:
        raise MMExtError(f'max_maps must be >= 0, got {max_maps}')
    h, w = image.shape[:2]
    scale = tile_size / max(h, w)
    tile_w, tile_h = max(1, round(w * scale)), max(1, round(h * scale))
    # The input at the tile's size, so that every tile shows it pixel for pixel.
    picture = cv2.resize(image, (tile_w, tile_h), interpolation=cv2.INTER_AREA
                         if scale < 1 else cv2.INTER_LINEAR)
    shown = list(records)[:max_maps]
    for record in shown:
        if not 0 <= sample < record.tensor.shape[0]:
            raise MMExtError(f'sample {sample} is out of the batch of {record.tensor.shape[0]}')

    def draw_input(ax, pic):
        ax.imshow(pic, interpolation='nearest', aspect='auto')
        return f'{w}x{h}'

    tiles = [(('input', 'start'), draw_input)]
    for record in shown:
        tiles.extend(_tiles_of(record, sample, channels_per_map))

    title_h, gap = 2 * _LINE_H + 2, 4
    cols = cols or min(8, math.ceil(math.sqrt(len(tiles))))
    rows = math.ceil(len(tiles) / cols)
    height, width = (rows * (tile_h + title_h + gap) + gap, cols * (tile_w + gap) + gap)
    fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI, facecolor=_BACKGROUND)
    canvas = FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
    font = FontProperties(size=_FONT_SIZE)

    def measure(text):
        return renderer.get_text_width_height_descent(text, font, ismath=False)[0]

    def box(y0, x0, hh, ww):  # pixels from the top left -> figure fraction
        return [x0 / width, 1 - (y0 + hh) / height, ww / width, hh / height]

    titles = []
    for i, (first, draw) in enumerate(tiles):
        r, c = divmod(i, cols)
        y0 = gap + r * (tile_h + title_h + gap)
        x0 = gap + c * (tile_w + gap)
        ax = fig.add_axes(box(y0 + title_h, x0, tile_h, tile_w))
        info = draw(ax, picture)
        band = fig.add_axes(box(y0, x0, title_h, tile_w), facecolor=_BAND)
        for a in (ax, band):
            a.set_xticks([])
            a.set_yticks([])
            a.spines[:].set_visible(False)
        lines = [first, (info, 'start')]
        for k, (text, keep) in enumerate(lines):
            band.text(2 / tile_w, 1 - ((k + 1) * _LINE_H - 2) / title_h,
                      _fit_text(text, tile_w - 4, measure, keep), transform=band.transAxes,
                      fontproperties=font, color='#ebebeb', va='baseline', ha='left')
        titles.append(' | '.join(t for t, _ in lines))
    layout = GridLayout(titles=tuple(titles), rows=rows, cols=cols, tile_w=tile_w,
                        tile_h=tile_h, title_h=title_h, gap=gap, records=len(shown),
                        skipped=len(records) - len(shown))
    if out_file:
        os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
        try:
            fig.savefig(out_file, dpi=_DPI, facecolor=_BACKGROUND)
        except OSError as exc:
            raise MMExtError(f'could not write {out_file}: {exc}') from exc
    return layout


# --------------------------------------------------------------------------
# config -> model -> images (the tool)
def load_model(config, checkpoint=None, cfg_options=None, root=None):
    """Build the model of ``config`` (pretrained weights stripped, as the
    benchmark does) and load ``checkpoint``; returns ``(model, model_cfg)``.
    A relative ``config`` is looked up under ``root`` (the caller's folder,
    e.g. the checkout the tool runs from), else the current directory."""
    from mmext.analysis.benchmark import build_subject, parse_reference
    root = root or os.getcwd()
    ref = parse_reference(config, root=root)
    if ref.kind != 'config':
        raise MMExtError(f"'{config}' is not a config file")
    subject = build_subject(ref, root=root, cfg_options=cfg_options)
    model = subject.model
    if checkpoint:
        from mmengine.runner import load_checkpoint
        if not osp.isfile(checkpoint):
            raise MMExtError(f'checkpoint not found: {checkpoint}')
        load_checkpoint(model, checkpoint, map_location='cpu')
    return model.eval(), subject.model_cfg


def normalisation(model, model_cfg=None):
    """``(mean, std, bgr_to_rgb)`` the model's data preprocessor applies
    (the config's, else ImageNet's with BGR -> RGB)."""
    pre = getattr(model, 'data_preprocessor', None)
    if pre is not None and hasattr(pre, 'mean') and getattr(pre, '_enable_normalize', True):
        conversion = getattr(pre, '_channel_conversion', getattr(pre, 'channel_conversion', False))
        return (pre.mean.flatten().tolist(), pre.std.flatten().tolist(), bool(conversion))
    cfg = (model_cfg or {}).get('data_preprocessor') or {}
    return (list(cfg.get('mean', IMAGENET_MEAN)), list(cfg.get('std', IMAGENET_STD)),
            bool(cfg.get('bgr_to_rgb', cfg.get('rgb_to_bgr', True))))


def preprocess(image, mean, std, bgr_to_rgb=True):
    """BGR uint8 (H, W, 3) -> normalised (1, 3, H, W) float tensor."""
    x = torch.from_numpy(np.ascontiguousarray(image)).float().permute(2, 0, 1)
    if bgr_to_rgb:
        x = x.flip(0)
    mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return ((x - mean) / std)[None]


def default_images(num=1, data_root=None):
    """The first ``num`` validation images of the embedded data."""
    from mmext.utils.embedded import default_data_root
    root = data_root or default_data_root()
    images = sorted(glob.glob(osp.join(root, 'coco', 'val2017', '*.jpg')))[:num]
    if not images:
        raise MMExtError(f'no IMAGE given and no embedded images in {root}/coco/val2017; pass '
                         'image files, or generate the embedded data first with '
                         '`python tools/generate_data.py`')
    return images


def read_image(path, shape=None):
    """BGR uint8 image, resized to ``shape`` = (H, W) if given."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise MMExtError(f'cannot read image {path} (missing or not an image OpenCV decodes)')
    if shape:
        image = cv2.resize(image, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_LINEAR)
    return image


def visualize(config, images=None, out_dir='work_dirs/attention_maps', checkpoint=None,
              shape=None, modules=None, max_maps=32, cfg_options=None, num_images=1,
              root=None):
    """Write one attention grid per image for ``config``'s model (a relative
    ``config`` is looked up under ``root``, see :func:`load_model`).

    Returns:
        list[tuple[str, list[AttentionRecord], GridLayout]]: Per image the
        PNG written, the records and the grid layout.
    """
    model, model_cfg = load_model(config, checkpoint, cfg_options, root)
    check_has_attention(model, modules)
    mean, std, bgr_to_rgb = normalisation(model, model_cfg)
    images = list(images or default_images(num_images))
    results = []
    for path in images:
        image = read_image(path, shape)
        records = collect_attention(model, preprocess(image, mean, std, bgr_to_rgb), modules)
        stem = osp.splitext(osp.basename(path))[0]
        out_file = osp.join(out_dir, f'{stem}_attention.png')
        layout = render_grid(image, records, out_file, max_maps=max_maps)
        results.append((out_file, records, layout))
    return results


__all__ = ['AttentionRecord', 'declared_maps', 'supported_designs', 'attention_modules',
           'check_has_attention', 'collect_attention', 'GridLayout', 'render_grid',
           'load_model', 'normalisation', 'preprocess', 'default_images', 'read_image',
           'visualize']
