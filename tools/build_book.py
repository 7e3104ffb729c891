"""Build the book: execute every chapter in order (CPU mode unless a GPU is present), then render the site into docs/.

    python tools/build_book.py [--flags "gpu slow sd"] [--no-exec] [--out DIR] [--only 03_models.ipynb ...]

Steps: (1) copy nbs/ to _build/nbs and execute each chapter there with its outputs saved (flagged cells
`#| slow`, `#| gpu`, `#| sd` are skipped unless switched on with --flags; `gpu` is switched on when CUDA is
available); (2) run nbdev's notebook processors (show_doc, directives) into _proc/; (3) render _proc/ with
Quarto when a `quarto` binary is on PATH, otherwise with smalldocs; (4) vendor KaTeX so maths renders
offline; (5) replace docs/ (or --out) only when every step succeeded, and regenerate README.md.
"""
import argparse, hashlib, json, os, re, shutil, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from nbutil import ROOT, NBS, chapters, run_env

BUILD, PROC = ROOT/'_build', ROOT/'_proc'
KATEX_CDN = 'https://cdn.jsdelivr.net/npm/katex@0.16.11/dist'
VENDOR = ROOT/'tools'/'vendor'/'katex'

def log(msg): print(msg, flush=True)

def execute(src_dir, flags, only, timeout, reuse=False, jobs=1):
    """Copy the notebooks to _build/nbs and execute the chapters there, in order. Each successful execution is
    cached in _build/executed with the hash of its source; with `reuse`, an unchanged chapter is not run again.
    `jobs` chapters run at the same time (each in its own process; the chapters' small models run single-threaded)."""
    dest, cache = BUILD/'nbs', BUILD/'executed'
    if dest.exists(): shutil.rmtree(dest)
    shutil.copytree(src_dir, dest, ignore=shutil.ignore_patterns('.ipynb_checkpoints', '_tmp', 'sidebar.yml'))
    if flags is None: return dest
    cache.mkdir(parents=True, exist_ok=True)
    def run(nb):
        key = hashlib.sha256(nb.read_bytes() + ' '.join(flags).encode()).hexdigest()
        hit = cache/nb.name, cache/(nb.name + '.sha256')
        if reuse and hit[1].exists() and hit[1].read_text() == key:
            shutil.copy(hit[0], dest/nb.name); log(f'  reused   {nb.name}'); return None
        t0 = time.time()
        r = subprocess.run([sys.executable, str(ROOT/'tools'/'exec_nb.py'), str(dest/nb.name), str(dest/nb.name),
                            '--flags', ' '.join(flags)], env=run_env(), timeout=timeout, capture_output=True, text=True)
        if r.returncode: return f'{nb.name} failed:\n' + r.stdout[-4000:] + r.stderr[-8000:]
        shutil.copy(dest/nb.name, hit[0]); hit[1].write_text(key)
        log(f'  executed {nb.name:32s} {time.time()-t0:6.1f} s')
    todo = [nb for nb in chapters(src_dir) if not only or nb.name in only]
    last = BUILD/'test_times.json'       # the longest chapters first (times of the last test run, if any)
    bench = ROOT/'bench'/'results.json'  # else the test times committed with the benchmarks
    prev = (json.loads(last.read_text())['times'] if last.exists() else
            json.loads(bench.read_text()).get('book', {}).get('times', {}) if bench.exists() else {})
    todo.sort(key=lambda nb: -prev.get(nb.name, 0))
    with ThreadPoolExecutor(max(jobs, 1)) as pool: errors = [e for e in pool.map(run, todo) if e]
    if errors:
        sys.stderr.write('\n'.join(errors))
        raise SystemExit(f'build stopped: {len(errors)} chapter(s) failed (docs/ left as it was)')
    return dest

def process(nb_dir):
    "nbdev's processors (show_doc cells, hidden cells, directives) into _proc/."
    from nbdev.serve import proc_nbs
    if PROC.exists(): shutil.rmtree(PROC)
    cwd = os.getcwd(); os.chdir(ROOT)
    try: proc_nbs(path=str(nb_dir), force=True, n_workers=0)
    finally: os.chdir(cwd)
    return PROC

def render(proc):
    "Quarto when it is installed; smalldocs (pure Python) otherwise. Returns the rendered folder."
    if shutil.which('quarto'):
        subprocess.run(['quarto', 'render', '--no-cache'], cwd=proc, check=True)
    else:
        subprocess.run([str(Path(sys.executable).parent/'smalldocs'), 'render', '--quiet', str(proc)], check=True)
    return proc/'_docs'

def vendor_katex(site):
    "Serve KaTeX from the site itself (site_libs/katex) instead of a CDN, so maths renders offline."
    shutil.copytree(VENDOR, site/'site_libs'/'katex', dirs_exist_ok=True)
    n = 0
    for page in site.rglob('*.html'):
        text = page.read_text(encoding='utf-8')
        if KATEX_CDN not in text: continue
        depth = len(page.relative_to(site).parts) - 1
        page.write_text(text.replace(KATEX_CDN, '../'*depth + 'site_libs/katex'), encoding='utf-8'); n += 1
    return n

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--flags', default=None, help='flagged cells to run too, e.g. "gpu slow" (default: gpu if CUDA)')
    p.add_argument('--no-exec', action='store_true', help='render the notebooks as they are, without running them')
    p.add_argument('--out', default=str(ROOT/'docs'), help='where the site goes (replaced only on success)')
    p.add_argument('--only', nargs='*', default=None, help='execute only these notebooks (others render without outputs)')
    p.add_argument('--src', default=str(NBS), help='the notebooks folder (default nbs/)')
    p.add_argument('--timeout', type=int, default=1800, help='seconds allowed per chapter')
    p.add_argument('--reuse', action='store_true', help='do not re-run chapters whose source is unchanged since '
                   'their last successful execution here (_build/executed)')
    p.add_argument('--jobs', type=int, default=os.cpu_count() or 1, help='chapters executed at the same time')
    a = p.parse_args()
    flags = None if a.no_exec else (a.flags.split() if a.flags is not None else [])
    if flags is not None and a.flags is None:
        try:
            import torch
            if torch.cuda.is_available(): flags = ['gpu']
        except ImportError: pass
    t0 = time.time()
    log(f'book: executing chapters (flags: {flags})' if flags is not None else 'book: rendering without executing')
    nb_dir = execute(Path(a.src), flags, a.only, a.timeout, a.reuse, a.jobs)
    log('book: processing notebooks (nbdev)'); proc = process(nb_dir)
    log('book: rendering site'); site = render(proc)
    if not (site/'index.html').exists(): raise SystemExit(f'render produced no index.html in {site}')
    log(f'book: KaTeX vendored into {vendor_katex(site)} pages')
    out = Path(a.out).resolve()
    old = out.with_name(out.name + '.old')
    if old.exists(): shutil.rmtree(old)
    if out.exists(): out.rename(old)
    shutil.move(str(site), str(out))
    if old.exists(): shutil.rmtree(old)
    (out/'.nojekyll').touch()
    if out == (ROOT/'docs').resolve():
        subprocess.run([sys.executable, str(ROOT/'tools'/'make_readme.py')], check=True)
    log(f'book: site written to {out} in {time.time()-t0:.0f} s')

if __name__ == '__main__': main()
