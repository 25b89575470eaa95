"""The tile-grid map of the 101 départements drawn by the dashboard.

No département shapes are available offline (no GeoJSON in the shared data, no network), so the
Vue d'ensemble draws one equal square per département on a grid that keeps each département
next to its neighbours. Equal tiles also have a virtue of their own: Paris and the Lozère get the
same weight on screen, so a small, dense département in alert is not hidden by its size.

How the grid was made (and can be made again)
---------------------------------------------
Each metropolitan département is placed at its préfecture (longitude × cos 46.5°, latitude),
the cloud is scaled onto a 12 × 12 grid, and every département is assigned to one cell by
minimising the total squared distance (Hungarian algorithm, ``scipy.optimize.
linear_sum_assignment``); :func:`assign` does it from :data:`PREFECTURES`. The result is frozen
in :data:`GRID` below so that the map never moves between releases; a test checks that it holds
each of the 101 codes exactly once. The five overseas départements (971 Guadeloupe, 972
Martinique, 973 Guyane, 974 La Réunion, 976 Mayotte) sit in a separate strip under the
mainland, as on INSEE's maps.
"""

from __future__ import annotations

from functools import lru_cache

#: Préfecture (longitude, latitude) in degrees, metropolitan départements (approximate).
PREFECTURES: dict[str, tuple[float, float]] = {
    "01": (5.23, 46.21), "02": (3.62, 49.56), "03": (3.33, 46.57), "04": (6.24, 44.09),
    "05": (6.08, 44.56), "06": (7.26, 43.70), "07": (4.60, 44.74), "08": (4.72, 49.77),
    "09": (1.61, 42.97), "10": (4.07, 48.30), "11": (2.35, 43.21), "12": (2.58, 44.35),
    "13": (5.37, 43.30), "14": (-0.37, 49.18), "15": (2.44, 44.93), "16": (0.16, 45.65),
    "17": (-1.15, 46.16), "18": (2.40, 47.08), "19": (1.77, 45.27), "21": (5.04, 47.32),
    "22": (-2.76, 48.51), "23": (1.87, 46.17), "24": (0.72, 45.18), "25": (6.02, 47.24),
    "26": (4.89, 44.93), "27": (1.15, 49.02), "28": (1.49, 48.45), "29": (-4.10, 48.00),
    "2A": (8.74, 41.93), "2B": (9.45, 42.70), "30": (4.36, 43.84), "31": (1.44, 43.60),
    "32": (0.59, 43.65), "33": (-0.58, 44.84), "34": (3.88, 43.61), "35": (-1.68, 48.11),
    "36": (1.69, 46.81), "37": (0.69, 47.39), "38": (5.72, 45.19), "39": (5.55, 46.67),
    "40": (-0.50, 43.89), "41": (1.33, 47.59), "42": (4.39, 45.44), "43": (3.89, 45.04),
    "44": (-1.55, 47.22), "45": (1.91, 47.90), "46": (1.44, 44.45), "47": (0.62, 44.20),
    "48": (3.50, 44.52), "49": (-0.55, 47.47), "50": (-1.09, 49.12), "51": (4.36, 48.96),
    "52": (5.14, 48.11), "53": (-0.77, 48.07), "54": (6.18, 48.69), "55": (5.16, 48.77),
    "56": (-2.76, 47.66), "57": (6.18, 49.12), "58": (3.16, 46.99), "59": (3.06, 50.63),
    "60": (2.08, 49.43), "61": (0.09, 48.43), "62": (2.78, 50.29), "63": (3.08, 45.78),
    "64": (-0.37, 43.30), "65": (0.08, 43.23), "66": (2.90, 42.70), "67": (7.75, 48.58),
    "68": (7.36, 48.08), "69": (4.84, 45.76), "70": (6.15, 47.62), "71": (4.83, 46.31),
    "72": (0.20, 48.00), "73": (5.92, 45.57), "74": (6.13, 45.90), "75": (2.35, 48.86),
    "76": (1.10, 49.44), "77": (2.66, 48.54), "78": (2.13, 48.80), "79": (-0.46, 46.32),
    "80": (2.30, 49.89), "81": (2.15, 43.93), "82": (1.35, 44.02), "83": (5.93, 43.12),
    "84": (4.81, 43.95), "85": (-1.43, 46.67), "86": (0.34, 46.58), "87": (1.26, 45.83),
    "88": (6.45, 48.17), "89": (3.57, 47.80), "90": (6.86, 47.64), "91": (2.44, 48.63),
    "92": (2.21, 48.89), "93": (2.45, 48.91), "94": (2.46, 48.79), "95": (2.06, 49.04),
}

#: The frozen output of :func:`assign` (12 × 12); ``.`` is an empty cell. North is up.
GRID = """
 .   .   .  76  60  80  62  59   .   .   .   .
 .   .  14  27  95  92  93  02  08  57   .   .
 .  22  50  61  78  75  94  51  55  54  67   .
29  35  53  72  28  91  77  10  52  88  68   .
 .  56  49  37  41  45  58  89  21  70  90   .
 .  44  85  86  36  18  03  71  39  25   .   .
 .   .  17  79  87  23  63  69  01  74   .   .
 .   .  33  16  24  19  43  42  38  73   .   .
 .   .  40  47  46  15  48  07  26  05   .   .
 .   .  64  32  82  81  12  30  84  04  06   .
 .   .   .  65  31  09  11  34  13  83   .  2B
 .   .   .   .   .   .  66   .   .   .  2A   .
"""

#: Overseas départements, drawn left to right in a strip under the mainland.
OVERSEAS = ("971", "972", "973", "974", "976")
OVERSEAS_ROW = 13  # one empty row between the mainland and the strip


def parse_grid(text: str = GRID) -> list[dict]:
    """Tiles ``{code, col, row}`` of :data:`GRID` plus the overseas strip."""
    tiles = []
    rows = [line.split() for line in text.strip("\n").splitlines()]
    for r, cells in enumerate(rows):
        for c, cell in enumerate(cells):
            if cell != ".":
                tiles.append({"code": cell, "col": c, "row": r})
    tiles += [{"code": code, "col": c, "row": OVERSEAS_ROW} for c, code in enumerate(OVERSEAS)]
    return tiles


@lru_cache(maxsize=1)
def tiles() -> tuple[dict, ...]:
    """The map's tiles (computed once; callers must not mutate them)."""
    return tuple(parse_grid())


def size() -> tuple[int, int]:
    """(columns, rows) of the whole map, overseas strip included."""
    all_tiles = tiles()
    return (max(t["col"] for t in all_tiles) + 1, max(t["row"] for t in all_tiles) + 1)


def assign(width: int = 12, height: int = 12) -> str:
    """Recompute the grid from :data:`PREFECTURES` (how :data:`GRID` was made).

    Returns the grid in the text format of :data:`GRID`.
    """
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    codes = list(PREFECTURES)
    xy = np.array([PREFECTURES[c] for c in codes])
    x = xy[:, 0] * np.cos(np.radians(46.5))  # degrees of longitude are shorter up here
    y = xy[:, 1]
    gx = (x - x.min()) / (x.max() - x.min()) * (width - 1)
    gy = (y.max() - y) / (y.max() - y.min()) * (height - 1)
    cells = [(i, j) for j in range(height) for i in range(width)]
    cost = np.array([[(gx[k] - i) ** 2 + (gy[k] - j) ** 2 for i, j in cells]
                     for k in range(len(codes))])
    rows, cols = linear_sum_assignment(cost)
    grid = [["."] * width for _ in range(height)]
    for k, cell in zip(rows, cols, strict=True):
        i, j = cells[cell]
        grid[j][i] = codes[k]
    return "\n" + "\n".join(" ".join(f"{v:>2}" for v in row) for row in grid) + "\n"
