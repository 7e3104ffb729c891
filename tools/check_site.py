"""Check the rendered site as a reader's browser shows it: every page is opened from disk in headless Chromium
(Debian's `chromium`, one browser for all pages, driven over its DevTools protocol with websocket-client), its
scripts run (KaTeX among them), and what a script added to the page then collects (text, links, ids, layout) is checked for

  - broken local links: a file that is not there, or an `#anchor` that no element of the target page has;
  - links to the site's own host (settings.ini `doc_host`, and the GitHub Pages address of `user`) that name no page;
  - "source" links into this repository (`git_url`/blob/BRANCH/FILE#Lnn) whose file is missing or whose line is past its end;
  - raw TeX left in the text (`\\command`, `$...$`, `\\(...\\)` outside code and outside what KaTeX rendered), also in
    the contents list and in the search index;
  - KaTeX errors (`.katex-error`);
  - more than a few progress-bar or log lines in a page's outputs, or an error traceback in one;
  - code, display maths, tables or pictures cut off at the right edge of their box, or running past the text column;
  - a script error (uncaught) while the page loads;
  - search: the index page, opened from disk and served over HTTP, finds a word of the book.

    python tools/check_site.py                # render the site into a temporary folder (no execution) and check it
    python tools/check_site.py --site docs    # check a site that is already built, e.g. the committed docs/
    python tools/check_site.py --site DIR --only models.html   # some pages only (links into others still checked)
    python tools/check_site.py --docs         # the fresh render, and the committed docs/ (its outputs) too

Prints one line per failing page and reason, and exits 1 when anything fails (2 when Chromium is missing)."""
import argparse, configparser, contextlib, json, os, re, shutil, subprocess, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlsplit
sys.path.insert(0, str(Path(__file__).parent))
from nbutil import ROOT

MAX_PROGRESS = 3          # progress or log lines allowed per page
PROGRESS = re.compile(r'\d+%\|[^|]*\|'                      # tqdm bars
                      r'|\b\d+(?:\.\d+)?\s*(?:it/s|s/it)\b'   # their rates
                      r'|\|[█▉▊▋▌▍▎▏ ]{3,}\|'                 # a bar without its percentage
                      r'|^\s*(?:INFO|DEBUG|WARNING)[:\s]'     # log records
                      r'|/tmp/[\w./-]+', re.M)                # temporary paths of a build
DELIMS = re.compile(r'\\[()\[\]]|\$\$')
TEX = re.compile(r'\\(?:[A-Za-z]{2,}|[()\[\]{}_,;!])|\$[^$\s][^$\n]{0,80}\$|\^\{|_\{')

def chromium():
    for name in ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'):
        p = shutil.which(name)
        if p: return p
    return None

class Browser:
    "One headless Chromium for every page, driven over the DevTools protocol (websocket-client, a Jupyter dependency)."
    def __init__(self, exe):
        self.dir = tempfile.mkdtemp(prefix='check-site-chromium-')
        self.proc = subprocess.Popen([exe, '--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
                                      '--no-first-run', '--remote-debugging-port=0', f'--user-data-dir={self.dir}', 'about:blank'],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = Path(self.dir)/'DevToolsActivePort'   # Chromium writes the port it listens on here
        for _ in range(600):
            if port.exists() and port.read_text().strip(): break
            if self.proc.poll() is not None: raise RuntimeError(f'{exe} exited with status {self.proc.returncode}')
            time.sleep(0.05)
        else: raise RuntimeError(f'{exe} did not open its DevTools port within 30 s')
        self.port = int(port.read_text().split()[0])

    def close(self):
        self.proc.terminate()
        try: self.proc.wait(10)
        except subprocess.TimeoutExpired: self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def dom(self, url, ready='true', value='document.documentElement.outerHTML', timeout=30, errors=None):
        """The page's DOM once the JavaScript expression `ready` is true (or after `timeout` s) in a new tab; the
        page's uncaught script errors go into `errors`."""
        import urllib.request, websocket
        base = f'http://127.0.0.1:{self.port}/json'
        tab = json.load(urllib.request.urlopen(urllib.request.Request(base + '/new?about:blank', method='PUT'), timeout=30))
        ws = websocket.create_connection(tab['webSocketDebuggerUrl'], timeout=timeout, suppress_origin=True)
        ids = iter(range(1, 10**9))
        def call(method, **params):
            i = next(ids); ws.send(json.dumps(dict(id=i, method=method, params=params)))
            while True:
                m = json.loads(ws.recv())
                if m.get('method') == 'Runtime.exceptionThrown' and errors is not None:
                    d = m['params']['exceptionDetails']
                    errors.append('Uncaught ' + (d.get('exception', {}).get('description') or d.get('text', '')).split('\n')[0])
                if m.get('id') == i: return m.get('result', {})
        try:
            call('Runtime.enable'); call('Page.enable'); call('Page.navigate', url=url)
            t0, expr = time.time(), f'(document.readyState === "complete" && ({ready})) ? ({value}) : ""'
            while True:
                html = call('Runtime.evaluate', expression=expr, returnByValue=True).get('result', {}).get('value') or ''
                if html or time.time() - t0 > timeout: break
                time.sleep(0.1)
            if not html:
                html = call('Runtime.evaluate', expression=value, returnByValue=True)['result'].get('value', '')
            return html
        finally:
            ws.close()
            try: urllib.request.urlopen(f'{base}/close/{tab["id"]}', timeout=10).read()
            except OSError: pass

def settings():
    c = configparser.ConfigParser(); c.read(ROOT/'settings.ini')
    return c['DEFAULT']

def own_hosts(cfg):
    "The addresses the site itself is published at: doc_host when set, and GitHub Pages for `user`/`repo`."
    hosts = []
    if cfg.get('doc_host', '').strip(): hosts.append(cfg['doc_host'].strip().rstrip('/') + '/' + cfg.get('doc_baseurl', '/').strip('/'))
    user, repo = cfg.get('user', ''), cfg.get('repo', '')
    if user: hosts += [f'https://{user}.github.io/{repo}', f'https://{user}.github.io']
    return [h.rstrip('/') + '/' for h in hosts]

# Run in each page (in a copy of the site) once it has loaded: what is cut at the right edge of its box (code, display
# maths, tables, pictures whose overflow is hidden) or runs past the text column, written into the page for the check.
MEASURE = '''<script>window.addEventListener("load", () => setTimeout(() => {
  const main = document.querySelector("main") || document.body, edge = main.getBoundingClientRect().right + 40, out = [];
  main.querySelectorAll("pre, .katex-display, span.math.display, table, img, .cell-output-display").forEach((e) => {
    const st = getComputedStyle(e), r = e.getBoundingClientRect();
    if (!r.width) return;
    const hidden = /hidden|clip/.test(st.overflowX) && e.scrollWidth > e.clientWidth + 2;
    let scroller = false;   // inside a box that scrolls sideways, a wide element is reachable
    for (let a = e.parentElement; a && a !== main && !scroller; a = a.parentElement) scroller = /auto|scroll/.test(getComputedStyle(a).overflowX);
    const spills = st.overflowX === "visible" && r.right > edge && !scroller;
    if (hidden || spills) out.push((e.tagName.toLowerCase() + "." + (e.className || "").toString().split(" ")[0]) + " " +
      (hidden ? "cut" : "past the column") + ": " + (e.textContent || e.getAttribute("src") || "").trim().slice(0, 50));
  });
  // the text a reader sees as prose: without code, scripts, styles, outputs and the maths KaTeX rendered
  const skip = "script, style, pre, code, .katex, .katex-display, .katex-mathml, annotation, textarea, .sourceCode, " +
               ".cell-output, .smalldocs-search-results";
  const seen = (root) => { if (!root) return ""; const parts = [], w = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let n = w.nextNode(); n; n = w.nextNode()) if (!n.parentElement.closest(skip)) parts.push(n.nodeValue);
    return parts.join(" "); };
  const text = {prose: seen(document.querySelector("main") || document.body), toc: seen(document.getElementById("TOC")),
    side: seen(document.getElementById("quarto-sidebar")),
    katex_errors: [...document.querySelectorAll(".katex-error")].map((e) => (e.getAttribute("title") || e.textContent).slice(0, 80)),
    outputs: [...document.querySelectorAll(".cell-output pre, .cell-output-stderr, .cell-output-stdout")].map((e) => e.textContent)};
  const links = [];   // [tag, attribute, value as written], outside the search box's results
  for (const [tag, attr] of [["a", "href"], ["img", "src"], ["link", "href"], ["script", "src"], ["iframe", "src"]])
    document.querySelectorAll(tag + "[" + attr + "]").forEach((e) => {
      if (!e.closest(".smalldocs-search-results")) links.push([tag, attr, e.getAttribute(attr)]); });
  const ids = [...document.querySelectorAll("[id]")].map((e) => e.id).concat([...document.querySelectorAll("a[name]")].map((e) => e.name));
  window.sdCheck = JSON.stringify({overflow: out, text: text, links: links, ids: ids, title: document.title});
}, 300));</script>'''

class Checker:
    def __init__(self, site, browser, jobs=1, name='', lines=True):
        self.site, self.browser, self.jobs, self.name, self.lines = Path(site).resolve(), browser, jobs, name, lines
        self.cfg = settings(); self.hosts = own_hosts(self.cfg)
        self.git = self.cfg.get('git_url', '').rstrip('/') + f"/blob/{self.cfg.get('branch', 'main')}/"
        self.pages, self.ids, self.failures = {}, {}, []

    def fail(self, page, reason): self.failures.append((self.name + page, reason))

    def load(self, pages):
        "Open every page in Chromium; what the page's script collected (layout, text, links, ids) goes into `self.pages`."
        def one(p):
            probe = p.with_name('_probe_' + p.name)   # a copy of the page with the measuring script, beside it
            probe.write_text(p.read_text(encoding='utf-8').replace('</body>', MEASURE + '</body>'), encoding='utf-8')
            errs = []
            try: found = self.browser.dom(probe.as_uri(), ready='window.sdCheck', value='window.sdCheck || ""', errors=errs)
            finally: probe.unlink(missing_ok=True)
            if errs: self.fail(p.relative_to(self.site).as_posix(), f'{len(errs)} script error(s): ' + '; '.join(errs[:3]))
            return p, json.loads(found) if found else None
        with ThreadPoolExecutor(self.jobs) as pool:
            for p, found in pool.map(one, pages):
                rel = p.relative_to(self.site).as_posix()
                if found is None: self.fail(rel, 'the page did not finish loading in Chromium (its checking script did not run)'); continue
                if found['overflow']:
                    self.fail(rel, f"{len(found['overflow'])} block(s) cut off or past the column: " + '; '.join(found['overflow'][:3]))
                self.pages[rel] = found
                self.ids[rel] = set(found['ids'])

    def ids_of(self, rel):
        if rel not in self.ids and (self.site/rel).suffix == '.html' and (self.site/rel).exists():
            from bs4 import BeautifulSoup
            s = BeautifulSoup((self.site/rel).read_text(encoding='utf-8'), 'html.parser')
            self.ids[rel] = {t.get('id') for t in s.find_all(id=True)}
        return self.ids.get(rel, set())

    def check_target(self, page, rel, frag, href):
        f = self.site/rel
        if not f.exists(): self.fail(page, f'broken link {href} (no file {rel})'); return
        if frag and f.suffix == '.html' and unquote(frag) not in self.ids_of(rel):
            self.fail(page, f'broken anchor {href} (no id "{unquote(frag)}" in {rel})')

    def check_links(self, page, found):
        base = (self.site/page).parent
        for tag, attr, href in found['links']:
            if not href or href.startswith(('mailto:', 'javascript:', 'data:')): continue
            u = urlsplit(href)
            if u.scheme in ('http', 'https'):
                own = next((h for h in self.hosts if href.startswith(h)), None)
                if own:
                    rest = urlsplit(href[len(own):])
                    path = unquote(rest.path) or 'index.html'
                    if path.endswith('/'): path += 'index.html'
                    self.check_target(page, path, rest.fragment, href)
                elif self.git != '/blob/main/' and href.startswith(self.git):
                    self.check_source(page, href)
                continue
            if u.scheme == 'file' or u.scheme: continue
            if not u.path:                                    # an anchor on this page
                if u.fragment and unquote(u.fragment) not in self.ids[page]:
                    self.fail(page, f'broken anchor {href}')
                continue
            target = (base/unquote(u.path)).resolve()
            try: rel = target.relative_to(self.site).as_posix()
            except ValueError: self.fail(page, f'link {href} leaves the site'); continue
            if target.is_dir(): rel = (Path(rel)/'index.html').as_posix()
            self.check_target(page, rel, u.fragment, href)

    def check_source(self, page, href):
        u = urlsplit(href)
        rel = unquote(u.path.split(f"/blob/{self.cfg.get('branch', 'main')}/", 1)[1])
        f = ROOT/rel
        if not f.is_file(): self.fail(page, f'source link {href}: no file {rel} in the repository'); return
        m = re.fullmatch(r'L(\d+)', u.fragment or '')
        if u.fragment and not m: self.fail(page, f'source link {href}: "#{u.fragment}" is no line number')
        if m:
            lines = f.read_text(encoding='utf-8').splitlines()
            n = int(m.group(1))
            if not 1 <= n <= len(lines): self.fail(page, f'source link {href}: {rel} has {len(lines)} lines')
            elif self.lines and not re.match(r'\s*(@|def |class |async def |\w+\s*=)', lines[n-1]):
                self.fail(page, f'source link {href}: line {n} of {rel} starts no definition ({lines[n-1].strip()[:60]!r})')

    def check_text(self, page, found_on_page):
        "Raw TeX, KaTeX errors and progress spam, in what the page's script collected once the page had loaded."
        text = found_on_page['text']
        found = [m.group(0) for part in ('prose', 'toc', 'side') for m in TEX.finditer(text.get(part, ''))]
        found += [m.group(0) for m in TEX.finditer(found_on_page['title'])]
        if found:
            ctx = sorted(set(found))[:6]
            self.fail(page, f'raw TeX in the text, {len(found)} place(s): ' + ', '.join(repr(x) for x in ctx))
        errs = text.get('katex_errors', [])
        if errs: self.fail(page, f'{len(errs)} KaTeX error(s): ' + '; '.join(errs[:3]))
        progress = []
        for out in text.get('outputs', []):
            for line in out.splitlines():
                if PROGRESS.search(line): progress.append(line.strip())
        progress = list(dict.fromkeys(progress))
        tracebacks = sum('Traceback (most recent call last)' in out for out in text.get('outputs', []))
        if tracebacks: self.fail(page, f'{tracebacks} output(s) show an error traceback')
        if len(progress) > MAX_PROGRESS:
            self.fail(page, f'{len(progress)} progress/log lines in outputs (at most {MAX_PROGRESS}), e.g. {progress[0][:70]!r}')

    def check_search(self):
        f = self.site/'search.json'
        if not f.exists(): self.fail('search.json', 'no search index'); return
        entries = json.loads(f.read_text(encoding='utf-8'))
        # an entry's text holds its section's code too, where backslashes are Python: there only maths delimiters count
        bad = [e for e in entries if TEX.search(' '.join(str(e.get(k, '')) for k in ('title', 'section')))
               or DELIMS.search(str(e.get('text', '')))]
        if bad: self.fail('search.json', f'{len(bad)} of {len(entries)} search entries carry raw TeX, e.g. {bad[0]["href"]}')
        for e in entries:
            rel, _, frag = e['href'].partition('#')
            if not (self.site/rel).exists() or (frag and frag not in self.ids_of(rel)):
                self.fail('search.json', f'search entry {e["href"]} points to no page or anchor'); break

    def check_search_works(self):
        "Type a word into the search box of the index page, opened from disk and served over HTTP, and count the results."
        index = self.site/'index.html'
        if not index.exists(): return
        words = [w for e in json.loads((self.site/'search.json').read_text(encoding='utf-8'))[:40]
                 for w in re.findall(r'[A-Za-z]{7,}', e.get('text', ''))][:1] or ['diffusion']
        probe = ('<script>window.addEventListener("load", () => setTimeout(() => {'
                 'const i = document.querySelector(".smalldocs-search input");'
                 'if (!i) { document.title = "SEARCH:nobox"; return; }'
                 f'i.value = {json.dumps(words[0])}; i.dispatchEvent(new Event("input"));'
                 'setTimeout(() => { document.title = "SEARCH:" + document.querySelectorAll(".search-result").length; }, 1500);'
                 '}, 200));</script>')
        tmp = self.site/'_search_probe.html'
        import functools, http.server, threading
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *a): pass
        handler = functools.partial(Quiet, directory=str(self.site))
        server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            tmp.write_text(index.read_text(encoding='utf-8').replace('</body>', probe + '</body>'), encoding='utf-8')
            for how, url in (('from disk', tmp.as_uri()), ('over HTTP', f'http://127.0.0.1:{server.server_port}/{tmp.name}')):
                html = self.browser.dom(url, ready='document.title.startsWith("SEARCH:")', timeout=20)
                m = re.search(r'<title>SEARCH:(\w+)</title>', html)
                if not m or not m.group(1).isdigit() or int(m.group(1)) == 0:
                    self.fail('index.html', f'search {how} found nothing for {words[0]!r} ({m.group(1) if m else "probe did not run"})')
        finally:
            tmp.unlink(missing_ok=True); server.shutdown()

    def run(self, only=None):
        pages = sorted(p for p in self.site.rglob('*.html') if 'site_libs' not in p.parts and not p.name.startswith('_')
                       and (not only or p.name in only or p.stem in only))
        if not pages: self.fail('(site)', f'no pages in {self.site}'); return pages
        self.load(pages)
        for page, found in self.pages.items():
            self.check_links(page, found); self.check_text(page, found)
        if not only: self.check_search(); self.check_search_works()
        return pages

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--site', help='a built site to check (default: render one with tools/build_book.py --no-exec)')
    p.add_argument('--jobs', type=int, default=2, help='pages loaded at the same time')
    p.add_argument('--only', nargs='*', help='check only these pages (e.g. models.html), and not the search')
    p.add_argument('--docs', action='store_true', help='also check the committed build in docs/, the only one with '
                   "outputs (progress spam); its source links' lines are checked against the file's length only, since "
                   'they move with every edit of a module until docs/ is rebuilt')
    a = p.parse_args()
    browser = chromium()
    if not browser:
        print('check_site: FAIL: no Chromium found (looked for chromium, chromium-browser, google-chrome). '
              'Install it with `make chromium` (Debian: apt-get install chromium).')
        sys.exit(2)
    t0 = time.time()
    browser = Browser(browser)
    with tempfile.TemporaryDirectory(prefix='check-site-') as tmp, contextlib.closing(browser):
        site = Path(tmp)/'site'   # the check writes probe pages beside the pages: into a copy, never into docs/
        if a.site: shutil.copytree(a.site, site)
        else:
            r = subprocess.run([sys.executable, str(ROOT/'tools'/'build_book.py'), '--no-exec', '--out', str(site)],
                               capture_output=True, text=True)
            if r.returncode:
                print('check_site: FAIL: the site does not build:\n' + r.stdout[-1500:] + r.stderr[-3000:]); sys.exit(1)
        c = Checker(site, browser, a.jobs)
        pages = c.run(a.only)
        if a.docs and (ROOT/'docs'/'index.html').exists():
            shutil.copytree(ROOT/'docs', Path(tmp)/'docs')
            d = Checker(Path(tmp)/'docs', browser, a.jobs, name='docs/', lines=False)
            pages += d.run(a.only); c.failures += d.failures
    for page, reason in c.failures: print(f'FAIL  {page}: {reason}')
    bad = sorted({pg for pg, _ in c.failures})
    print(f'check_site: {len(pages)} pages, {len(c.failures)} problem(s) on {len(bad)} page(s) in {time.time()-t0:.0f} s'
          + (f': {", ".join(bad)}' if bad else ''))
    sys.exit(1 if c.failures else 0)

if __name__ == '__main__': main()
