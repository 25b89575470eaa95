"""The public masks of this checkout against those of an earlier commit, on the real cube and on
a synthetic one (``bench/growth.py``'s generator: N communes under the real départements, one
daily count, 3 years).

Each cube is ingested once into a temporary home (this checkout's ``python -m service ingest``);
then, in two subprocesses, the code of each revision (the earlier one extracted with
``git archive``) computes ``features.disclosure.public_masks`` of that vintage from scratch and
saves every mask; the masks are compared with ``np.array_equal`` (and the figures: cells hidden
per reason), and the time each revision took is printed side by side.

Run: ``python bench/disclosure_check.py [--rev 5f71222~1] [--communes 2000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def masks_child(out: Path) -> None:
    """In a subprocess (PYTHONPATH: one revision): the masks of the home's current vintage."""
    from features.disclosure import FREQUENCIES, public_masks
    from features.settings import Settings
    from features.store import CubeStore

    settings = Settings.from_env()
    store = CubeStore(settings)
    vid = store.current_vintage()["id"]
    datasets = {}
    for f in FREQUENCIES:
        try:
            datasets[f] = store.open(f, vintage_id=vid)
        except KeyError:
            continue
    started = time.perf_counter()
    masks = public_masks(datasets, settings.small_count_threshold)
    seconds = time.perf_counter() - started
    np.savez_compressed(out, **{f"{f}|{name}": m for f, by in masks.hidden.items()
                                for name, m in by.items()})
    figures = {f: {n: {k: v for k, v in fig.items() if isinstance(v, int | float)}
                   for n, fig in by.items()} for f, by in masks.figures.items()}
    out.with_suffix(".json").write_text(json.dumps({"seconds": seconds, "figures": figures}))


def env_for(home: Path, data_dir: Path, code: Path) -> dict:
    env = dict(os.environ)
    env.update({"VIGIE_HOME": str(home), "VIGIE_DATA_DIR": str(data_dir),
                "VIGIE_DATABASE_URL": f"sqlite:///{home}/vigie.sqlite", "PYTHONPATH": str(code)})
    return env


def compare(name: str, home: Path, data_dir: Path, codes: dict[str, Path], tmp: Path) -> bool:
    results = {}
    for label, code in codes.items():
        out = tmp / f"{name}-{label}.npz"
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "_masks", str(out)],
                       env=env_for(home, data_dir, code), cwd=code, check=True)
        with np.load(out) as z:
            results[label] = ({k: z[k] for k in z.files},
                              json.loads(out.with_suffix(".json").read_text()))
    (old, old_info), (new, new_info) = results["before"], results["now"]
    same_keys = sorted(old) == sorted(new)
    differ = [k for k in old if k in new and not np.array_equal(old[k], new[k])]
    same_figures = old_info["figures"] == new_info["figures"]
    hidden = sum(int(m.sum()) for m in new.values())
    print(f"{name}: {len(new)} masks, {hidden:,} cells hidden; masks equal: "
          f"{same_keys and not differ}{' (differ: ' + ', '.join(differ) + ')' if differ else ''}"
          f"; figures equal: {same_figures}; public_masks {old_info['seconds']:.1f} s before, "
          f"{new_info['seconds']:.1f} s now", flush=True)
    return same_keys and not differ and same_figures


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "_masks":
        masks_child(Path(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="5f71222~1", help="the earlier commit")
    parser.add_argument("--communes", type=int, default=2000)
    parser.add_argument("--real-data-dir", type=Path,
                        default=Path(os.environ.get("VIGIE_DATA_DIR",
                                                    ROOT.parent / "shared" / "data")))
    args = parser.parse_args()
    from bench.growth import generate

    tmp = Path(tempfile.mkdtemp(prefix="vigie-disclosure-check-"))
    try:
        old = tmp / "before"
        old.mkdir()
        archive = subprocess.run(["git", "archive", args.rev], cwd=ROOT, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        codes = {"before": old, "now": ROOT}
        synthetic = tmp / "synthetic"
        generate(args.communes, synthetic, args.real_data_dir, 17)
        ok = True
        for i, (name, data_dir) in enumerate((("real", args.real_data_dir),
                                              (f"synthetic-{args.communes}", synthetic))):
            home = tmp / f"home-{i}"
            subprocess.run([sys.executable, "-m", "service", "ingest"], check=True,
                           env=env_for(home, data_dir, ROOT), cwd=ROOT,
                           stdout=subprocess.DEVNULL)
            ok &= compare(name, home, data_dir, codes, tmp)
        print(("same masks as " if ok else "DIFFERENT MASKS from ") + args.rev)
        sys.exit(0 if ok else 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
