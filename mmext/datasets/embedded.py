"""A deterministic generator of a small embedded detection / segmentation dataset.

Every scene is drawn once and written twice: in the on-disk layout of COCO 2017
(instance polygons) and in that of ADE20K (semantic label PNGs). All names are
real COCO *and* ADE20K class names and the labels are stored in each dataset's
own label space, so the stock ``CocoDataset`` / ``ADE20KDataset`` read the data
unchanged; configs only narrow ``metainfo.classes`` by name.

Layout under ``out_dir``::

    coco/annotations/instances_{train,val}2017.json
    coco/{train,val}2017/000000000001.jpg
    ade/ADEChallengeData2016/images/{training,validation}/ADE_{train,val}_00000001.jpg
    ade/ADEChallengeData2016/annotations/{training,validation}/ADE_{train,val}_00000001.png
    embedded_meta.json

Image ``k`` of a split is the same scene in both layouts (COCO id ``k``).
"""
import colorsys
import json
import math
import multiprocessing
import os
import os.path as osp
import shutil
from types import SimpleNamespace

import cv2
import numpy as np
from pycocotools import mask as mask_utils

GENERATOR_VERSION = 1

# Object classes in COCO category-id order; the json lists categories in this
# order too, so mmdet's label i is CLASSES[i].
CLASSES = ('airplane', 'boat', 'traffic light', 'bottle', 'book', 'clock')
COCO_CATEGORY_IDS = {'airplane': 5, 'boat': 9, 'traffic light': 10, 'bottle': 44, 'book': 84,
                     'clock': 85}
_SUPERCATEGORIES = {'airplane': 'vehicle', 'boat': 'vehicle', 'traffic light': 'outdoor',
                    'bottle': 'kitchen', 'book': 'indoor', 'clock': 'indoor'}
STUFF_CLASSES = ('wall', 'sky', 'floor', 'grass')
# 0-based positions in mmseg's ADE20KDataset.METAINFO['classes']; a PNG stores
# index + 1 because 0 is ADE20K's "other" (dropped by reduce_zero_label).
ADE_INDEX = {'wall': 0, 'sky': 2, 'floor': 3, 'grass': 9, 'book': 67, 'boat': 76,
             'airplane': 90, 'bottle': 98, 'traffic light': 136, 'clock': 148}
ADE_CLASSES = tuple(sorted(ADE_INDEX, key=ADE_INDEX.get))

SPLITS = ('train', 'val')
_COCO_DIRS = {'train': 'train2017', 'val': 'val2017'}
_ADE_DIRS = {'train': 'training', 'val': 'validation'}
_ADE_ROOT = osp.join('ade', 'ADEChallengeData2016')
META_FILE = 'embedded_meta.json'

_SS = 2                     # objects are drawn at 2x and area-downsampled (anti-aliasing)
_MAX_ANGLE = 25.0           # degrees of in-plane rotation
_MIN_VISIBLE_FRAC = 0.35    # an occluded instance keeps at least this share of itself
_MIN_VISIBLE_AREA = 48      # ... and at least this many pixels
_MIN_SPECK = 6              # visible fragments smaller than this are left unannotated
_JPEG_QUALITY = 90


# --------------------------------------------------------------------------- colours, noise


def _color(rng, s=(0.15, 0.95), v=(0.25, 0.95)):
    """A random BGR colour (float, 0..255); instance colours never depend on class."""
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*s), rng.uniform(*v))
    return np.array([b, g, r], np.float32) * 255


def _noise(rng, h, w, cy, cx=None):
    """Smooth value noise in [0, 1] with cells of about cy x cx pixels."""
    cx = cy if cx is None else cx
    grid = rng.random((max(2, int(h / cy) + 2), max(2, int(w / cx) + 2)), dtype=np.float32)
    return np.clip(cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)


def _fractal(rng, h, w, cell, octaves=3, stretch=1.0):
    out, total, amp = np.zeros((h, w), np.float32), 0.0, 1.0
    for _ in range(octaves):
        out += amp * _noise(rng, h, w, max(1.0, cell), max(1.0, cell * stretch))
        total, amp, cell = total + amp, amp * 0.5, cell / 2
    return out / total


def _smoothstep(a, b, x):
    t = np.clip((x - a) / (b - a), 0, 1)
    return t * t * (3 - 2 * t)


def _blend(img, mask, color, opacity=1.0):
    """Paint ``color`` (BGR vector or image) through an 8-bit coverage mask, in place."""
    x, y, w, h = cv2.boundingRect(mask)     # most masks cover a small part of the image
    if not w:
        return
    win = (slice(y, y + h), slice(x, x + w))
    a = (mask[win].astype(np.float32) * (opacity / 255))[..., None]
    color = np.asarray(color, np.float32)
    img[win] = img[win] * (1 - a) + a * (color[win] if color.ndim == 3 else color)


# --------------------------------------------------------------------------- object drawing


class _Canvas:
    """An object's drawing surface, addressed in box coordinates: u to the right
    and v downwards, both 0..1 over the object's box (w x h pixels at _SS)."""

    def __init__(self, rng, w, h):
        self.rng, self.w, self.h = rng, w, h
        # The margin keeps anti-aliased edges and drop shadows inside the patch.
        self.m = m = int(math.ceil(0.04 * max(w, h))) + 3
        self.shape = (int(math.ceil(h)) + 2 * m, int(math.ceil(w)) + 2 * m)
        self.rgb = np.zeros(self.shape + (3,), np.float32)
        self.alpha = np.zeros(self.shape, np.float32)
        ys, xs = np.mgrid[:self.shape[0], :self.shape[1]].astype(np.float32)
        self.U, self.V = (xs - m) / w, (ys - m) / h

    def t(self, frac):
        """A line thickness given as a fraction of the box's shorter side."""
        return max(1, int(round(frac * min(self.w, self.h))))

    def _xy(self, uv):
        uv = np.asarray(uv, np.float64).reshape(-1, 2)
        xy = np.stack([self.m + uv[:, 0] * self.w, self.m + uv[:, 1] * self.h], 1)
        return np.round(xy * 16).astype(np.int32)  # 4 fractional bits for cv2's shift=4

    def poly(self, uv):
        out = np.zeros(self.shape, np.uint8)
        cv2.fillPoly(out, [self._xy(uv)], 255, cv2.LINE_AA, 4)
        return out

    def rrect(self, u0, v0, u1, v1, r_px):
        """Rounded rectangle; the corner radius is in pixels so corners stay round
        whatever the box's aspect."""
        ru, rv = r_px / self.w, r_px / self.h
        pts = []
        for cu, cv, a0 in ((u1 - ru, v0 + rv, -90), (u1 - ru, v1 - rv, 0), (u0 + ru, v1 - rv, 90),
                           (u0 + ru, v0 + rv, 180)):
            a = np.radians(np.linspace(a0, a0 + 90, 6))
            pts += list(zip(cu + ru * np.cos(a), cv + rv * np.sin(a)))
        return self.poly(pts)

    def ellipse(self, cu, cv, ru, rv, start=0, end=360, thick=-1):
        out = np.zeros(self.shape, np.uint8)
        c = tuple(int(v) for v in self._xy([(cu, cv)])[0])
        axes = (int(round(ru * self.w * 16)), int(round(rv * self.h * 16)))
        cv2.ellipse(out, c, axes, 0, start, end, 255, thick, cv2.LINE_AA, 4)
        return out

    def lines(self, segments, thick):
        out = np.zeros(self.shape, np.uint8)
        cv2.polylines(out, [self._xy(s) for s in segments], False, 255, thick, cv2.LINE_AA, 4)
        return out

    def fill(self, mask, color):
        """A solid part: paints and extends the silhouette."""
        _blend(self.rgb, mask, color)
        np.maximum(self.alpha, mask * np.float32(1 / 255), out=self.alpha)

    def tex(self, mask, color, opacity=1.0, within=None):
        """Surface detail: paints only inside the silhouette drawn so far (or ``within``)."""
        clip = self.alpha if within is None else within * np.float32(1 / 255)
        _blend(self.rgb, (mask * clip).astype(np.uint8), color, opacity)

    def shade(self, factor, within=None):
        f = factor if within is None else 1 + (factor - 1) * (within * np.float32(1 / 255))
        self.rgb *= f[..., None]

    def finish(self):
        """Light, grain and mirror the object, then return its premultiplied colour
        and alpha at output resolution and its box size in output pixels."""
        rng = self.rng
        phi = rng.uniform(0, 2 * np.pi)
        tilt = (self.U - .5) * np.cos(phi) + (self.V - .5) * np.sin(phi)
        light = 1 + rng.uniform(0, 0.4) * tilt
        grain = 1 + rng.uniform(0.04, 0.16) * (_noise(rng, *self.shape, rng.uniform(2, 8)) - .5)
        rgb, alpha = self.rgb * (light * grain)[..., None], self.alpha
        if rng.random() < 0.5:
            rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
        size = (int(round(self.shape[1] / _SS)), int(round(self.shape[0] / _SS)))
        prgb = cv2.resize(np.ascontiguousarray(rgb * alpha[..., None]), size,
                          interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(np.ascontiguousarray(alpha), size, interpolation=cv2.INTER_AREA)
        return prgb, alpha, (self.w / _SS, self.h / _SS)


def _canvas(rng, length, aspect):
    """A canvas whose longest box side is ``length`` output pixels for a jittered
    height / width ratio ``aspect``."""
    a = aspect * math.exp(rng.uniform(-0.2, 0.2))
    w, h = (length, length * a) if a <= 1 else (length / a, length)
    return _Canvas(rng, max(4.0, w * _SS), max(4.0, h * _SS))


def _draw_airplane(rng, length):
    """Top view: fuselage, swept wings, tail plane, optional engines; metal shading."""
    c = _canvas(rng, length, rng.uniform(0.8, 1.0))
    body = _color(rng)
    wing = body * rng.uniform(0.65, 1.0)
    fw = rng.uniform(0.055, 0.085)                       # fuselage half-width / span
    le, cr = rng.uniform(0.56, 0.66), rng.uniform(0.17, 0.26)
    sweep, ct = rng.uniform(0.1, 0.3), cr * rng.uniform(0.3, 0.55)
    tl, tc, ts = rng.uniform(0.02, 0.06), rng.uniform(0.09, 0.14), rng.uniform(0.14, 0.22)
    engines = rng.random() < 0.65
    for s in (1, -1):                                     # the two sides mirror about the axis
        c.fill(c.poly([(le, .5), (le - sweep, .5 - s * .5), (le - sweep - ct, .5 - s * .5),
                       (le - cr, .5)]), wing)
        c.fill(c.poly([(tl + tc, .5), (tl + tc * .5, .5 - s * ts), (tl, .5 - s * ts),
                       (tl - .02, .5)]), wing)
        c.tex(c.lines([[(le - cr + .03, .5 - s * fw), (le - sweep - ct + .02, .5 - s * .45)]],
                      c.t(.012)), wing * 0.6)
        if engines:
            d = rng.uniform(0.16, 0.24)
            c.fill(c.ellipse(le - sweep * d / .5 + .01, .5 - s * d, .07, .025), body * 0.45)
    arc = np.linspace(-np.pi / 2, np.pi / 2, 11)
    top = [(0.0, .5 - fw * .3), (0.12, .5 - fw * .9), (0.25, .5 - fw), (0.84, .5 - fw)]
    nose = list(zip(0.84 + 0.16 * np.cos(arc), .5 + fw * np.sin(arc)))
    fus = c.poly(top + nose + [(u, 1 - v) for u, v in reversed(top)])
    c.fill(fus, body)
    c.shade(np.clip(1.2 - 0.7 * ((c.V - .5) / fw) ** 2, 0.45, 1.25), within=fus)
    for u in rng.uniform(0.15, 0.8, rng.integers(2, 6)):
        c.tex(c.lines([[(u, .5 - fw), (u, .5 + fw)]], c.t(.008)), body * 0.55)
    if rng.random() < 0.5:
        c.tex(c.lines([[(0.06, .5), (0.86, .5)]], c.t(fw * 0.6)), _color(rng), within=fus)
    c.fill(c.ellipse(0.92, .5, 0.035, fw * 0.6), _color(rng, v=(0.05, 0.3)))
    return c.finish()


def _draw_boat(rng, length):
    """Side view: hull with waterline band and planks, then mast and triangular
    sails (or, for a motor boat, a cabin with windows)."""
    sail = rng.random() < 0.7
    c = _canvas(rng, length, rng.uniform(0.8, 1.1) if sail else rng.uniform(0.4, 0.55))
    deck = rng.uniform(0.6, 0.72) if sail else rng.uniform(0.3, 0.45)
    hull = _color(rng)
    rise, kf, kb = rng.uniform(0, 0.08) * (1 - deck), rng.uniform(0.72, 0.85), rng.uniform(0.1, 0.2)
    hm = c.poly([(0, deck), (.5, deck - rise * .3), (1, deck - rise),
                 (.94, deck + .45 * (1 - deck)), (kf, 1), (kb, 1), (.02, deck + .55 * (1 - deck))])
    c.fill(hm, hull)
    c.shade(1.1 - 0.4 * np.clip((c.V - deck) / (1 - deck), 0, 1), within=hm)
    wl = deck + rng.uniform(0.5, 0.75) * (1 - deck)
    c.tex(np.where(c.V > wl, hm, 0), _color(rng), within=hm)
    for k in range(int(rng.integers(1, 4))):
        v = deck + (k + 1) / 4 * (wl - deck)
        c.tex(c.lines([[(0.02, v), (0.5, v - rise * .3), (0.97, v - rise)]], c.t(.012)), hull * .65)
    if sail:
        um, mast = rng.uniform(0.4, 0.55), _color(rng, v=(0.1, 0.5))
        boom = deck - 0.05
        clew, tack = um - rng.uniform(0.3, 0.4), min(0.93, um + rng.uniform(0.28, 0.4))
        c.fill(c.poly([(um, 0.02), (um - 0.08, 0.4 * boom), (clew, boom), (um, boom)]),
               _color(rng, s=(0, 0.5), v=(0.75, 1)))
        c.fill(c.poly([(um + 0.01, 0.1), (tack, deck - 0.03), (um + 0.04, deck - 0.06)]),
               _color(rng, s=(0, 0.6), v=(0.7, 1)))
        seams = [[(um, 0.02), (clew + (um - clew) * f, boom)] for f in (0.25, 0.5, 0.75)]
        c.tex(c.lines(seams, c.t(.01)), np.float32(0.8) * c.rgb, opacity=0.4)
        c.fill(c.lines([[(um, 0.0), (um, deck)], [(um, boom), (clew, boom)]], c.t(.025)), mast)
    else:
        top = rng.uniform(0.0, 0.08)
        cab = c.poly([(0.22, deck), (0.28, top), (0.55, top), (0.72, deck)])
        c.fill(cab, _color(rng, s=(0, 0.4), v=(0.6, 1)))
        glass = _color(rng, v=(0.05, 0.35))
        w0, w1 = top + .25 * (deck - top), top + .6 * (deck - top)
        for u in np.linspace(0.3, 0.55, int(rng.integers(2, 4)))[:-1]:
            c.fill(c.poly([(u, w0), (u + .06, w0), (u + .06, w1), (u, w1)]), glass)
        windscreen = [(0.6, top + .15 * (deck - top)), (0.66, deck - 0.02), (0.58, deck - 0.02)]
        c.fill(c.poly(windscreen), glass)
    return c.finish()


def _draw_traffic_light(rng, length):
    """A tall rounded housing with three visored lamp discs, one of them lit."""
    c = _canvas(rng, length, rng.uniform(2.3, 3.1))
    house = _color(rng, v=(0.15, 0.8))
    plate = rng.random() < 0.5
    u0, u1 = (0.14, 0.86) if plate else (0.0, 1.0)
    if plate:
        c.fill(c.rrect(0, 0.03, 1, 0.97, 0.08 * c.w), _color(rng))
    hm = c.rrect(u0, 0, u1, 1, 0.3 * (u1 - u0) * c.w)
    c.fill(hm, house)
    c.shade(0.75 + 0.4 * np.sin(np.pi * np.clip((c.U - u0) / (u1 - u0), 0, 1)), within=hm)
    r = min(0.36 * (u1 - u0) * c.w, 0.13 * c.h)
    ru, rv = r / c.w, r / c.h
    lit = int(rng.integers(4))                         # 3 = all dark
    hues = (np.array([30, 30, 230]), np.array([0, 170, 255]), np.array([80, 220, 40]))
    for i, v in enumerate((0.2, 0.5, 0.8)):
        c.tex(c.ellipse(.5, v - 0.02, ru * 1.25, rv * 1.25, 180, 360, c.t(0.08)), house * 0.35)
        d = np.sqrt(((c.U - .5) / ru) ** 2 + ((c.V - v) / rv) ** 2)
        lamp = hues[i] * (np.clip(1.35 - 0.7 * d, 0.3, 1.3)[..., None] if i == lit else 0.22) + 12
        c.fill(c.ellipse(.5, v, ru, rv), lamp)
    return c.finish()


def _draw_bottle(rng, length):
    """Body, curved shoulder, neck and cap; glass shading, highlight and a label."""
    c = _canvas(rng, length, rng.uniform(2.3, 3.3))
    glass = _color(rng)
    sh = rng.uniform(0.3, 0.46)
    nk, nw = sh - rng.uniform(0.08, 0.16), rng.uniform(0.13, 0.2)
    t = np.linspace(0, 1, 9)
    s = t * t * (3 - 2 * t)
    right = [(.5 + nw, 0.06), *zip(.5 + nw + (.5 - nw) * s, nk + (sh - nk) * t), (1, .93),
             (.97, .985), (.9, 1)]
    body = c.poly(right + [(1 - u, v) for u, v in reversed(right)])
    c.fill(body, glass)
    if rng.random() < 0.35:
        c.tex(np.where(c.V > rng.uniform(0.4, 0.8), body, 0), glass * 0.55)
    c.shade(0.55 + 0.6 * np.sin(np.pi * np.clip(c.U, 0, 1)), within=body)
    if rng.random() < 0.75:
        la = rng.uniform(sh + 0.05, 0.6)
        lb = min(0.92, la + rng.uniform(0.15, 0.3))
        label = c.poly([(0, la), (1, la), (1, lb), (0, lb)])
        c.tex(label, _color(rng))
        ink = _color(rng, v=(0.05, 0.4))
        rows = np.linspace(la, lb, int(rng.integers(3, 6)))[1:-1]
        c.tex(c.lines([[(rng.uniform(.15, .3), v), (rng.uniform(.6, .85), v)] for v in rows],
                      c.t(.06)), ink)
    hl = rng.uniform(0.2, 0.32)
    highlights = [[(hl, nk + .04), (hl, .95)], [(.5 - nw * .4, .1), (.5 - nw * .4, nk)]]
    c.tex(c.lines(highlights, c.t(.07)), np.full(3, 255, np.float32), opacity=0.55)
    c.fill(c.rrect(.5 - nw * 1.2, 0, .5 + nw * 1.2, 0.075, 0.02 * c.h), _color(rng))
    return c.finish()


def _draw_book(rng, length):
    """Front cover with spine band, title block and decoration; page edges with
    page-line stripes along the right and bottom sides."""
    c = _canvas(rng, length, rng.uniform(1.2, 1.55))
    cover, pages = _color(rng), _color(rng, s=(0, 0.15), v=(0.75, 0.97))
    pr = rng.uniform(0.05, 0.09)
    pb = pr * c.w / c.h
    c.fill(c.poly([(0.03, 0.02), (1, 0.03), (1, 1), (0.02, 1)]), pages)
    n = max(3, int(pr * c.w / 3))
    fr = (np.arange(n) + .5) / n
    stripes = [[(1 - pr + f * pr, .03), (1 - pr + f * pr, 1)] for f in fr]
    stripes += [[(.03, 1 - pb + f * pb), (1, 1 - pb + f * pb)] for f in fr]
    c.tex(c.lines(stripes, 1), pages * 0.7)
    cm = c.poly([(0, 0), (1 - pr, 0), (1 - pr, 1 - pb), (0, 1 - pb)])
    c.fill(cm, cover)
    c.shade(0.9 + 0.25 * _fractal(rng, *c.shape, 6, 2), within=cm)
    sp = rng.uniform(0.07, 0.13)
    c.tex(c.poly([(0, 0), (sp, 0), (sp, 1 - pb), (0, 1 - pb)]), cover * 0.65)
    gold = _color(rng, v=(0.6, 1))
    bands = [[(0, v), (sp, v)] for v in rng.uniform(0.05, 0.9, int(rng.integers(2, 4)))]
    c.tex(c.lines(bands + [[(sp + .03, 0), (sp + .03, 1 - pb)]], c.t(.025)), gold)
    if rng.random() < 0.7:
        t0 = rng.uniform(0.1, 0.25)
        t1 = t0 + rng.uniform(0.1, 0.2)
        ul, ur = sp + .1, 1 - pr - .08
        c.tex(c.poly([(ul, t0), (ur, t0), (ur, t1), (ul, t1)]), _color(rng))
        c.tex(c.lines([[(sp + .15, v), (1 - pr - .14, v)] for v in np.linspace(t0, t1, 4)[1:-1]],
                      c.t(.03)), _color(rng, v=(0.05, 0.5)))
    if rng.random() < 0.5:
        f = 0.05
        ul, ur, vb = sp + f, 1 - pr - f, 1 - pb - f
        c.tex(c.lines([[(ul, f), (ur, f), (ur, vb), (ul, vb), (ul, f)]], c.t(.02)), gold)
    if rng.random() < 0.5:
        cu, cv, rr = (sp + 1 - pr) / 2, rng.uniform(0.55, 0.75), rng.uniform(0.12, 0.22)
        c.tex(c.ellipse(cu, cv, rr, rr * c.w / c.h), _color(rng))
    return c.finish()


def _draw_clock(rng, length):
    """A disc: bevelled rim, face, hour (or minute) ticks, hands and a hub."""
    c = _canvas(rng, length, rng.uniform(0.88, 1.12))
    rim, rt = _color(rng), rng.uniform(0.06, 0.14)
    dark = rng.random() < 0.2
    face = _color(rng, s=(0, 0.5), v=(0.1, 0.3)) if dark else _color(rng, s=(0, 0.25), v=(0.8, 1))
    ink = np.full(3, 225 if dark else 30, np.float32)
    rm = c.ellipse(.5, .5, .5, .5)
    c.fill(rm, rim)
    a = rng.uniform(0, 2 * np.pi)
    c.shade(1 + 0.6 * ((c.U - .5) * np.cos(a) + (c.V - .5) * np.sin(a)), within=rm)
    rf = .5 - rt
    c.fill(c.ellipse(.5, .5, rf, rf), face)
    n = 60 if rng.random() < 0.3 else 12
    major, minor = [], []
    for k in range(n):
        ang = 2 * np.pi * k / n
        big = k % (n // 12) == 0 if n == 60 else k % 3 == 0
        r0 = rf * (0.72 if big else 0.84)
        seg = [(.5 + r0 * np.sin(ang), .5 - r0 * np.cos(ang)),
               (.5 + rf * .93 * np.sin(ang), .5 - rf * .93 * np.cos(ang))]
        (major if big else minor).append(seg)
    c.tex(c.lines(major, c.t(.035)), ink)
    c.tex(c.lines(minor, c.t(.015)), ink)
    hands = [(rng.uniform(0, 2 * np.pi), 0.5, .045), (rng.uniform(0, 2 * np.pi), 0.8, .028)]
    for ang, ln, th in hands:
        tip = (.5 + rf * ln * np.sin(ang), .5 - rf * ln * np.cos(ang))
        c.tex(c.lines([[(.5, .5), tip]], c.t(th)), ink)
    if rng.random() < 0.5:
        ang = rng.uniform(0, 2 * np.pi)
        c.tex(c.lines([[(.5 - rf * .2 * np.sin(ang), .5 + rf * .2 * np.cos(ang)),
                        (.5 + rf * .88 * np.sin(ang), .5 - rf * .88 * np.cos(ang))]], c.t(.012)),
              _color(rng, s=(0.6, 1), v=(0.6, 1)))
    c.tex(c.ellipse(.5, .5, rf * .08, rf * .08), ink)
    return c.finish()


# Indexed like CLASSES.
_DRAW = (_draw_airplane, _draw_boat, _draw_traffic_light, _draw_bottle, _draw_book, _draw_clock)


# --------------------------------------------------------------------------- backgrounds


def _tex_sky(rng, H, W, hor):
    kind = rng.integers(3)                               # clear, overcast, dusk
    if kind == 0:
        hue = rng.uniform(0.55, 0.64)
        top = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(.45, .8), rng.uniform(.6, .9))[::-1])
        top = top * 255
        low = _color(rng, (0.1, 0.35), (0.8, 1))
    elif kind == 1:
        top, low = np.full(3, rng.uniform(110, 190)), np.full(3, rng.uniform(170, 235))
    else:
        top, low = _color(rng, (0.4, 0.8), (0.25, 0.55)), _color(rng, (0.4, 0.8), (0.8, 1))
    ys = np.arange(H, dtype=np.float32)[:, None] / max(1.0, float(hor.max()))
    t = np.clip(ys, 0, 1)[..., None] ** rng.uniform(0.6, 1.5)
    img = np.broadcast_to(top * (1 - t) + low * t, (H, W, 3)).astype(np.float32)
    cover = rng.uniform(0.0, 0.6)
    clouds = _smoothstep(0.62 - cover * .5, 0.8 - cover * .5, _fractal(rng, H, W, H / 3, 4, 2.5))
    return img * (1 - clouds[..., None] * .9) + clouds[..., None] * .9 * rng.uniform(200, 250)


def _tex_wall(rng, H, W, hor):
    base = _color(rng, (0.05, 0.5), (0.35, 0.9))
    kind = rng.integers(4)                               # bricks, plaster, stripes, panels
    ys, xs = np.mgrid[:H, :W].astype(np.float32)
    if kind == 0:
        bh = rng.uniform(8, 18)
        bw = bh * rng.uniform(2, 3)
        row = (ys // bh).astype(int)
        xsh = xs + (row % 2) * bw / 2
        col = (xsh // bw).astype(int)
        jit = rng.uniform(0.75, 1.2, (row.max() + 1, col.max() + 1)).astype(np.float32)
        img = base * jit[row, col][..., None]
        mt = rng.uniform(1, 2.5)
        mortar = ((ys % bh) < mt) | ((xsh % bw) < mt)
        img[mortar] = _color(rng, (0, 0.1), (0.3, 0.9))
    elif kind == 1:
        img = base * (0.8 + 0.35 * _fractal(rng, H, W, 40, 4))[..., None]
    elif kind == 2:
        sw = rng.uniform(6, 24)
        if rng.random() < 0.6:
            alt = base * rng.uniform(0.7, 0.9)
        else:
            alt = _color(rng, (0.05, 0.5), (0.35, 0.9))
        img = np.where(((xs // sw) % 2 == 1)[..., None], alt, base).astype(np.float32)
    else:
        ps = rng.uniform(40, 90)
        seam = ((xs % ps) < 2) | ((ys % (ps * rng.uniform(0.8, 1.6))) < 2)
        img = base * (0.9 + 0.2 * (xs % ps) / ps)[..., None]
        img[seam] *= 0.6
    return img * (0.92 + 0.16 * _noise(rng, H, W, 3))[..., None]


def _tex_floor(rng, H, W, hor):
    base = _color(rng, (0.05, 0.6), (0.3, 0.85))
    kind = rng.integers(3)                               # tiles, planks, carpet
    ys, xs = np.mgrid[:H, :W].astype(np.float32)
    if kind == 0:
        ts = rng.uniform(16, 48)
        ti, tj = (ys // ts).astype(int), (xs // ts).astype(int)
        if rng.random() < 0.5:
            other = base * rng.uniform(0.6, 0.85)
        else:
            other = _color(rng, (0, .5), (.3, .9))
        img = np.where(((ti + tj) % 2 == 0)[..., None], base, other).astype(np.float32)
        jit = rng.uniform(0.9, 1.1, (ti.max() + 1, tj.max() + 1)).astype(np.float32)
        img *= jit[ti, tj][..., None]
        g = rng.uniform(1, 3)
        img[((ys % ts) < g) | ((xs % ts) < g)] = _color(rng, (0, 0.1), (0.2, 0.8))
    elif kind == 1:
        ph = rng.uniform(8, 20)
        row = (ys // ph).astype(int)
        off = rng.uniform(0, 200, row.max() + 1).astype(np.float32)
        pl = rng.uniform(60, 160)
        idx = ((xs + off[row]) // pl).astype(int)
        jit = rng.uniform(0.75, 1.15, (row.max() + 1, idx.max() + 1)).astype(np.float32)
        grain = 0.8 + 0.4 * _noise(rng, H, W, 1.5, 30)
        img = base * (jit[row, idx] * grain)[..., None]
        img[((ys % ph) < 1.2) | (((xs + off[row]) % pl) < 1.5)] *= 0.55
    else:
        img = base * (0.75 + 0.25 * _noise(rng, H, W, 1.2) + 0.2 * _noise(rng, H, W, 12))[..., None]
    return img


def _tex_grass(rng, H, W, hor):
    hue = rng.uniform(0.17, 0.36)
    base = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(.4, .85), rng.uniform(.3, .7))[::-1],
                    np.float32) * 255
    img = base * (0.7 + 0.5 * _fractal(rng, H, W, 30, 4))[..., None]
    img = np.ascontiguousarray(img)
    top = int(max(0, hor.min() - 8))
    n = int((H - top) * W / 30)
    # Blades are drawn in a few colour groups: one polylines call per group.
    for _ in range(6):
        k = n // 6
        x, y = rng.uniform(0, W, k), rng.uniform(top, H, k)
        ln = rng.uniform(3, 10, k) * (0.5 + (y - top) / max(1, H - top))
        a = rng.uniform(-0.5, 0.5, k)
        tips = np.stack([x + ln * np.sin(a), y - ln * np.cos(a)], 1)
        segs = np.stack([np.stack([x, y], 1), tips], 1)
        col = base * rng.uniform(0.55, 1.45) + rng.uniform(-15, 15, 3)
        cv2.polylines(img, list(np.round(segs * 16).astype(np.int32)), False, col.tolist(), 1,
                      cv2.LINE_8, 4)
    return img


def _background(rng, H, W):
    """A random horizon splits an upper (sky / wall) and a lower (floor / grass)
    stuff region, each with its own texture. Returns the image and label map."""
    xs = np.arange(W, dtype=np.float32)
    hor = (rng.uniform(0.3, 0.7) * H + rng.uniform(-0.1, 0.1) * H * (xs - W / 2) / W
           + rng.uniform(0, 0.03) * H * np.sin(2 * np.pi * rng.uniform(0.5, 2) * xs / W
                                                + rng.uniform(0, 2 * np.pi)))
    top = 'sky' if rng.random() < 0.5 else 'wall'
    natural = 'grass' if top == 'sky' else 'floor'      # the usual pairing, but not always
    bottom = natural if rng.random() < 0.75 else ('floor' if natural == 'grass' else 'grass')
    upper = np.arange(H, dtype=np.float32)[:, None] < hor[None, :]
    textures = dict(sky=_tex_sky, wall=_tex_wall, floor=_tex_floor, grass=_tex_grass)
    upper_tex = textures[top](rng, H, W, hor)
    img = np.where(upper[..., None], upper_tex, textures[bottom](rng, H, W, hor))
    sem = np.where(upper, ADE_INDEX[top] + 1, ADE_INDEX[bottom] + 1).astype(np.uint8)
    return np.ascontiguousarray(img, dtype=np.float32), sem


def _clutter(rng, img):
    """Unlabelled distractors: stray lines, blobs and small fragments of
    object-like textures. Returns their (thresholded) footprint."""
    H, W = img.shape[:2]
    foot = np.zeros((H, W), bool)

    def put(mask, color):
        _blend(img, mask, color)
        foot[mask >= 128] = True

    def pts(p):
        return np.round(np.asarray(p, np.float64) * 16).astype(np.int32)

    for _ in range(int(rng.integers(2, 8))):             # wires, cracks, poles
        p = [rng.uniform(0, (W, H))]
        for _ in range(int(rng.integers(1, 4))):
            p.append(p[-1] + rng.uniform(-100, 100, 2))
        m = np.zeros((H, W), np.uint8)
        cv2.polylines(m, [pts(p)], False, 255, int(rng.integers(1, 4)), cv2.LINE_AA, 4)
        put(m, _color(rng))
    for _ in range(int(rng.integers(1, 5))):             # irregular blobs
        k = int(rng.integers(5, 10))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = rng.uniform(6, 28) * rng.uniform(0.6, 1.2, k)
        c = rng.uniform(0, (W, H))
        m = np.zeros((H, W), np.uint8)
        cv2.fillPoly(m, [pts(np.stack([c[0] + rad * np.cos(ang), c[1] + rad * np.sin(ang)], 1))],
                     255, cv2.LINE_AA, 4)
        put(m, _color(rng)[None, None] * (0.75 + 0.5 * _noise(rng, H, W, 4))[..., None])
    for _ in range(int(rng.integers(1, 5))):             # fragments of object-like texture
        c, s, m = rng.uniform(0, (W, H)), rng.uniform(6, 16), np.zeros((H, W), np.uint8)
        kind = rng.integers(3)
        if kind == 0:                                    # a patch of page stripes
            d = np.array([np.cos(a := rng.uniform(0, np.pi)), np.sin(a)])
            segs = [pts([c + d * s + n * (i - 3) * 2.5, c - d * s + n * (i - 3) * 2.5])
                    for n in [np.array([-d[1], d[0]])] for i in range(int(rng.integers(3, 7)))]
            cv2.polylines(m, segs, False, 255, 1, cv2.LINE_AA, 4)
        elif kind == 1:                                  # a piece of a rim
            a0 = rng.uniform(0, 360)
            cv2.ellipse(m, tuple(int(v) for v in pts(c)), (int(s * 16), int(s * 16)), 0, a0,
                        a0 + rng.uniform(40, 120), 255, int(rng.integers(2, 4)), cv2.LINE_AA, 4)
        else:                                            # a sail-like shard
            cv2.fillPoly(m, [pts(c + rng.uniform(-s, s, (3, 2)))], 255, cv2.LINE_AA, 4)
        put(m, _color(rng))
    return foot


# --------------------------------------------------------------------------- scene assembly


def _candidate(rng, H, W, size_range, placed):
    """Draw one random object and place it, rotated, in image coordinates."""
    o = SimpleNamespace(cls=int(rng.integers(len(CLASSES))))  # uniform: balanced classes
    length = math.exp(rng.uniform(math.log(size_range[0]), math.log(size_range[1])))
    prgb, alpha, (bw, bh) = _DRAW[o.cls](rng, length)
    ang = rng.uniform(-_MAX_ANGLE, _MAX_ANGLE)
    cs, sn = abs(math.cos(math.radians(ang))), abs(math.sin(math.radians(ang)))
    o.ox, o.oy = (cs * bw + sn * bh) / 2, (sn * bw + cs * bh) / 2
    if placed and rng.random() < 0.5:                    # next to another one: occlusion
        p = placed[int(rng.integers(len(placed)))]
        cx = p.cx + rng.uniform(-1, 1) * (p.ox + o.ox) * 0.8
        cy = p.cy + rng.uniform(-1, 1) * (p.oy + o.oy) * 0.8
    else:
        cx, cy = rng.uniform(0, W), rng.uniform(0, H)
    # Up to about a third of an object may lie outside the frame.
    o.cx = float(np.clip(cx, 0.3 * o.ox, W - 0.3 * o.ox))
    o.cy = float(np.clip(cy, 0.3 * o.oy, H - 0.3 * o.oy))
    ph, pw = alpha.shape
    ex, ey = (cs * pw + sn * ph) / 2 + 1, (sn * pw + cs * ph) / 2 + 1
    x0, y0 = max(0, int(o.cx - ex)), max(0, int(o.cy - ey))
    x1, y1 = min(W, int(math.ceil(o.cx + ex))), min(H, int(math.ceil(o.cy + ey)))
    M = cv2.getRotationMatrix2D(((pw - 1) / 2, (ph - 1) / 2), ang, 1.0)
    M[:, 2] += (o.cx - (pw - 1) / 2 - x0, o.cy - (ph - 1) / 2 - y0)
    o.box = (x0, y0, x1, y1)
    o.prgb = cv2.warpAffine(prgb, M, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR)
    o.alpha = cv2.warpAffine(alpha, M, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR)
    # Thin gaps between parts (e.g. sail and hull) must not become holes: a
    # polygon annotation cannot express them.
    m = (o.alpha >= 0.5).astype(np.uint8)
    cts, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(m, cts, -1, 1, -1)
    o.full = np.zeros((H, W), bool)
    o.full[y0:y1, x0:x1] = m > 0
    o.area = max(int((alpha >= 0.5).sum()), int(m.sum()))  # includes any part outside the frame
    return o


def _has_hole(mask):
    ys, xs = np.nonzero(mask)
    crop = np.pad(mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.uint8), 1)
    _, hier = cv2.findContours(crop, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    return hier is not None and bool((hier[0][:, 3] >= 0).any())


def _try_add(placed, o):
    """Put ``o`` on top unless that would hide too much of, or punch a hole into,
    an instance below it. Rejecting the newcomer (rather than dropping the
    occluded instance) keeps every painted object annotated."""
    inside = int(o.full.sum())
    if inside < max(_MIN_VISIBLE_AREA, 0.6 * o.area):
        return False
    x0, y0, x1, y1 = o.box
    updates = []
    for p in placed:
        hidden = p.vis[y0:y1, x0:x1] & o.full[y0:y1, x0:x1]
        if not hidden.any():
            continue
        vis = p.vis.copy()
        vis[y0:y1, x0:x1] &= ~hidden
        n = int(vis.sum())
        if n < _MIN_VISIBLE_AREA or n < _MIN_VISIBLE_FRAC * p.area or _has_hole(vis):
            return False
        updates.append((p, vis))
    for p, vis in updates:
        p.vis = vis
    o.vis = o.full.copy()
    placed.append(o)
    return True


def _place_objects(rng, H, W, size_range):
    target, placed, tries = int(rng.integers(2, 8)), [], 0
    while len(placed) < target and (tries < 6 * target or len(placed) < 2) and tries < 200:
        tries += 1
        _try_add(placed, _candidate(rng, H, W, size_range, placed))
    return placed


def _composite(rng, img, o):
    x0, y0, x1, y1 = o.box
    roi = img[y0:y1, x0:x1]
    dx, dy = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    shadow = np.zeros_like(o.alpha)
    shadow[dy:, dx:] = o.alpha[:o.alpha.shape[0] - dy, :o.alpha.shape[1] - dx]
    shadow = cv2.GaussianBlur(shadow, (0, 0), rng.uniform(1, 3))
    roi *= (1 - rng.uniform(0.15, 0.45) * shadow)[..., None]
    roi *= (1 - o.alpha)[..., None]
    roi += o.prgb


def _photometric(rng, img):
    H, W = img.shape[:2]
    img = img * rng.uniform(0.92, 1.08, 3).astype(np.float32)
    img = (img - 128) * rng.uniform(0.85, 1.15) + 128 + rng.uniform(-15, 15)
    if rng.random() < 0.4:                               # vignetting
        ys, xs = np.mgrid[:H, :W].astype(np.float32)
        r2 = ((xs - W / 2) / (W / 2)) ** 2 + ((ys - H / 2) / (H / 2)) ** 2
        img *= (1 - rng.uniform(0.1, 0.3) * r2 / 2)[..., None]
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 0.9))
    img += rng.standard_normal(img.shape, dtype=np.float32) * rng.uniform(1.5, 5)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _polygons(vis):
    """COCO polygons that pycocotools decodes back to exactly ``vis``.

    findContours on the 2x nearest-upsampled mask runs along pixel edges at
    half-pixel resolution; mapping j -> (j + 1) // 2 snaps it onto the pixel
    corners of the original mask, the convention pycocotools rasterises with.
    """
    ys, xs = np.nonzero(vis)
    if not len(ys):
        return []
    ox, oy = xs.min() - 1, ys.min() - 1
    crop = np.pad(vis[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.uint8), 1)
    up = crop.repeat(2, 0).repeat(2, 1)
    cts, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for ct in cts:
        p = (ct.reshape(-1, 2) + 1) // 2 + (ox, oy)
        p = p[np.r_[True, np.any(p[1:] != p[:-1], 1)]]
        if len(p) > 1 and (p[0] == p[-1]).all():
            p = p[:-1]
        if len(p) >= 3 and abs(cv2.contourArea(p.astype(np.float32))) >= 1:
            polys.append(p.reshape(-1).astype(float).tolist())
    return polys


def _drop_specks(vis):
    n, lab, stats, _ = cv2.connectedComponentsWithStats(vis.astype(np.uint8), connectivity=8)
    small = np.nonzero(stats[1:, cv2.CC_STAT_AREA] < _MIN_SPECK)[0] + 1
    return vis & ~np.isin(lab, small) if len(small) else vis


# Longest object side in pixels: a 4.6x scale range. Below ~28 px a thin
# object (a traffic light, a bottle) is 2-3 stride-8 cells of a detector's
# finest level, which a CPU-sized run from scratch cannot learn in minutes.
SIZE_RANGE = (28, 128)


def render_scene(rng, size_range=SIZE_RANGE):
    """One scene: ``(bgr uint8 image, ADE label map, [(class index, polygons,
    bbox, area), ...] in painter's order)``."""
    long_side, short_side = int(rng.integers(320, 417)), int(rng.integers(256, 353))
    short_side = min(short_side, long_side - 32)
    W, H = (long_side, short_side) if rng.random() < 0.6 else (short_side, long_side)
    img, sem = _background(rng, H, W)
    sem[_clutter(rng, img)] = 0
    placed = _place_objects(rng, H, W, size_range)
    for o in placed:
        _composite(rng, img, o)
        sem[o.full] = 0      # object pixels left unannotated below stay "other"
    anns = []
    for o in placed:
        polys = _polygons(_drop_specks(o.vis))
        if not polys:        # only specks were left visible: unannotated, label "other"
            continue
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, H, W))
        # The label map is painted from the decoded polygons themselves, so the
        # two annotations agree by construction.
        sem[mask_utils.decode(rle).astype(bool)] = ADE_INDEX[CLASSES[o.cls]] + 1
        xs = [v for p in polys for v in p[0::2]]
        ys = [v for p in polys for v in p[1::2]]
        bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        anns.append((o.cls, polys, bbox, float(mask_utils.area(rle))))
    return _photometric(rng, img), sem, anns


# --------------------------------------------------------------------------- writing


def _file_names(split, index):
    """(COCO image, ADE image, ADE label) paths relative to out_dir for a 1-based index."""
    ade = f'ADE_{split}_{index:08d}'
    return (osp.join('coco', _COCO_DIRS[split], f'{index:012d}.jpg'),
            osp.join(_ADE_ROOT, 'images', _ADE_DIRS[split], ade + '.jpg'),
            osp.join(_ADE_ROOT, 'annotations', _ADE_DIRS[split], ade + '.png'))


def _make_sample(job):
    """Render and write one scene; its own sub-seed makes it independent of every
    other image and of the order (or process) it is generated in."""
    out_dir, seed, split, index, size_range = job
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    img, sem, anns = render_scene(rng, size_range)
    ok, jpg = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
    ok2, png = cv2.imencode('.png', sem)
    assert ok and ok2, 'image encoding failed'
    coco_img, ade_img, ade_png = _file_names(split, index)
    for rel, data in ((coco_img, jpg), (ade_img, jpg), (ade_png, png)):
        with open(osp.join(out_dir, rel), 'wb') as f:
            f.write(data.tobytes())
    return img.shape[1], img.shape[0], anns


def _coco_json(split, samples):
    images, annotations = [], []
    for index, (width, height, anns) in enumerate(samples, 1):
        images.append(dict(id=index, file_name=f'{index:012d}.jpg', width=width, height=height,
                           license=1))
        for cls, polys, bbox, area in anns:
            annotations.append(dict(id=len(annotations) + 1, image_id=index,
                                    category_id=COCO_CATEGORY_IDS[CLASSES[cls]], segmentation=polys,
                                    area=area, bbox=[float(v) for v in bbox], iscrowd=0))
    return dict(
        info=dict(description=f'mmext embedded synthetic data ({split})',
                  version=str(GENERATOR_VERSION), year=2017, contributor='mmext', url=''),
        licenses=[dict(id=1, name='generated procedurally', url='')],
        images=images,
        annotations=annotations,
        categories=[dict(id=COCO_CATEGORY_IDS[c], name=c, supercategory=_SUPERCATEGORIES[c])
                    for c in CLASSES])


def _expected_files(num):
    files = [osp.join('coco', 'annotations', f'instances_{s}2017.json') for s in SPLITS]
    for split in SPLITS:
        for index in range(1, num[split] + 1):
            files += _file_names(split, index)
    return files


def _summary(out_dir, meta, generated):
    return dict(meta, out_dir=out_dir, coco_root=osp.join(out_dir, 'coco'),
                ade_root=osp.join(out_dir, _ADE_ROOT), generated=generated)


def generate(out_dir, num_train=600, num_val=150, seed=0, overwrite=False, size_range=SIZE_RANGE,
             workers=None):
    """Write the embedded dataset in both the COCO 2017 and the ADE20K layout.

    Args:
        out_dir (str): folder that receives ``coco/``, ``ade/`` and ``embedded_meta.json``.
        num_train, num_val (int): images per split.
        seed (int): same seed (and arguments) => byte-identical files.
        overwrite (bool): regenerate even if matching data is already there. The
            ``coco/`` and ``ade/`` subfolders of ``out_dir`` are deleted first.
        size_range (tuple): longest object side range in pixels (log-uniform).
        workers (int, optional): processes; default 2 (or fewer cores) for
            larger runs, in-process for small ones. Output does not depend on it.

    Returns:
        dict: the content of ``embedded_meta.json`` plus ``out_dir``,
        ``coco_root``, ``ade_root`` and ``generated`` (False if nothing was written).
    """
    if not 4 <= size_range[0] <= size_range[1] <= 200:
        raise ValueError(f'size_range must satisfy 4 <= min <= max <= 200, got {size_range}')
    out_dir = osp.abspath(out_dir)
    num = dict(train=int(num_train), val=int(num_val))
    config = dict(version=GENERATOR_VERSION, seed=int(seed), num_train=num['train'],
                  num_val=num['val'], size_range=[float(v) for v in size_range])
    meta_path = osp.join(out_dir, META_FILE)
    old = None
    if osp.isfile(meta_path):
        with open(meta_path) as f:
            old = json.load(f)
    if (not overwrite and old is not None and old.get('complete')
            and all(old.get(k) == v for k, v in config.items())
            and all(osp.isfile(osp.join(out_dir, p)) for p in _expected_files(num))):
        return _summary(out_dir, old, generated=False)

    owned = [osp.join(out_dir, d) for d in ('coco', 'ade')]
    if old is None and not overwrite and any(osp.exists(d) for d in owned):
        raise FileExistsError(f'{out_dir} holds coco/ or ade/ data that this generator did not '
                              'write; pass overwrite=True to replace it')
    # Stale images of a larger earlier run would be picked up by ADE20KDataset,
    # which lists its folders, so the owned subfolders are rebuilt from scratch.
    for d in owned:
        if osp.isdir(d):
            shutil.rmtree(d)
    os.makedirs(out_dir, exist_ok=True)
    _write_json(meta_path, dict(config, complete=False))
    os.makedirs(osp.join(out_dir, 'coco', 'annotations'))
    for split in SPLITS:
        for rel in _file_names(split, 1):
            os.makedirs(osp.join(out_dir, osp.dirname(rel)), exist_ok=True)

    jobs = [(out_dir, int(seed), split, i, tuple(size_range))
            for split in SPLITS for i in range(1, num[split] + 1)]
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if len(jobs) >= 64 else 1
    if workers > 1:
        # fork: no re-import of the (torch-importing) mmext package per worker and
        # no `if __name__ == '__main__'` demand on the caller's script. The
        # children must not call cv2.setNumThreads: tearing down the OpenCV
        # thread pool inherited from a parent that used it deadlocks.
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context('fork' if 'fork' in methods else 'spawn')
        with ctx.Pool(workers) as pool:
            results = pool.map(_make_sample, jobs, chunksize=8)
    else:
        results = [_make_sample(j) for j in jobs]

    counts = {c: 0 for c in CLASSES}
    instances = {}
    for split in SPLITS:
        samples = [r for j, r in zip(jobs, results) if j[2] == split]
        _write_json(osp.join(out_dir, 'coco', 'annotations', f'instances_{split}2017.json'),
                    _coco_json(split, samples), compact=True)
        instances[split] = sum(len(s[2]) for s in samples)
        for s in samples:
            for a in s[2]:
                counts[CLASSES[a[0]]] += 1
    meta = dict(config, complete=True, classes=list(CLASSES), stuff_classes=list(STUFF_CLASSES),
                ade_classes=list(ADE_CLASSES),
                ade_labels={c: ADE_INDEX[c] + 1 for c in ADE_CLASSES},
                num_instances=instances, class_counts=counts)
    _write_json(meta_path, meta)                       # last: marks the data as complete
    return _summary(out_dir, meta, generated=True)


def _write_json(path, obj, compact=False):
    with open(path, 'w') as f:
        if compact:
            json.dump(obj, f, separators=(',', ':'))
        else:
            json.dump(obj, f, indent=2)
            f.write('\n')
