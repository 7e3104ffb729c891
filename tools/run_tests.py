"""The book's test command: every chapter's tests plus the project checks, ending in `N passed, M failed`.

    python tools/run_tests.py [--flags "gpu slow"] [--only 03_models.ipynb ...] [--budget SECONDS] [--jobs N]

Checks: the package equals what `nbdev_export` writes; notebooks are clean (`nbdev_clean` leaves no diff);
README.md is what nbs/index.ipynb gives; `from smalldiffusion import *` works in a fresh interpreter and
gives API.md's names without importing the optional extras; the site builds (rendered into a temporary
folder, docs/ untouched) and its pages read right in headless Chromium (tools/check_site.py: links, anchors,
raw TeX, KaTeX errors, search; the committed docs/, the one copy with outputs, passed the same check when
`make book` built it). The checks run before the chapters (beside them, on two cores, they
slowed the chapters more than they saved). Then every chapter runs under nbdev's test runner (`test_nb`), longest
first (by the last run's times, or tools/test_times.json on a fresh checkout), with a per-chapter timeout and an
overall budget (nbdev 2 has no per-cell timeout), `--jobs` of them at a time (default: one per CPU core; the
chapters' small models run single-threaded, and each job gets one core's share of threads). Each job keeps one
interpreter (tools/test_worker.py) and hands it its chapters one after another, so torch is imported once per job and
whichever job is free takes the next chapter. Chapters see SMALLDIFFUSION_TEST=1,
with which the image chapters train shorter runs than the book build does. Chapters holding flagged cells
(`#| gpu`, `#| slow`, `#| sd`) run once, with every flag switched on and SMALLDIFFUSION_SMOKE=1, with which those
cells run the same code at tiny sizes on a CPU; the run ends with `flagged cells: N run in smoke mode, M failed`
(a flagged cell of a chapter that failed counts as failed). `--flags` (a real run of flagged cells, e.g. on a GPU)
or `--no-smoke` turn smoke mode off. Exit status is non-zero on any failure. Per-chapter wall times are written to
_build/test_times.json (a run with `--only` updates the chapters it ran)."""
import argparse, contextlib, json, os, queue, shutil, signal, subprocess, sys, tempfile, threading, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from nbutil import ROOT, NBS, FLAGS, chapters, run_env, cell_flags

BIN = Path(sys.executable).parent
results = []   # (name, ok, seconds, detail)

def record(name, ok, secs, detail=''):
    results.append((name, ok, secs, detail))
    print(f"{'PASS' if ok else 'FAIL'}  {name:40s} {secs:7.1f} s  {detail}", flush=True)

def sh(cmd, timeout=600, env=None, **kw):
    return subprocess.run(cmd, cwd=ROOT, env=run_env(env), capture_output=True, text=True, timeout=timeout, **kw)

def git_changes(path):
    r = sh(['git', 'status', '--porcelain', '--untracked-files=all', '--', path])
    return r.stdout.strip()

def check(name, fn):
    t0 = time.time()
    try: ok, detail = fn()
    except Exception as e: ok, detail = False, f'{type(e).__name__}: {e}'
    record(name, ok, time.time()-t0, detail)

def chk_export():
    before = git_changes('smalldiffusion')
    r = sh([str(BIN/'nbdev_export')])
    if r.returncode: return False, r.stderr[-2000:]
    after = git_changes('smalldiffusion')
    if after != before: return False, 'package differs from `nbdev_export` output:\n' + after + '\n' + sh(['git', 'diff', '--stat', '--', 'smalldiffusion']).stdout
    return (not after), ('' if not after else 'package has uncommitted changes:\n' + after)

def chk_clean():
    before = git_changes('nbs')
    r = sh([str(BIN/'nbdev_clean')])
    if r.returncode: return False, r.stderr[-2000:]
    after = git_changes('nbs')
    return after == before and not after, ('' if after == before and not after else 'notebooks not clean:\n' + after)

def chk_readme():
    r = sh([sys.executable, 'tools/make_readme.py', '--check'])
    return r.returncode == 0, r.stdout.strip()

IMPORT_CHECK = '''
import sys
from smalldiffusion import *
import smalldiffusion
names = ("Schedule ScheduleLogLinear ScheduleDDPM ScheduleLDM ScheduleCosine ScheduleSigmoid ScheduleFlow "
         "ScheduleLogNormalFlow generate_train_sample training_loop samples Swissroll DatasaurusDozen MappedDataset "
         "img_train_transform img_normalize TreeDataset ModelMixin Scaled PredX0 PredV PredFlow TimeInputMLP "
         "IdealDenoiser get_sigma_embeds SigmaEmbedderSinCos CondEmbedderLabel ConditionalMLP TimestepEmbedder DiT Unet "
         "data diffusion model model_dit model_unet").split()
missing = [n for n in names if n not in globals()]
assert not missing, f"missing names: {missing}"
extras = [m for m in ("diffusers", "transformers", "matplotlib", "torch_ema") if m in sys.modules]
assert not extras, f"`import smalldiffusion` imported optional extras: {extras}"
'''
def chk_import():
    with tempfile.TemporaryDirectory() as d:   # run outside the checkout: the installed package must work
        r = subprocess.run([sys.executable, '-c', IMPORT_CHECK], cwd=d, env=run_env(), capture_output=True, text=True, timeout=300)
    return r.returncode == 0, (r.stderr.strip().splitlines() or [''])[-1]

SITE = None   # where the site is rendered once, for both site checks (a temporary folder, set by `main`)

def chk_site():
    r = sh([sys.executable, 'tools/build_book.py', '--no-exec', '--out', str(SITE)], timeout=900)
    ok = r.returncode == 0 and (SITE/'index.html').exists()
    return ok, '' if ok else (r.stdout[-1500:] + r.stderr[-3000:])

def chk_site_pages():   # tools/check_site.py reads every page of that render in headless Chromium
    if not (SITE/'index.html').exists(): return False, 'not run: the site did not build'
    r = sh([sys.executable, 'tools/check_site.py', '--site', str(SITE), '--jobs', '4'], timeout=1500)   # docs/ was checked when it was built
    return r.returncode == 0, '' if r.returncode == 0 else '\n' + (r.stdout[-4000:] + r.stderr[-1500:])

def flagged_cells(nb):
    "How many code cells of notebook `nb` carry one of the FLAGS."
    cells = json.loads(Path(nb).read_text())['cells']
    return sum(1 for c in cells if c['cell_type'] == 'code' and cell_flags(''.join(c['source'])) & set(FLAGS))

class Worker:
    "One tools/test_worker.py interpreter for one job: started when first needed, handed chapters one at a time."
    def __init__(self, env):
        self.env, self.proc, self.lines = env, None, None

    def start(self):
        self.err = tempfile.TemporaryFile(mode='w+')
        self.proc = subprocess.Popen([sys.executable, str(ROOT/'tools'/'test_worker.py'), '-'], cwd=ROOT, env=run_env(self.env),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True,
                                     start_new_session=True)   # its own process group: a timeout stops its children too
        self.lines = queue.Queue()
        threading.Thread(target=lambda out, q: [q.put(l) for l in out] + [q.put(None)],
                         args=(self.proc.stdout, self.lines), daemon=True).start()

    def stop(self):
        if self.proc is None: return
        with contextlib.suppress(ProcessLookupError): os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(); self.proc = None

    def run(self, nb, flags, env, timeout):
        "(ok, detail) of chapter `nb` with `flags` switched on and `env` added; the interpreter is replaced if it dies."
        if self.proc is None or self.proc.poll() is not None: self.start()
        self.err.seek(0); self.err.truncate()
        self.proc.stdin.write(json.dumps(dict(path=str(nb), flags=flags, env=env)) + '\n'); self.proc.stdin.flush()
        deadline = time.time() + timeout
        while True:
            try: line = self.lines.get(timeout=max(deadline - time.time(), 0.01))
            except queue.Empty:
                self.stop(); return False, f'timed out after {timeout} s'
            if line is None:   # the interpreter exited mid-chapter (a crash, or the chapter ended the process)
                rc = self.proc.wait(); self.err.seek(0); err = self.err.read()[-3000:]; self.proc = None
                return False, f'the test interpreter exited with status {rc}\n{err}'
            try: res = json.loads(line)
            except ValueError: continue   # a line printed straight to the pipe, e.g. by a chapter's subprocess
            if isinstance(res, dict) and res.get('name') == nb.name: return res['ok'], res['detail']

def chapter_env(jobs):
    "What every chapter's interpreter sees: the test switch and one core's share of threads per job."
    return dict(SMALLDIFFUSION_TEST='1', OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // max(jobs, 1))))

def main():
    p = argparse.ArgumentParser()
    p.add_argument('--flags', default='', help='flagged cells to run too, e.g. "gpu slow"')
    p.add_argument('--only', nargs='*', default=None, help='run only these chapters (and skip the project checks)')
    p.add_argument('--timeout', type=int, default=900, help='seconds allowed per chapter')
    p.add_argument('--budget', type=int, default=2700, help='seconds allowed for all chapters together')
    p.add_argument('--jobs', type=int, default=os.cpu_count() or 1, help='chapters run at the same time')
    p.add_argument('--no-smoke', action='store_true', help='skip flagged cells instead of running them in smoke mode')
    a = p.parse_args()
    smoke = not a.flags and not a.no_smoke
    smoke_runs = {}   # chapter name -> (flagged cells, passed)
    t_start = time.time()
    if a.only is None:
        global SITE
        SITE = Path(tempfile.mkdtemp(prefix='test-site-'))/'site'
        for name, fn in [('check: package == nbdev_export', chk_export), ('check: notebooks clean', chk_clean),
                         ('check: README from index.ipynb', chk_readme)]:
            check(name, fn)   # one after another: these rewrite the package and the notebooks when they differ
        with ThreadPoolExecutor(1) as beside:   # the import check, beside the site's build
            imported = beside.submit(check, 'check: import in fresh interpreter', chk_import)
            check('check: site builds', chk_site)
            imported.result()
        check('check: site pages (links, TeX, KaTeX, logs, search)', chk_site_pages)
        shutil.rmtree(SITE.parent, ignore_errors=True)
    t_nbs = time.time()
    todo = [nb for nb in chapters() if not a.only or nb.name in a.only]
    # scheduling hints: this checkout's last run, else the committed times of a whole run
    last, committed = ROOT/'_build'/'test_times.json', ROOT/'tools'/'test_times.json'
    prev = json.loads((last if last.exists() else committed).read_text())['times'] if last.exists() or committed.exists() else {}
    flagged = {nb.name: flagged_cells(nb) for nb in todo}
    workers, lane = [], threading.local()
    def run_one(nb):
        left = a.budget - (time.time() - t_nbs)
        if left <= 0: return record(nb.name, False, 0, f'not run: the {a.budget} s budget for chapters is used up')
        if not hasattr(lane, 'worker'): lane.worker = Worker(chapter_env(a.jobs)); workers.append(lane.worker)
        in_smoke = smoke and flagged[nb.name] > 0
        flags, env = (list(FLAGS), dict(SMALLDIFFUSION_SMOKE='1')) if in_smoke else (a.flags.split(), {})
        t0 = time.time()
        ok, detail = lane.worker.run(nb, flags, env, min(a.timeout, int(left)))
        if in_smoke: smoke_runs[nb.name] = (flagged[nb.name], ok)
        record(nb.name, ok, time.time() - t0, (f'(smoke mode: {flagged[nb.name]} flagged cells) ' if in_smoke else '')
               + ('\n' + detail if detail else ''))
    # the longest first (by the last run's times), so that the last ones to finish are short
    todo.sort(key=lambda nb: -prev.get(nb.name, 0))
    try:
        with ThreadPoolExecutor(max(a.jobs, 1)) as pool: list(pool.map(run_one, todo))
    finally:   # every chapter has reported: the interpreters (and anything they started) are stopped, not waited for
        for w in workers: w.stop()
    times = {n: round(s, 1) for n, _, s, _ in results}
    if a.only is not None and last.exists():   # a partial run updates the times it measured and keeps the others
        times = {**json.loads(last.read_text())['times'], **times}
    (ROOT/'_build').mkdir(exist_ok=True)
    npass = sum(ok for _, ok, _, _ in results); nfail = len(results) - npass
    (ROOT/'_build'/'test_times.json').write_text(json.dumps(dict(times=times, total=round(time.time()-t_start, 1),
        nproc=os.cpu_count(), last_line=f'{npass} passed, {nfail} failed', flags=a.flags), indent=1))
    slow = sorted(((s, n) for n, _, s, _ in results if n.endswith('.ipynb')), reverse=True)[:3]
    print(f"\nwall time {time.time()-t_start:.0f} s; slowest chapters: " + ', '.join(f'{n} {s:.0f} s' for s, n in slow))
    if smoke:
        n_run, n_failed = sum(n for n, _ in smoke_runs.values()), sum(n for n, ok in smoke_runs.values() if not ok)
        n_all = sum(flagged_cells(nb) for nb in chapters())
        print(f'flagged cells: {n_run} run in smoke mode, {n_failed} failed' + (f' ({n_all} in nbs/)' if n_run != n_all else ''))
    print(f'{npass} passed, {nfail} failed')
    sys.exit(1 if nfail else 0)

if __name__ == '__main__': main()
