"""Execute one notebook top to bottom, skipping flagged cells, and save it with its outputs.

    python tools/exec_nb.py SRC.ipynb DEST.ipynb [--flags "gpu slow"]
Exits non-zero (and writes nothing) when a cell raises."""
import argparse, os, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from nbutil import skip_cell
from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell

def main():
    p = argparse.ArgumentParser()
    p.add_argument('src'); p.add_argument('dest'); p.add_argument('--flags', default='')
    a = p.parse_args()
    src, dest, flags = Path(a.src).resolve(), Path(a.dest).resolve(), a.flags.split()
    nb = read_nb(src)
    os.chdir(src.parent)
    shell = CaptureShell(src)
    shell.run_all(nb, exc_stop=True, preproc=lambda c: skip_cell(c, flags))
    for c in nb.cells:  # drop execution counts so the site never shows stale numbering
        if c.cell_type == 'code': c.pop('execution_count', None); c['execution_count'] = None
    tmp = dest.with_suffix('.tmp.ipynb')
    write_nb(nb, tmp); os.replace(tmp, dest)

if __name__ == '__main__': main()
