"""Run the tests of several chapters in one interpreter, one after another, so that torch and the package are
imported once; prints one JSON line per chapter: {"name", "ok", "seconds", "detail"}.

    python tools/test_worker.py nbs/01_elbo.ipynb nbs/02_schedules.ipynb ...

Used by tools/run_tests.py for the short chapters without flagged cells. Between chapters the state a chapter may
change globally is put back: torch's default dtype, seed and thread count, matplotlib's settings and figures, the
environment, the working directory and `sys.path`."""
import contextlib, io, json, os, sys, time
from pathlib import Path

def main(paths):
    import matplotlib, matplotlib.pyplot as plt, torch
    from nbdev.config import get_config
    from nbdev.test import test_nb
    cfg = get_config()
    skip = cfg.tst_flags.split()
    env, cwd, path = dict(os.environ), os.getcwd(), list(sys.path)
    rc, dtype, threads = matplotlib.rcParams.copy(), torch.get_default_dtype(), torch.get_num_threads()
    for p in map(Path, paths):
        err, t0 = io.StringIO(), time.time()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                ok, _ = test_nb(p.absolute(), skip_flags=skip, force_flags=[], basepath=cfg.config_path)
        except BaseException as e:   # a chapter that calls sys.exit or raises past nbdev
            ok = False; err.write(f'{type(e).__name__}: {e}')
        finally:
            plt.close('all'); matplotlib.rcParams.update(rc)
            torch.set_default_dtype(dtype); torch.set_num_threads(threads); torch.manual_seed(0)
            os.environ.clear(); os.environ.update(env); os.chdir(cwd); sys.path[:] = path
        print(json.dumps(dict(name=p.name, ok=bool(ok), seconds=round(time.time() - t0, 1),
                              detail='' if ok else err.getvalue()[-6000:])), flush=True)

if __name__ == '__main__': main(sys.argv[1:])
