"""Helpers shared by the book's build and test scripts: chapter order, cell flags, running one notebook."""
import os, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
FLAGS = ('slow', 'gpu', 'sd')   # keep in step with `tst_flags` in settings.ini

# Offline, headless, reproducible: set for every notebook the build or the tests run.
OFFLINE_ENV = dict(HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1', HF_DATASETS_OFFLINE='1', DIFFUSERS_OFFLINE='1',
                   HF_HUB_DISABLE_TELEMETRY='1', MPLBACKEND='Agg', PYTHONHASHSEED='0', TQDM_MININTERVAL='5')

def chapters(nbs=NBS):
    "The book's notebooks in reading order (file-name order), skipping hidden and private ones."
    return sorted(p for p in Path(nbs).glob('*.ipynb') if not p.name.startswith(('_', '.')))

def cell_flags(source):
    "The `#| word` flags on the first lines of a code cell, e.g. {'slow'} or {'eval: false'}."
    flags = set()
    for line in source.splitlines():
        m = re.match(r'^\s*#\s*\|\s*(.*)$', line)
        if not m: break
        flags.update(t.strip() for t in re.split(r'\s+', m.group(1).strip()) if t.strip())
        if m.group(1).replace(' ', '') == 'eval:false': flags.add('eval:false')
    return flags

def skip_cell(cell, run_flags=()):
    "True when a code cell must not run: flagged with a flag that is not switched on, or `#| eval: false`."
    if cell.cell_type != 'code': return True
    f = cell_flags(cell.source)
    if 'eval:false' in f: return True
    return any(fl in f and fl not in run_flags for fl in FLAGS)

def run_env(extra=None):
    env = {**os.environ, **OFFLINE_ENV, **(extra or {})}
    return env
