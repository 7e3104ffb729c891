"""Run the tests of chapters in one interpreter, one after another, so that torch and the package are imported once.

    python tools/test_worker.py nbs/01_elbo.ipynb nbs/02_schedules.ipynb ...   # these chapters, then exit
    python tools/test_worker.py -     # one request per line on stdin until it closes: a path, or JSON
                                      # {"path": ..., "flags": ["gpu", ...], "env": {"SMALLDIFFUSION_SMOKE": "1"}}

Prints one JSON line per chapter: {"name", "ok", "seconds", "detail"}. tools/run_tests.py keeps one such interpreter
per job and hands it the chapters one at a time. `flags` are the flagged cells to run too; `env` is added to the
environment for that chapter only. Between chapters the state a chapter may change globally is put back: torch's
default dtype, seed and thread count, matplotlib's settings and figures, the environment, the working directory and
`sys.path`."""
import contextlib, io, json, os, sys, time
from pathlib import Path

def requests(args):
    "(path, flags, extra environment) for each chapter asked for, from the arguments or, with `-`, from stdin."
    if args != ['-']:
        yield from ((a, [], {}) for a in args); return
    for line in sys.stdin:
        line = line.strip()
        if not line: continue
        r = json.loads(line) if line.startswith('{') else dict(path=line)
        yield r['path'], list(r.get('flags', [])), dict(r.get('env', {}))

def main(args):
    import matplotlib, matplotlib.pyplot as plt, torch
    from nbdev.config import get_config
    from nbdev.test import test_nb
    cfg = get_config()
    skip = cfg.tst_flags.split()
    env, cwd, path = dict(os.environ), os.getcwd(), list(sys.path)
    rc, dtype, threads = matplotlib.rcParams.copy(), torch.get_default_dtype(), torch.get_num_threads()
    for p, flags, extra in requests(args):
        p, err, t0 = Path(p), io.StringIO(), time.time()
        os.environ.update(extra)
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                ok, _ = test_nb(p.absolute(), skip_flags=skip, force_flags=flags, basepath=cfg.config_path)
        except BaseException as e:   # a chapter that calls sys.exit or raises past nbdev
            ok = False; err.write(f'{type(e).__name__}: {e}')
        finally:
            plt.close('all'); matplotlib.rcParams.update(rc)
            torch.set_default_dtype(dtype); torch.set_num_threads(threads); torch.manual_seed(0)
            os.environ.clear(); os.environ.update(env); os.chdir(cwd); sys.path[:] = path
        print(json.dumps(dict(name=p.name, ok=bool(ok), seconds=round(time.time() - t0, 1),
                              detail='' if ok else err.getvalue()[-6000:])), flush=True)

if __name__ == '__main__': main(sys.argv[1:])
