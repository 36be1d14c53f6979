"""Attention and gate maps of mmext's attention designs, captured during an
ordinary forward pass and rendered as one image grid.

Why hooks: the design files stay as they are, and what is shown is exactly the
tensor the module multiplies its features with, not a re-derivation that could
drift from it. Every design in :data:`EXTRACTORS` names the submodule whose
output *is* the map (or from which the module derives it with one cheap,
documented step such as SK's softmax) and registers a forward hook there:

============================  ========  ==========================================
design (module class)          kind      captured tensor
============================  ========  ==========================================
SE (mmdet ``SELayer``)         channel   ``conv2`` output (sigmoid weights), (N, C)
ECA                            channel   ``activate`` output, (N, C)
CBAM                           channel   ``channel_activate`` output, (N, C)
CBAM                           spatial   ``spatial_activate`` output, (N, 1, H, W)
LKA (VAN)                      spatial   ``conv1`` output = the attention, (N, C, H, W)
MultiOrderGatedAggregation     spatial   ``act(gate(y))``, the gate branch, (N, C, H, W)
SKConv                         channel   ``select_fc`` logits, softmax over the
                                         branches as ``branch_attention``; one
                                         (N, C) record per branch
ODConv                         channel   input-channel and filter attentions of
                                         ``attention``, (N, C_in) / (N, C_out)
GnConv (HorNet)                spatial   ``dwconv(q) * scale`` split per order,
                                         (N, C_k, H, W) per gate
============================  ========  ==========================================

ODConv's kernel-position and kernel-selection attentions weight the kernel, not
the image, and are not maps over the input, so they are not recorded.

:func:`collect_attention` works on a lone module, a backbone, or a whole
detector / segmentor (it then runs ``extract_feat``: backbone and neck).
:func:`render_grid` writes one PNG: the input image, then every map as a tile
titled with its module name and kind, in the order the modules ran (stage by
stage). :func:`visualize` is what ``tools/analysis_tools/visualize_attention.py``
runs: config -> model -> preprocessed images -> one grid per image.
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

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
KINDS = ('channel', 'spatial')


# --------------------------------------------------------------------------
# records and the extractor table
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


@dataclasses.dataclass(frozen=True)
class Extractor:
    """How to capture one design's maps.

    Attributes:
        design (str): Name shown in records and error messages.
        attach (callable): ``attach(module, emit) -> list of hook handles``;
            the hooks call ``emit(kind, label, tensor)`` while the module runs.
        maps (str): Short description of what is recorded (for the docs and
            the error listing the supported designs).
    """

    design: str
    attach: object
    maps: str


EXTRACTORS = {}


def register_extractor(module_cls, design, maps):
    """Decorator adding ``attach`` for ``module_cls`` (and its subclasses) to
    :data:`EXTRACTORS`."""

    def wrap(attach):
        EXTRACTORS[module_cls] = Extractor(design, attach, maps)
        return attach

    return wrap


def find_extractor(module):
    """The :class:`Extractor` of ``module``'s class or its nearest registered
    base class, else None."""
    for cls in type(module).__mro__:
        if cls in EXTRACTORS:
            return EXTRACTORS[cls]
    return None


def supported_designs():
    """``'design (maps)'`` strings of every registered design."""
    return [f'{e.design} ({e.maps})' for e in EXTRACTORS.values()]


def _on_output(submodule, fn):
    return submodule.register_forward_hook(lambda _m, _inp, out: fn(out))


def _register_builtin_extractors():
    # Imported here so that importing this module does not pull in every design.
    from mmdet.models.layers import SELayer

    from mmext.models.backbones.hornet import GnConv
    from mmext.models.backbones.moganet import MultiOrderGatedAggregation
    from mmext.models.backbones.van import LKA
    from mmext.models.layers.odconv import ODConv
    from mmext.models.layers.sk_conv import SKConv
    from mmext.models.plugins import CBAM, ECA

    # mmext.SE subclasses mmdet's SELayer, so both are covered.
    @register_extractor(SELayer, 'SE', 'channel weights')
    def _se(module, emit):
        return [_on_output(module.conv2, lambda w: emit('channel', 'channel', w.flatten(1)))]

    @register_extractor(ECA, 'ECA', 'channel weights')
    def _eca(module, emit):
        # activate's output is (N, 1, C): channels are ECA's 1D sequence.
        return [_on_output(module.activate, lambda w: emit('channel', 'channel', w.flatten(1)))]

    @register_extractor(CBAM, 'CBAM', 'channel weights, spatial map')
    def _cbam(module, emit):
        return [
            _on_output(module.channel_activate,
                       lambda w: emit('channel', 'channel', w.flatten(1))),
            _on_output(module.spatial_activate, lambda w: emit('spatial', 'spatial', w)),
        ]

    @register_extractor(LKA, 'LKA', 'spatial attention per channel')
    def _lka(module, emit):
        # conv1's output is the attention LKA multiplies x with.
        return [_on_output(module.conv1, lambda a: emit('spatial', 'attention', a))]

    @register_extractor(MultiOrderGatedAggregation, 'MogaNet', 'spatial gate per channel')
    def _moga(module, emit):
        # ``act`` also runs in feat_decompose, so hooking it would mix two
        # tensors; the gate conv's output is unique to the gate branch.
        return [_on_output(module.gate, lambda g: emit('spatial', 'gate', module.act(g)))]

    @register_extractor(SKConv, 'SK', 'branch selection weights per channel')
    def _sk(module, emit):
        def select(logits):
            # Same view and softmax as SKConv.branch_attention.
            attn = logits.view(logits.size(0), module.num_branches, module.out_channels)
            attn = attn.softmax(dim=1)
            for i in range(module.num_branches):
                emit('channel', f'branch {i}', attn[:, i])

        return [_on_output(module.select_fc, select)]

    @register_extractor(ODConv, 'ODConv', 'input-channel and filter attention')
    def _odconv(module, emit):
        def heads(out):
            channel, filt = out[0], out[1]
            emit('channel', 'input channel', channel.flatten(1))
            if filt is not None:
                emit('channel', 'filter', filt.flatten(1))

        return [_on_output(module.attention, heads)]

    @register_extractor(GnConv, 'GnConv', 'spatial gates per order')
    def _gnconv(module, emit):
        def gates(ctx):
            for i, g in enumerate(torch.split(ctx * module.scale, module.dims, dim=1)):
                emit('spatial', f'gate {i}', g)

        return [_on_output(module.dwconv, gates)]


_register_builtin_extractors()


# --------------------------------------------------------------------------
# collection
def attention_modules(model, modules=None):
    """``(name, module, extractor)`` of every supported module of ``model``,
    in registration order; ``modules`` is a regex searched in the names."""
    pattern = re.compile(modules) if modules else None
    found = []
    for name, module in model.named_modules():
        extractor = find_extractor(module)
        if extractor is None:
            continue
        if pattern is not None and not pattern.search(name):
            continue
        found.append((name, module, extractor))
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
    for name, module, extractor in found:

        def emit(kind, label, tensor, _name=name, _design=extractor.design):
            assert kind in KINDS, kind
            records.append(AttentionRecord(_name, _design, kind,
                                           tensor.detach().float().cpu().clone(), label))

        handles.extend(extractor.attach(module, emit))
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
        """(height, width) of the PNG."""
        return (self.rows * (self.tile_h + self.title_h + self.gap) + self.gap,
                self.cols * (self.tile_w + self.gap) + self.gap)

    def picture_box(self, index):
        """``(y0, x0, y1, x1)`` of tile ``index``'s picture in the PNG."""
        r, c = divmod(index, self.cols)
        y0 = self.gap + r * (self.tile_h + self.title_h + self.gap) + self.title_h
        x0 = self.gap + c * (self.tile_w + self.gap)
        return y0, x0, y0 + self.tile_h, x0 + self.tile_w


_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE = 0.35
_LINE_H = 12
_BACKGROUND = 40


def _fit_text(text, width, keep='end'):
    """Shorten ``text`` to fit ``width`` pixels, dropping from the front for
    module names (their tail says which block) and from the back otherwise."""
    if cv2.getTextSize(text, _FONT, _FONT_SCALE, 1)[0][0] <= width:
        return text
    while len(text) > 1:
        text = text[1:] if keep == 'end' else text[:-1]
        shown = '..' + text if keep == 'end' else text + '..'
        if cv2.getTextSize(shown, _FONT, _FONT_SCALE, 1)[0][0] <= width:
            return shown
    return text


def _title_band(lines, width, height):
    band = np.full((height, width, 3), _BACKGROUND, np.uint8)
    for i, (text, keep) in enumerate(lines):
        cv2.putText(band, _fit_text(text, width - 4, keep), (2, (i + 1) * _LINE_H - 2), _FONT,
                    _FONT_SCALE, (235, 235, 235), 1, cv2.LINE_AA)
    return band


def _to_bgr_uint8(image):
    image = np.asarray(image)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim != 3 or image.shape[2] != 3:
        raise MMExtError(f'render_grid needs an (H, W, 3) BGR image, got shape {image.shape}')
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    return image


def _heat_tile(picture, value_map):
    """``value_map`` (h, w) min-max scaled, upsampled to the picture and
    overlaid as a JET heatmap; returns the tile and the value range."""
    lo, hi = float(value_map.min()), float(value_map.max())
    norm = (value_map - lo) / (hi - lo) if hi > lo else np.full_like(value_map, 0.5)
    norm = cv2.resize((norm * 255).astype(np.uint8), picture.shape[1::-1],
                      interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap(norm, cv2.COLORMAP_JET)
    return cv2.addWeighted(picture, 0.4, heat, 0.6, 0), (lo, hi)


def _bar_tile(width, height, values):
    """Bars of the per-channel weights on a fixed axis, with a colour strip of
    the same values min-max scaled along the bottom (weights near 0.5 all look
    alike as bars; the strip shows which channels stand out)."""
    tile = np.full((height, width, 3), 250, np.uint8)
    values = np.asarray(values, np.float64)
    lo, hi = float(values.min()), float(values.max())
    # Sigmoid / softmax weights keep the [0, 1] axis so tiles compare.
    if lo >= 0 and hi <= 1:
        axis_lo, axis_hi = 0.0, 1.0
    else:
        axis_lo, axis_hi = min(lo, 0.0), max(hi, lo + 1e-6)
    # More channels than pixels: average neighbouring channels per column.
    bins = [b.mean() for b in np.array_split(values, min(len(values), width))]
    strip_h = max(6, height // 12)
    plot_h = height - strip_h - 4
    scale = (np.asarray(bins) - axis_lo) / (axis_hi - axis_lo)
    colours = cv2.applyColorMap(np.clip(scale * 255, 0, 255).astype(np.uint8)[:, None],
                                cv2.COLORMAP_JET)[:, 0]
    rel = (np.asarray(bins) - min(bins)) / max(max(bins) - min(bins), 1e-12)
    strip = cv2.applyColorMap((rel * 255).astype(np.uint8)[:, None], cv2.COLORMAP_JET)[:, 0]
    edges = np.linspace(0, width, len(bins) + 1).round().astype(int)
    base = plot_h - 1 - int(round((0 - axis_lo) / (axis_hi - axis_lo) * (plot_h - 1)))
    for x0, x1, s, colour, strip_colour in zip(edges[:-1], edges[1:], scale, colours, strip):
        top = plot_h - 1 - int(round(float(np.clip(s, 0, 1)) * (plot_h - 1)))
        y0, y1 = sorted((top, base))
        cv2.rectangle(tile, (int(x0), y0), (max(int(x0), int(x1) - 1), y1),
                      tuple(int(c) for c in colour), -1)
        tile[height - strip_h:, x0:x1] = strip_colour
    cv2.line(tile, (0, base), (width - 1, base), (90, 90, 90), 1)
    return tile, (lo, hi)


def _tiles_of(record, picture, sample, channels_per_map):
    """``(title lines, tile)`` pairs of one record."""
    tensor = record.tensor[sample].numpy()
    name_line = (record.name or '<model>', 'end')
    if record.kind == 'channel':
        tile, (lo, hi) = _bar_tile(picture.shape[1], picture.shape[0], tensor.reshape(-1))
        info = f'{record.design} {record.label} C={tensor.size} [{lo:.2f}, {hi:.2f}]'
        return [([name_line, (info, 'start')], tile)]
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
        tile, (lo, hi) = _heat_tile(picture, value_map)
        info = f"{record.design} {record.label}{' ' + which if which else ''} [{lo:.2g}, {hi:.2g}]"
        out.append(([name_line, (info, 'start')], tile))
    return out


def render_grid(image, records, out_file=None, max_maps=32, channels_per_map=2, tile_size=192,
                cols=None, sample=0):
    """Compose the input image and the maps of ``records`` into one grid.

    Spatial maps are min-max scaled per tile (the title gives the range),
    upsampled to the image and overlaid as a JET heatmap; a map with C > 1
    channels (LKA, MogaNet) gets a tile for the channel mean and one for each
    of the ``channels_per_map`` channels that vary most over the image.
    Channel weights are bar plots (one bar per channel, on a [0, 1] axis for
    weights in that range) with a colour strip of the same values.

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
        GridLayout: The geometry (tile titles, rows, cols, sizes).
    """
    image = _to_bgr_uint8(image)
    if max_maps < 0:
        raise MMExtError(f'max_maps must be >= 0, got {max_maps}')
    h, w = image.shape[:2]
    scale = tile_size / max(h, w)
    tile_w, tile_h = max(1, round(w * scale)), max(1, round(h * scale))
    picture = cv2.resize(image, (tile_w, tile_h), interpolation=cv2.INTER_AREA
                         if scale < 1 else cv2.INTER_LINEAR)
    shown = list(records)[:max_maps]
    tiles = [([('input', 'start'), (f'{w}x{h}', 'start')], picture)]
    for record in shown:
        if not 0 <= sample < record.tensor.shape[0]:
            raise MMExtError(f'sample {sample} is out of the batch of {record.tensor.shape[0]}')
        tiles.extend(_tiles_of(record, picture, sample, channels_per_map))

    title_h, gap = 2 * _LINE_H + 2, 4
    cols = cols or min(8, math.ceil(math.sqrt(len(tiles))))
    rows = math.ceil(len(tiles) / cols)
    layout = GridLayout(titles=tuple(' | '.join(t for t, _ in lines) for lines, _ in tiles),
                        rows=rows, cols=cols, tile_w=tile_w, tile_h=tile_h, title_h=title_h,
                        gap=gap, records=len(shown), skipped=len(records) - len(shown))
    canvas = np.full((*layout.shape, 3), _BACKGROUND // 2, np.uint8)
    for i, (lines, tile) in enumerate(tiles):
        y0, x0, y1, x1 = layout.picture_box(i)
        canvas[y0 - title_h:y0, x0:x1] = _title_band(lines, tile_w, title_h)
        canvas[y0:y1, x0:x1] = tile
    if out_file:
        os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
        if not cv2.imwrite(out_file, canvas):
            raise MMExtError(f'could not write {out_file}')
    return layout


# --------------------------------------------------------------------------
# config -> model -> images (the tool)
def load_model(config, checkpoint=None, cfg_options=None):
    """Build the model of ``config`` (pretrained weights stripped, as the
    benchmark does) and load ``checkpoint``; returns ``(model, model_cfg)``."""
    from mmext.analysis.benchmark import build_subject, parse_reference
    ref = parse_reference(config, root=ROOT)
    if ref.kind != 'config':
        raise MMExtError(f"'{config}' is not a config file")
    subject = build_subject(ref, root=ROOT, cfg_options=cfg_options)
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
              shape=None, modules=None, max_maps=32, cfg_options=None, num_images=1):
    """Write one attention grid per image for ``config``'s model.

    Returns:
        list[tuple[str, list[AttentionRecord], GridLayout]]: Per image the
        PNG written, the records and the grid layout.
    """
    model, model_cfg = load_model(config, checkpoint, cfg_options)
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


__all__ = ['AttentionRecord', 'Extractor', 'EXTRACTORS', 'register_extractor', 'find_extractor',
           'supported_designs', 'attention_modules', 'check_has_attention', 'collect_attention',
           'GridLayout', 'render_grid', 'load_model', 'normalisation', 'preprocess',
           'default_images', 'read_image', 'visualize']
