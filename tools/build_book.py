"""Build the book: execute every chapter in order (CPU mode unless a GPU is present), then render the site into docs/.

    python tools/build_book.py [--flags "gpu slow sd"] [--no-exec] [--out DIR] [--only 03_models.ipynb ...]

Steps: (1) copy nbs/ to _build/nbs and execute each chapter there with its outputs saved (flagged cells
`#| slow`, `#| gpu`, `#| sd` are skipped unless switched on with --flags; `gpu` is switched on when CUDA is
available); (2) mark each flagged cell with a badge (not run here, or run, and the --flags it needs), run nbdev's
notebook processors (show_doc with the book's renderer, directives) into _proc/, and give the pages the names nbdev
links to (`03_models.ipynb` -> `models.html`), with anchors for every name nbdev links and a numbered sidebar;
(3) render _proc/ with Quarto when a `quarto` binary is on PATH, otherwise with smalldocs; (4) vendor KaTeX so maths
renders offline, and write the search index as readable text, also as search.js so that search works from disk;
(5) after an executed build, check every page in headless Chromium (tools/check_site.py: outputs included);
(6) replace docs/ (or --out) only when every step succeeded, and regenerate README.md.
"""
import argparse, copy, hashlib, json, os, re, shutil, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from nbutil import ROOT, NBS, chapters, run_env, mark_flagged, page_name, untex

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
        key = hashlib.sha256((dest/nb.name).read_bytes() + ' '.join(flags).encode()).hexdigest()   # the copy taken at the start
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

def process(nb_dir, jobs=1):
    """nbdev's processors (show_doc cells, hidden cells, directives) into _proc/, with the book's API renderer
    (`renderer`, an nbdev setting given through nbdev's user config so that only the site build uses it); then the
    pages take the names nbdev links to (`output-file`, which Quarto reads and smalldocs does not)."""
    from nbdev.serve import proc_nbs
    for nb in chapters(nb_dir): mark_flagged(nb)       # a badge above each flagged cell: not run here, or run, and with what
    cfg = BUILD/'nbdev-config'
    (cfg/'nbdev').mkdir(parents=True, exist_ok=True)
    (cfg/'nbdev'/'settings.ini').write_text('[DEFAULT]\nrenderer = nbutil.BookDocRenderer\n')
    if PROC.exists(): shutil.rmtree(PROC)
    import nbdev.processors as procs
    class exec_show_docs(procs.exec_show_docs):
        """nbdev's, but it keeps the outputs the chapter's own run gave every cell that is not an API-doc cell: nbdev
        re-runs cells with imports in its show_doc shell and writes what that shell printed over them (a traceback,
        when the cell needs earlier cells); such a failure is a warning, not an error."""
        def __call__(self, cell):
            doc = bool(procs._show_docs(cell.parsed_() or []) or cell.directives_.keys() & {'export', 'exports', 'exporti', 'exec_doc'})
            kept = copy.deepcopy(cell.get('outputs'))
            try: super().__call__(cell)
            except Exception as e:
                if doc: raise
                log(f'  warning: the show_doc shell skipped cell {cell.idx_} of {getattr(self.nb, "path_", "?")}: '
                    f'{type(e.__cause__ or e).__name__}: {e.__cause__ or e} (a cell with an import runs there; '
                    'put imports in cells of their own)')
                self.k.exc = None
            if not doc and kept is not None: cell['outputs'] = kept
    procs.exec_show_docs = exec_show_docs
    cwd, xdg = os.getcwd(), os.environ.get('XDG_CONFIG_HOME')
    os.chdir(ROOT); os.environ['XDG_CONFIG_HOME'] = str(cfg)
    import nbdev.serve
    spawning = nbdev.serve.parallel   # nbdev spawns its workers, which would lose the processor above: fork them instead
    nbdev.serve.parallel = lambda f, items, **kw: spawning(f, items, **{**kw, 'method': 'fork'})
    try: proc_nbs(path=str(nb_dir), force=True, n_workers=jobs)
    finally:
        nbdev.serve.parallel = spawning
        os.chdir(cwd)
        if xdg is None: os.environ.pop('XDG_CONFIG_HOME', None)
        else: os.environ['XDG_CONFIG_HOME'] = xdg
    anchor_symbols(PROC, name_pages(PROC))
    return PROC

def anchor_symbols(proc, names):
    """nbdev links every exported name in backticks to `page.html#name`, but only names with a show_doc block get a
    heading of that id (methods and private helpers do not): give the others an anchor at the cell that defines them
    (or, for a method whose class cell is hidden, at its class's API block)."""
    import ast
    from nbdev.doclinks import _iter_py_cells
    from smalldocs.markdown import pandoc_id
    defs = {}                                      # page -> {anchor: (name it is defined under, its class or None)}
    for py in sorted((ROOT/'smalldiffusion').rglob('*.py')):
        if py.name.startswith('_'): continue
        try: cells = list(_iter_py_cells(py))
        except ValueError: continue
        for c in cells:
            nb = names.get(Path(c.nb).name)
            if not nb: continue
            try: tree = ast.parse(c.code)
            except SyntaxError: continue
            tops = [t for t in tree.body if isinstance(t, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
            near = tuple(t.name.lower() for t in tops)   # names of the same cell: their API blocks follow it
            for t in tops:
                defs.setdefault(nb, {}).setdefault(t.name.lower(), (t.name, None, near))
                if isinstance(t, ast.ClassDef):
                    for m in t.body:
                        if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)):
                            defs[nb].setdefault(f'{t.name}.{m.name}'.lower(), (t.name, t.name, near))
    # a name several pages define (each recipe's `main`): nbdev links it to the first; on a page that defines it, to its own
    shared = {a for a in {a for v in defs.values() for a in v} if sum(a in v for v in defs.values()) > 1}
    for nb in proc.glob('*.ipynb'):
        own = {a for a in shared if a in defs.get(nb.name, {})}
        if not own: continue
        d = json.loads(nb.read_text(encoding='utf-8'))
        relink = lambda t: re.sub(r'\]\(/([\w-]+)\.html#([\w.-]+)\)', lambda m: f'](/{nb.stem}.html#{m.group(2)})'
                                  if m.group(2) in own else m.group(0), t)
        for c in d['cells']:
            if c['cell_type'] == 'markdown': c['source'] = relink(''.join(c['source']))
            for o in c.get('outputs', []):
                if 'text/markdown' in o.get('data', {}): o['data']['text/markdown'] = relink(''.join(o['data']['text/markdown']))
        nb.write_text(json.dumps(d, indent=1, ensure_ascii=False), encoding='utf-8')
    n = 0
    for nb in proc.glob('*.ipynb'):
        if nb.name not in defs: continue
        d = json.loads(nb.read_text(encoding='utf-8'))
        heads, head_cell = set(), {}
        for i, c in enumerate(d['cells']):
            texts = [''.join(c['source'])] if c['cell_type'] == 'markdown' else [
                ''.join(o['data']['text/markdown']) for o in c.get('outputs', []) if 'text/markdown' in o.get('data', {})]
            for t in texts:
                for h in re.findall(r'^#{1,6}\s+(.+?)\s*$', t, re.M): heads.add(pandoc_id(h)); head_cell.setdefault(pandoc_id(h), i)
        where = {}                                 # cell index -> anchors to put before it
        for anchor, (name, cls, near) in defs[nb.name].items():
            if anchor in heads: continue
            pat = re.compile(rf'^(?:async\s+)?(?:def|class)\s+{re.escape(name)}\b', re.M)
            i = next((i for i, c in enumerate(d['cells']) if c['cell_type'] == 'code' and pat.search(''.join(c['source']))), None)
            if i is None: i = next((head_cell[x] for x in ((cls.lower(),) if cls else ()) + near if x in head_cell), None)
            if i is not None: where.setdefault(i, []).append(anchor)
        if not where: continue
        cells = []
        for i, c in enumerate(d['cells']):
            if i in where:
                spans = ''.join(f'<span id="{a}"></span>' for a in sorted(where[i]))
                cells.append(dict(cell_type='markdown', id=f'anchor{i:02d}'[:8], metadata={}, source=spans)); n += len(where[i])
            cells.append(c)
        d['cells'] = cells
        nb.write_text(json.dumps(d, indent=1, ensure_ascii=False), encoding='utf-8')
    return n

def _title(nb):
    "A notebook's title: its front matter's, else its first level-one heading."
    import yaml
    for c in nb['cells']:
        src = ''.join(c['source']) if isinstance(c['source'], list) else c['source']
        if c['cell_type'] == 'raw':
            m = re.match(r'\s*---\n(.*?)\n---', src, re.S)
            try: t = (yaml.safe_load(m.group(1)) or {}).get('title') if m else None
            except yaml.YAMLError: t = None
            if t: return str(t).strip()
        elif c['cell_type'] == 'markdown':
            m = re.search(r'^#\s+(.+)$', src, re.M)
            if m: return m.group(1).strip()
    return None

def name_pages(proc):
    """Give each page the name nbdev's links use (`03_models.ipynb` -> `models.html`), rewrite the links between
    pages and the sidebar to match, and number the chapters in the sidebar as their files are numbered."""
    import yaml
    names, titles = {}, {}
    for nb in sorted(proc.glob('*.ipynb')):
        new = page_name(nb.name) + '.ipynb'
        d = json.loads(nb.read_text(encoding='utf-8'))
        titles[new] = _title(d)
        for c in d['cells'][:1]:   # nbdev's front matter: smalldocs would warn about output-file
            if c['cell_type'] == 'raw':
                c['source'] = re.sub(r'^output-file:.*\n', '', ''.join(c['source']), flags=re.M)
        nb.write_text(json.dumps(d, indent=1, ensure_ascii=False), encoding='utf-8')
        if new != nb.name:
            if (proc/new).exists(): raise SystemExit(f'{nb.name} and another notebook both become {new}')
            nb.rename(proc/new)
        names[nb.name] = new
    link = re.compile(r'(?<![\w/.-])(' + '|'.join(re.escape(n) for n in names) + r')(?=[#)"\'\s]|$)')
    fix = lambda t: link.sub(lambda m: names[m.group(1)], t)
    for nb in proc.glob('*.ipynb'):
        d = json.loads(nb.read_text(encoding='utf-8'))
        for c in d['cells']:
            if c['cell_type'] == 'markdown': c['source'] = fix(''.join(c['source']))
            for o in c.get('outputs', []):
                md = o.get('data', {}).get('text/markdown')
                if md: o['data']['text/markdown'] = fix(''.join(md))
        nb.write_text(json.dumps(d, indent=1, ensure_ascii=False), encoding='utf-8')
    qy = proc/'_quarto.yml'
    cfg = yaml.safe_load(qy.read_text(encoding='utf-8'))
    number = {new: re.match(r'(\d+[a-z]?)_', old).group(1) for old, new in names.items() if re.match(r'\d+[a-z]?_', old)}
    def walk(items):
        out = []
        for it in items:
            if isinstance(it, str) and it in names:
                new = names[it]
                t = titles.get(new)
                if new in number and t and not t.startswith(number[new]): t = f'{number[new]} · {t}'
                out.append(dict(href=new, text=t) if new in number and t else new)
            elif isinstance(it, dict):
                it = dict(it)
                if isinstance(it.get('href'), str): it['href'] = names.get(it['href'], it['href'])
                if isinstance(it.get('contents'), list): it['contents'] = walk(it['contents'])
                out.append(it)
            else: out.append(it)
        return out
    web = cfg.get('website', {})
    listed = set(re.findall(r'[\w.-]+\.ipynb', qy.read_text(encoding='utf-8')))
    def add_missing(items):   # a chapter the sidebar does not list yet goes after the chapter before it
        for old in sorted(n for n in names if n not in listed and n in number_of):
            prev = max((n for n in listed if n in number_of and n < old), default=None)
            for it in items:
                if isinstance(it, dict) and isinstance(it.get('contents'), list) and prev in it['contents']:
                    it['contents'].insert(it['contents'].index(prev) + 1, old); listed.add(old); break
    number_of = {old for old in names if re.match(r'\d+[a-z]?_', old)}
    for key in ('sidebar', 'navbar'):
        bar = web.get(key)
        for b in (bar if isinstance(bar, list) else [bar] if isinstance(bar, dict) else []):
            for k in ('contents', 'left', 'right'):
                if isinstance(b.get(k), list):
                    if key == 'sidebar': add_missing(b[k])
                    b[k] = walk(b[k])
    qy.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding='utf-8')
    return names

def _plain_with_maths(tokens):
    r"smalldocs' plain text of a heading, with its maths kept between `\(` `\)` so that KaTeX renders it in the contents list."
    from smalldocs.markdown import plain
    out = []
    for t in tokens or []:
        if t.type == 'math_inline': out.append(f'\\({t.content}\\)')
        elif t.type in ('text', 'code_inline'): out.append(t.content)
        elif t.type in ('softbreak', 'hardbreak'): out.append(' ')
        elif t.type == 'image': out.append(_plain_with_maths(t.children))
    return ''.join(out)

def render(proc):
    """Quarto when it is installed; smalldocs (pure Python) otherwise. Returns the rendered folder. smalldocs drops the
    maths delimiters from a heading's text (its contents-list entry, its search entry); the build keeps them."""
    if shutil.which('quarto'):
        subprocess.run(['quarto', 'render', '--no-cache'], cwd=proc, check=True)
    else:
        import smalldocs.markdown, smalldocs.site
        smalldocs.markdown.plain = _plain_with_maths
        site = smalldocs.site.build(proc, quiet=True)
        for w in site.warnings:
            if 'html-math-method is ignored' not in w: log(f'  smalldocs: {w}')
    return proc/'_docs'

def finish_search(site):
    """Search entries as readable text (maths written out), and the index also as a script, `search.js`, which the
    shim in _quarto.yml loads where a browser refuses to fetch `search.json` (a page opened from disk)."""
    f = site/'search.json'
    if not f.exists(): return 0
    entries = json.loads(f.read_text(encoding='utf-8'))
    for e in entries:
        for k in ('title', 'section', 'text'):
            if isinstance(e.get(k), str): e[k] = untex(e[k])
    text = json.dumps(entries, ensure_ascii=False)
    f.write_text(text, encoding='utf-8')
    (site/'search.js').write_text('window.smalldocsSearchIndex = ' + text + ';\n', encoding='utf-8')
    return len(entries)

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
    p.add_argument('--no-check', action='store_true', help='skip the site check of an executed build '
                   '(tools/check_site.py, run on the new site before it replaces --out)')
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
    log('book: processing notebooks (nbdev)'); proc = process(nb_dir, a.jobs)
    log('book: rendering site'); site = render(proc)
    if not (site/'index.html').exists(): raise SystemExit(f'render produced no index.html in {site}')
    log(f'book: KaTeX vendored into {vendor_katex(site)} pages; {finish_search(site)} search entries')
    out = Path(a.out).resolve()
    if flags is not None and not a.no_check:   # an executed build: its pages, outputs included, pass the site check first
        log('book: checking every page (tools/check_site.py)')
        r = subprocess.run([sys.executable, str(ROOT/'tools'/'check_site.py'), '--site', str(site), '--jobs', '4'])
        if r.returncode: raise SystemExit(f'build stopped: the site check failed ({out} left as it was)')
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
