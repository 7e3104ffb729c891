"""The benchmark suite: the library side by side with its peers, in one run, on this machine.

    python tools/bench.py                 # every workload, 5 repeats, writes bench/results.json and bench/results.md
    python tools/bench.py --tiny          # a tiny version of every workload (seconds): checks that the code runs
    python tools/bench.py --only toy_train arch --repeats 3
    python tools/bench.py --only toy_time_to_quality   # quality against CPU seconds, merged into bench/results.json
    python tools/bench.py --only image_time_to_quality # the same for the FashionMNIST U-Net's quick model (~10 min)
    python tools/bench.py --book          # also time the default test command, per chapter (about 10 minutes)

Peers: smalldiffusion 0.5.0 (installed by `make setup` into .bench/upstream with --no-deps and run in its own
process with only that folder on the path, so the two packages of the same name never meet), diffusers where
it does the same job, and plain hand-written PyTorch as the floor. Each measurement runs in a fresh process;
the implementations of a workload are interleaved within each repeat, so a noisy neighbour slows all of them
alike. Reported: the ratio of medians (ours / peer; lower is better), then min / median / max seconds.
"""
import argparse, json, os, platform, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM = ROOT/'.bench'/'upstream'

# ---------------------------------------------------------------- workloads (run inside a worker process)
def _swissroll_setup(n):
    import numpy as np, torch
    from smalldiffusion import Swissroll, TimeInputMLP, ScheduleLogLinear
    torch.manual_seed(0)
    return (Swissroll(np.pi/2, 5*np.pi, n), TimeInputMLP(hidden_dims=(16, 128, 128, 128, 128, 16)),
            ScheduleLogLinear(N=200, sigma_min=0.005, sigma_max=10))

def w_toy_train(impl, size):
    "training_loop on Swissroll with TimeInputMLP, `steps` steps of one 100-point batch."
    import torch
    from torch.utils.data import DataLoader
    _toy_run(impl, 5)                                  # warm-up: first-iteration costs are not what we measure
    t0 = time.perf_counter()
    _toy_run(impl, size['steps'])
    return dict(seconds=time.perf_counter() - t0)

def _toy_run(impl, steps):
    import torch
    from torch.utils.data import DataLoader
    data, model, schedule = _swissroll_setup(100)
    loader = DataLoader(data, batch_size=2048)
    if impl == 'plain':   # the same maths by hand: σ from the table, ε, MSE on ε, AdamW
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for _ in range(steps):
            for x0 in loader:
                model.train(); opt.zero_grad()
                sigma = schedule.sigmas[torch.randint(len(schedule.sigmas), (x0.shape[0],))].to(x0)[:, None]
                eps = torch.randn_like(x0)
                loss = torch.nn.functional.mse_loss(model(x0 + sigma*eps, sigma), eps)
                loss.backward(); opt.step()
    else:
        from smalldiffusion import training_loop
        from accelerate import Accelerator
        for ns in training_loop(loader, model, schedule, epochs=steps, accelerator=Accelerator(cpu=True)): pass

def w_sample_ideal(impl, size):
    "samples with IdealDenoiser on an n-point Swissroll: 20 steps, batch b, γ=2."
    import numpy as np, torch
    from smalldiffusion import Swissroll, IdealDenoiser, ScheduleLogLinear, samples
    from accelerate import Accelerator
    model = IdealDenoiser(Swissroll(np.pi/2, 5*np.pi, size['n']))
    sigmas = ScheduleLogLinear(N=200, sigma_min=0.005, sigma_max=10).sample_sigmas(20)
    acc = Accelerator(cpu=True)
    torch.manual_seed(0)
    *_, x0 = samples(model, sigmas[-3:], gam=2, batchsize=size['batch'], accelerator=acc)   # warm-up
    t0 = time.perf_counter()
    *_, x0 = samples(model, sigmas, gam=2, batchsize=size['batch'], accelerator=acc)
    return dict(seconds=time.perf_counter() - t0)

def _small_dit(size):
    import torch
    from smalldiffusion import DiT
    torch.manual_seed(0)
    m = DiT(in_dim=size['in_dim'], channels=1, patch_size=2, depth=size['depth'], head_dim=32, num_heads=6).eval()
    for p in m.final_linear.parameters(): torch.nn.init.normal_(p, std=0.02)   # not the all-zero output of init
    return m

def w_sample_dit(impl, size):
    "20 sampling steps of a DiT at batch 64: `samples` (ours/upstream), bare model calls, diffusers' DDIM loop."
    import torch
    from smalldiffusion import ScheduleDDPM, samples
    from accelerate import Accelerator
    model, steps, B = _small_dit(size), size['steps'], size['batch']
    schedule = ScheduleDDPM()
    sigmas = schedule.sample_sigmas(steps)
    torch.manual_seed(0)
    x = torch.randn((B,) + model.input_dims) * sigmas[0]
    with torch.no_grad(): model(x, sigmas[0])   # warm-up
    t0 = time.perf_counter()
    if impl == 'bare':
        with torch.no_grad():
            for s in sigmas[:-1]: model(x, s)
    elif impl == 'diffusers':
        from diffusers import DDIMScheduler
        sch = DDIMScheduler(num_train_timesteps=1000, beta_schedule='linear', timestep_spacing='trailing',
                            clip_sample=False, set_alpha_to_one=False)
        sch.set_timesteps(steps)
        abar = sch.alphas_cumprod
        z = x * abar[sch.timesteps[0]].sqrt()
        with torch.no_grad():
            for t in sch.timesteps:
                a = abar[t]
                eps = model(z / a.sqrt(), ((1 - a)/a).sqrt())
                z = sch.step(eps, t, z).prev_sample
    else:
        *_, x0 = samples(model, sigmas, xt=x, accelerator=Accelerator(cpu=True))
    return dict(seconds=time.perf_counter() - t0)

def _rss_mb():
    with open('/proc/self/statm') as f: return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20

def w_ideal_scale(impl, size):
    "One IdealDenoiser call: data n × 784, batch b. Peak extra resident memory during the call, and time."
    import resource, torch
    from smalldiffusion import IdealDenoiser
    torch.manual_seed(0)
    data = torch.rand(size['n'], 784)
    model = IdealDenoiser(data)
    x = torch.randn(size['batch'], 784)
    model(x[:2], torch.tensor(1.0))                    # warm-up (and allocator set-up) on a tiny batch
    base = _rss_mb()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    out = model(x, torch.tensor(1.0))
    secs = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(seconds=secs, peak_extra_mb=max(peak, peak_before) - base, finite=bool(torch.isfinite(out).all()))

def w_arch(impl, size):
    "Forward+backward throughput (images/s) at batch 64 for the FashionMNIST DiT / U-Net configs."
    import torch
    torch.manual_seed(0)
    kind, B = size['kind'], size['batch']
    if impl == 'diffusers':
        from diffusers import UNet2DModel
        model = UNet2DModel(sample_size=size['in_dim'], in_channels=1, out_channels=1, **size['diffusers_kw'])
        fwd = lambda x, s: model(x, s.expand(x.shape[0]) * 1000).sample
    else:
        from smalldiffusion import DiT, Unet, Scaled
        if kind == 'dit': model = DiT(in_dim=size['in_dim'], channels=1, patch_size=2, depth=size['depth'], head_dim=32, num_heads=6)
        else: model = Scaled(Unet)(size['in_dim'], 1, 1, ch=size['ch'], ch_mult=(1, 1, 2), attn_resolutions=(size['in_dim']//2,))
        fwd = lambda x, s: model(x, s)
    model.train()
    params = sum(p.numel() for p in model.parameters())
    x, s = torch.randn(B, 1, size['in_dim'], size['in_dim']), torch.rand(B, 1, 1, 1) + 0.1
    def step():
        model.zero_grad(); fwd(x, s if impl != 'diffusers' else s.flatten()[:1]).square().mean().backward()
    step()                                               # warm-up
    t0 = time.perf_counter()
    for _ in range(size['iters']): step()
    secs = time.perf_counter() - t0
    return dict(seconds=secs, images_per_s=B * size['iters'] / secs, params=params)

def w_toy_time_to_quality(impl, size):
    """Chapter 8's model and data, single-threaded, trained with the book's recipe ('book': batches of 500 drawn with
    replacement, one-cycle LR peaking at 1e-2) or smalldiffusion 0.5's settings ('v05_settings': the example's
    full-batch DataLoader, `training_loop` defaults, AdamW at 1e-3). Returns chapter 8's quality d against CPU seconds
    (`time.process_time`), measured every few steps with the evaluation excluded from the clock."""
    import math, numpy as np, torch
    from torch.utils.data import DataLoader, RandomSampler
    from torch.optim.lr_scheduler import OneCycleLR
    from accelerate import Accelerator
    from smalldiffusion import Swissroll, TimeInputMLP, ScheduleLogLinear, IdealDenoiser, training_loop, samples
    torch.set_num_threads(1)
    dataset = Swissroll(np.pi/2, 5*np.pi, 100)
    curve = Swissroll(np.pi/2, 5*np.pi, size['curve']).vals
    schedule = ScheduleLogLinear(N=200, sigma_min=0.005, sigma_max=10)
    acc = Accelerator(cpu=True)
    def nn_dist(x, ref): return torch.cdist(x, ref).min(1).values.mean().item()
    def d(x): return (nn_dist(x, curve) + nn_dist(curve, x)) / 2          # mean of precision and coverage
    def quality(model):                                                     # leaves the training RNG stream alone
        rng = torch.get_rng_state(); torch.manual_seed(0)
        *_, x = samples(model, schedule.sample_sigmas(20), gam=2, batchsize=size['n'], accelerator=acc)
        torch.set_rng_state(rng)
        return d(x)
    torch.manual_seed(0)
    model = TimeInputMLP(hidden_dims=(16, 128, 128, 128, 128, 16))
    if impl == 'book':
        steps, lr, bs = size['book_steps'], 1e-2, 500
        loader = DataLoader(dataset, batch_size=bs, sampler=RandomSampler(dataset, replacement=True, num_samples=bs))
    else:
        steps, lr = size['v05_steps'], 1e-3
        loader = DataLoader(dataset, batch_size=2048)
    every = max(1, steps // size['evals'])
    points, cpu, lr_sched = [], 0.0, None
    t0 = time.process_time()
    for k, ns in enumerate(training_loop(loader, model, schedule, epochs=steps, lr=lr, accelerator=acc)):
        if impl == 'book':
            if lr_sched is None: lr_sched = OneCycleLR(ns.optimizer, max_lr=lr, total_steps=steps)
            else: lr_sched.step()
        if k % every == 0:                   # k updates done so far
            cpu += time.process_time() - t0
            points.append([cpu, k, quality(model)])
            t0 = time.process_time()
    cpu += time.process_time() - t0          # the last update ran when the loop resumed the generator
    points.append([cpu, steps, quality(model)])
    out = dict(seconds=cpu, points=points, steps=steps)
    if impl == 'book':                       # the controls, measured the same way
        g = torch.Generator().manual_seed(0)
        r = dataset.vals.norm(dim=1).max() * torch.rand(size['n'], generator=g).sqrt()
        th = 2 * math.pi * torch.rand(size['n'], generator=g)
        ideal = IdealDenoiser(dataset)
        out['controls'] = {'uniform disc': d(torch.stack([r * th.cos(), r * th.sin()], 1)), 'ideal denoiser': quality(ideal)}
    return out

def w_image_time_to_quality(impl, size):
    """The FashionMNIST U-Net chapter's quick model (`Scaled(PredV(Unet))` at 14×14) on real FashionMNIST, single-threaded,
    trained with the quick preset's recipe ('book': AdamW, one-cycle LR peaking at the preset's lr, EMA of the weights,
    samples drawn with the EMA weights) or smalldiffusion 0.5's `training_loop` defaults ('v05_settings': AdamW at a
    constant 1e-3, no EMA). One unrolled loop serves both (the steps of `training_loop`: train mode, zero_grad,
    `generate_train_sample`, the model's `get_loss`, backward, AdamW step), on the same initial weights, the same
    seeded shuffle of the training images and the same noise. Returns the Fréchet distance of samples to held-out
    images, in the features of a classifier trained in this process, against CPU seconds (`time.process_time`),
    measured every few steps with the evaluation excluded from the clock."""
    import torch
    from torch_ema import ExponentialMovingAverage
    from smalldiffusion.diffusion import generate_train_sample
    from smalldiffusion.recipes.fashion_mnist_unet import RECIPE
    from smalldiffusion.recipes.common import (fashion_mnist_images, fetch_fashion_mnist, draw_samples, train_classifier,
                                               feature_stats, frechet_distance, gaussian_images)
    torch.set_num_threads(1)
    p = RECIPE.presets['quick']
    root = ROOT/'datasets'
    if not (root/'FashionMNIST'/'raw'/'train-images-idx3-ubyte').exists(): fetch_fashion_mnist(root)
    px = p.image_size or 28
    x, y = fashion_mnist_images(root, train=True, size=px)
    held, _ = fashion_mnist_images(root, train=False, size=px)
    if size.get('n_train'): x, y = x[:size['n_train']], y[:size['n_train']]
    n, bs, steps = size['n'], size['batch'], size['steps']
    perm = torch.randperm(len(held), generator=torch.Generator().manual_seed(0))
    real, other = held[perm[:n]], held[perm[n:2 * n]]
    clf, clf_acc = train_classifier(x, y, epochs=size['clf_epochs'], held_out=0.1, seed=0)
    ref = feature_stats(clf, real)
    fd = lambda imgs: frechet_distance(*feature_stats(clf, imgs), *ref)
    def quality(model, ema=None):              # leaves the training RNG stream alone
        rng = torch.get_rng_state()
        imgs = draw_samples(model, p.schedule, size['sample_steps'], 2., n, ema=ema, seed=0).clamp(-1, 1)
        torch.set_rng_state(rng)
        return fd(imgs)
    torch.manual_seed(0)
    model = p.model()
    get_loss = type(model).get_loss
    if impl == 'book':
        opt = torch.optim.AdamW(model.parameters(), lr=p.lr)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=p.lr, total_steps=steps)
        ema = ExponentialMovingAverage(model.parameters(), decay=p.ema_decay)
    else:
        opt, sched, ema = torch.optim.AdamW(model.parameters(), lr=1e-3), None, None
    g = torch.Generator().manual_seed(1)      # the shuffle of the training images, the same for both recipes
    batches = iter(())
    every = max(1, steps // size['evals'])
    points, cpu = [], 0.0
    t0 = time.process_time()
    for k in range(steps + 1):                # k updates done so far
        if k % every == 0 or k == steps:
            cpu += time.process_time() - t0
            points.append([cpu, k, quality(model, ema)])
            t0 = time.process_time()
        if k == steps: break
        idx = next(batches, None)
        if idx is None:
            batches = iter(torch.randperm(len(x), generator=g).split(bs)); idx = next(batches)
        model.train(); opt.zero_grad()
        x0, sigma, eps, _ = generate_train_sample(x[idx], p.schedule)
        get_loss(model, x0, sigma, eps).backward()
        opt.step()
        if sched is not None: sched.step()
        if ema is not None: ema.update()
    out = dict(seconds=cpu, points=points, steps=steps, classifier_accuracy=clf_acc, image_size=px, lr=p.lr,
               ema_decay=p.ema_decay, params=sum(q.numel() for q in model.parameters()))
    if impl == 'book':                        # the controls, measured the same way
        torch.manual_seed(0)
        out['controls'] = {'real held-out images (floor)': fd(other),
                           'Gaussian fitted to the training pixels': fd(gaussian_images(x, n)),
                           'untrained model': quality(p.model())}
    return out

WORKLOADS = dict(toy_train=w_toy_train, sample_ideal=w_sample_ideal, sample_dit=w_sample_dit,
                 ideal_scale=w_ideal_scale, arch=w_arch)
# Time-to-quality workloads: one run per recipe, a quality curve against CPU seconds, stored under
# results['time_to_quality'][name] = {'measure', 'curves': {impl: [[cpu_s, quality], ...]}, 'ratio', ...}.
TIME_TO_QUALITY = dict(toy_time_to_quality=w_toy_time_to_quality, image_time_to_quality=w_image_time_to_quality)
ALL_WORKLOADS = {**WORKLOADS, **TIME_TO_QUALITY}

# ---------------------------------------------------------------- the plan: which implementations, at which sizes
def plan(tiny):
    P = []
    add = lambda wl, label, impls, size, ours='ours': P.append(dict(workload=wl, label=label, impls=impls, size=size, ours=ours))
    add('toy_train', 'toy training (steps)', ['ours', 'upstream', 'plain'], dict(steps=20 if tiny else 2000))
    add('sample_ideal', 'sampling, IdealDenoiser', ['ours', 'upstream'], dict(n=300 if tiny else 10_000, batch=50 if tiny else 1000))
    add('sample_dit', 'sampling, DiT', ['ours', 'upstream', 'bare', 'diffusers'],
        dict(in_dim=8 if tiny else 28, depth=1 if tiny else 6, batch=4 if tiny else 64, steps=3 if tiny else 20))
    for b in ([16] if tiny else [256, 1024, 4096]):
        add('ideal_scale', f'ideal denoiser at scale, batch {b}', ['ours', 'upstream'], dict(n=2000 if tiny else 60_000, batch=b))
    add('arch', 'DiT fwd+bwd', ['ours', 'upstream'], dict(kind='dit', in_dim=8 if tiny else 28, depth=1 if tiny else 6, batch=4 if tiny else 64, iters=2 if tiny else 5))
    add('arch', 'U-Net fwd+bwd', ['ours', 'upstream', 'diffusers'],
        dict(kind='unet', in_dim=8 if tiny else 28, ch=32 if tiny else 64, batch=4 if tiny else 64, iters=2 if tiny else 5,
             diffusers_kw=dict(block_out_channels=(32, 64) if tiny else (64, 64, 128), layers_per_block=1 if tiny else 2,
                               down_block_types=('DownBlock2D',)*(2 if tiny else 3),
                               up_block_types=('UpBlock2D',)*(2 if tiny else 3), norm_num_groups=32)))
    return P

# ---------------------------------------------------------------- the driver
def run_worker(workload, impl, size, timeout):
    return run_workers([(workload, size)], impl, timeout)[0]

def run_workers(items, impl, timeout):
    "Measure each (workload, size) of `items` with implementation `impl`, all in one fresh process."
    return run_jobs([(wl, impl, size) for wl, size in items], impl == 'upstream', timeout)

def run_jobs(jobs, upstream, timeout, threads=None):
    """Run each (workload, impl, size) of `jobs` in one fresh process that imports smalldiffusion 0.5.0 (`upstream`) or
    ours, with `threads` torch threads (default: one per core)."""
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env.update(HF_HUB_OFFLINE='1', TQDM_DISABLE='1', ACCELERATE_DISABLE_RICH='1', OMP_NUM_THREADS=str(threads or os.cpu_count()))
    if upstream:
        if not (UPSTREAM/'smalldiffusion').exists():
            raise SystemExit(f'smalldiffusion 0.5.0 is not installed in {UPSTREAM}: run `make setup`')
        env['PYTHONPATH'] = str(UPSTREAM)
    code = (f"import sys, json; sys.path.insert(0, {str(ROOT/'tools')!r}); import bench, smalldiffusion\n"
            f"for wl, impl, size in {jobs!r}:\n"
            f"    r = bench.ALL_WORKLOADS[wl](impl, size); r['package'] = smalldiffusion.__file__\n"
            "    print('RESULT' + json.dumps(r), flush=True)")
    with tempfile.TemporaryDirectory() as d:   # outside the checkout, so only PYTHONPATH / the install decides
        r = subprocess.run([sys.executable, '-c', code], cwd=d, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode: raise RuntimeError(f'{[(w, i) for w, i, _ in jobs]} failed:\n{r.stderr[-3000:]}')
    res = [json.loads(l[6:]) for l in r.stdout.splitlines() if l.startswith('RESULT')]
    for x in res: assert (str(UPSTREAM) in x.pop('package')) == upstream, 'wrong package imported'
    return res

TTQ_NAMES = {'book': 'book recipe', 'v05_settings': 'smalldiffusion 0.5 settings'}

def _ratio_entry(runs, size):
    "Curves, target, time to target and ratio from the two runs of a time-to-quality workload."
    curves = {TTQ_NAMES[i]: [[p[0], p[2]] for p in r['points']] for i, r in runs.items()}
    ours, ref = TTQ_NAMES['book'], TTQ_NAMES['v05_settings']
    target = max(curves[ours][-1][1], curves[ref][-1][1])   # a quality both runs reach by their end
    first = lambda c: next(t for t, q in c if q <= target)
    t_ours, t_ref = first(curves[ours]), first(curves[ref])
    return dict(curves=curves, steps={TTQ_NAMES[i]: [p[1] for p in r['points']] for i, r in runs.items()},
                controls=runs['book']['controls'], ours=ours, reference=ref,
                target=target, target_rule='the worse of the two final qualities',
                time_to_target={ours: t_ours, ref: t_ref},
                ratio=t_ref / t_ours if t_ours > 0 else None, ratio_meaning=f'CPU seconds to reach the target, {ref} / {ours}')

def ttq_size(name, tiny):
    "Sizes of the time-to-quality workload `name`."
    if name == 'toy_time_to_quality':
        return (dict(book_steps=20, v05_steps=20, evals=2, n=100, curve=2000) if tiny else
                dict(book_steps=3000, v05_steps=15000, evals=20, n=2000, curve=20_000))
    return (dict(steps=4, batch=16, evals=2, n=20, sample_steps=4, n_train=512, clf_epochs=1) if tiny else
            dict(steps=600, batch=128, evals=6, n=300, sample_steps=20, n_train=None, clf_epochs=2))

def time_to_quality(name, tiny, timeout, runs=None):
    "Run the time-to-quality workload `name`, one fresh process per recipe, unless `runs` (recipe -> result) are given."
    return dict(toy_time_to_quality=_toy_ttq, image_time_to_quality=_image_ttq)[name](tiny, timeout, runs)

def _toy_ttq(tiny, timeout, runs=None):
    "Chapter 8's toy: the two recipes one after the other."
    size = ttq_size('toy_time_to_quality', tiny)
    runs = runs or {impl: run_worker('toy_time_to_quality', impl, size, timeout) for impl in TTQ_NAMES}
    ours, ref = TTQ_NAMES['book'], TTQ_NAMES['v05_settings']
    return dict(quality="chapter 8's d", measure="chapter 8's d: mean of precision and coverage against Swissroll(pi/2, 5pi, "
                        f"{size['curve']}), {size['n']} samples, 20 steps, gamma=2, seed 0 (lower is better)",
                x='CPU seconds of the training process (time.process_time, evaluation excluded), one thread',
                settings={ours: f"batches of 500 drawn with replacement, AdamW, one-cycle LR peaking at 1e-2, "
                                f"{size['book_steps']} steps",
                          ref: f"DataLoader(batch_size=2048) over the 100 points, training_loop defaults "
                               f"(AdamW, lr 1e-3), {size['v05_steps']} steps"},
                **_ratio_entry(runs, size))

def _image_ttq(tiny, timeout, runs=None):
    "The FashionMNIST U-Net's quick model: the two recipes as two single-threaded processes at the same time."
    from concurrent.futures import ThreadPoolExecutor
    size = ttq_size('image_time_to_quality', tiny)
    if runs is None:
        with ThreadPoolExecutor(len(TTQ_NAMES)) as pool:   # each worker uses one thread; they share nothing
            futs = {impl: pool.submit(run_worker, 'image_time_to_quality', impl, size, timeout) for impl in TTQ_NAMES}
            runs = {impl: f.result() for impl, f in futs.items()}
    ours, ref = TTQ_NAMES['book'], TTQ_NAMES['v05_settings']
    b, px = runs['book'], runs['book']['image_size']
    return dict(quality='Fréchet distance', measure=f"Fréchet distance of {size['n']} samples ({size['sample_steps']} steps, gamma=2, seed 0, clamped "
                        f"to [-1, 1]) to {size['n']} held-out FashionMNIST images at {px}×{px}, in the features of a "
                        f"classifier trained in each process on the training images "
                        f"(held-out accuracy {b['classifier_accuracy']:.3f}) (lower is better)",
                x='CPU seconds of the training process (time.process_time, evaluation excluded), one thread; '
                  'the two recipes ran as two processes at the same time',
                model=f"RECIPE.presets['quick'].model() of smalldiffusion.recipes.fashion_mnist_unet, {b['params']:,} parameters",
                settings={ours: f"the quick preset's recipe: AdamW, OneCycleLR peaking at {b['lr']:g} stepped per batch, "
                                f"EMA decay {b['ema_decay']:g}, samples with the EMA weights; {size['steps']} steps of "
                                f"batch {size['batch']}",
                          ref: f"smalldiffusion 0.5's training_loop defaults (as an unrolled loop): AdamW at a constant "
                               f"lr 1e-3, no EMA; {size['steps']} steps of batch {size['batch']}"},
                data_order='the same seeded shuffle of the training images and the same initial weights for both',
                **_ratio_entry(runs, size))

def summarise(vals):
    return dict(min=min(vals), median=statistics.median(vals), max=max(vals), n=len(vals))

def machine():
    import torch
    cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), platform.processor())
    return dict(cpu=cpu, cores=os.cpu_count(), python=platform.python_version(), torch=torch.__version__,
                platform=platform.platform(), date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))

def book_times(timeout):
    "Run the default test command once and return its per-chapter wall times."
    t0 = time.time()
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'run_tests.py')], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    times = json.loads((ROOT/'_build'/'test_times.json').read_text())
    return dict(total=time.time() - t0, passed=r.returncode == 0, last_line=r.stdout.strip().splitlines()[-1], **times)

def table(results):
    lines = ['| workload | ours / peer (median time) | ours: min / median / max s | peer: min / median / max s |',
             '|---|---|---|---|']
    for r in results:
        o = r['stats']['ours']['seconds']
        for impl, st in r['stats'].items():
            if impl == 'ours': continue
            p = st['seconds']
            lines.append(f"| {r['label']} | **{o['median']/p['median']:.2f}×** {impl} | "
                         f"{o['min']:.3f} / {o['median']:.3f} / {o['max']:.3f} | {p['min']:.3f} / {p['median']:.3f} / {p['max']:.3f} |")
    return '\n'.join(lines)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--tiny', action='store_true', help='tiny sizes: a quick check that every workload runs')
    ap.add_argument('--repeats', type=int, default=None, help='repeats per implementation (default 5; 1 with --tiny)')
    ap.add_argument('--only', nargs='*', default=None, choices=list(ALL_WORKLOADS), help='run only these workloads '
                    '(time-to-quality ones alone are merged into the existing results file at --out)')
    ap.add_argument('--book', action='store_true', help='also time the default test command, per chapter')
    ap.add_argument('--book-times', default=None, help='instead of --book, reuse the per-chapter times a test run '
                    'already wrote (e.g. _build/test_times.json from `make test` on this machine)')
    ap.add_argument('--out', default=str(ROOT/'bench'/'results.json'), help='where the results JSON goes')
    ap.add_argument('--timeout', type=int, default=900, help='seconds allowed per measurement')
    ap.add_argument('--add-book-times', default=None, metavar='FILE', help='only add the per-chapter times a test run '
                    'wrote (FILE, e.g. _build/test_times.json) to the existing results file at --out, and stop')
    a = ap.parse_args()
    if a.add_book_times:
        report, t = json.loads(Path(a.out).read_text()), json.loads(Path(a.add_book_times).read_text())
        report['book'] = dict(t, reused_from=str(a.add_book_times))
        Path(a.out).write_text(json.dumps(report, indent=1)); print(f'added book times to {a.out}'); return
    repeats = a.repeats or (1 if a.tiny else 5)
    if repeats < 1: ap.error('--repeats must be >= 1')
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results, items = [], [it for it in plan(a.tiny) if not a.only or it['workload'] in a.only]
    pre, ttq_names = {}, [n for n in TIME_TO_QUALITY if not a.only or n in a.only]
    if a.tiny:   # two processes in all, one per package, one thread each: a seconds-long check that every workload runs,
                 # which does not compete for the cores with whatever runs beside it (the test command runs two chapters)
        jobs = [(it['workload'], impl, it['size'], (id(it), impl)) for it in items for impl in it['impls']]
        jobs += [(n, impl, ttq_size(n, True), (n, impl)) for n in ttq_names for impl in TTQ_NAMES]
        for up in (True, False):
            mine = [j for j in jobs if (j[1] == 'upstream') == up]
            if mine:
                for j, r in zip(mine, run_jobs([j[:3] for j in mine], up, a.timeout, threads=1)): pre[j[3]] = r
    for item in items:
        runs = {impl: [] for impl in item['impls']}
        for rep in range(repeats):
            for impl in item['impls']:
                runs[impl].append(pre[(id(item), impl)] if a.tiny and rep == 0 else
                                  run_worker(item['workload'], impl, item['size'], a.timeout))
        stats = {impl: {k: summarise([r[k] for r in rs]) for k in rs[0] if isinstance(rs[0][k], (int, float)) and not isinstance(rs[0][k], bool)}
                 for impl, rs in runs.items()}
        res = dict(item, stats=stats, runs=runs)
        results.append(res)
        o = stats['ours']['seconds']['median']
        print(f"{item['label']:38s} ours {o:8.3f} s  " +
              '  '.join(f"{i}: {o/s['seconds']['median']:.2f}×" for i, s in stats.items() if i != 'ours'), flush=True)
    ttq = {name: time_to_quality(name, a.tiny, a.timeout, {i: pre[name, i] for i in TTQ_NAMES} if a.tiny else None)
           for name in ttq_names}
    for name, r in ttq.items():
        ratio = 'not available' if r['ratio'] is None else f"{r['ratio']:.2f}"
        print(f"{name}: {r['reference']} reach {r['target']:.4f} in {r['time_to_target'][r['reference']]:.1f} CPU s, "
              f"{r['ours']} in {r['time_to_target'][r['ours']]:.1f} CPU s: ratio {ratio}", flush=True)
    if ttq and not items:   # only time-to-quality workloads: merge into the existing results file
        report = json.loads(out.read_text()) if out.exists() else dict(machine=machine(), repeats=repeats, tiny=a.tiny, results=[])
        report.setdefault('time_to_quality', {}).update({k: dict(v, machine=machine()) for k, v in ttq.items()})
        tmp = out.with_suffix('.tmp')
        tmp.write_text(json.dumps(report, indent=1)); os.replace(tmp, out)
        print(f'merged {sorted(ttq)} into {out}'); return
    report = dict(machine=machine(), repeats=repeats, tiny=a.tiny, results=results)
    old_ttq = json.loads(out.read_text()).get('time_to_quality', {}) if out.exists() and not a.tiny else {}
    merged = {**old_ttq, **{k: dict(v, machine=machine()) for k, v in ttq.items()}}
    if merged: report['time_to_quality'] = merged
    if a.book: report['book'] = book_times(timeout=3600)
    elif a.book_times:
        t = json.loads(Path(a.book_times).read_text())
        report['book'] = dict(t, last_line=t.get('last_line', ''), reused_from=str(a.book_times))
    tmp = out.with_suffix('.tmp')
    tmp.write_text(json.dumps(report, indent=1)); os.replace(tmp, out)
    md = out.with_suffix('.md')
    md.write_text(f"Measured {report['machine']['date']} on {report['machine']['cpu']}, {report['machine']['cores']} cores, "
                  f"torch {report['machine']['torch']}; {repeats} repeats.\n\n" + table(results) + '\n')
    print('\n' + table(results)); print(f'\nwrote {out} and {md}')

if __name__ == '__main__': main()
