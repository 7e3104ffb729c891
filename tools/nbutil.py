"""Helpers shared by the book's build and test scripts: chapter order, cell flags, running one notebook."""
import os, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
FLAGS = ('slow', 'gpu', 'sd')   # keep in step with `tst_flags` in settings.ini

# Offline, headless, reproducible: set for every notebook the build or the tests run.
OFFLINE_ENV = dict(HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1', HF_DATASETS_OFFLINE='1', DIFFUSERS_OFFLINE='1',
                   HF_HUB_DISABLE_TELEMETRY='1', MPLBACKEND='Agg', PYTHONHASHSEED='0', TQDM_MININTERVAL='5',
                   TQDM_DISABLE='1')   # third-party bars (diffusers, smalldiffusion 0.5) stay out of logs and pages

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

# ---------------------------------------------------------------- the site: what the build adds to the rendered pages

FLAG_NEEDS = dict(gpu='a GPU', slow='a long run', sd='Stable Diffusion weights (and a GPU)')

def unrun_note(flags, ran=False):
    "The badge shown above a flagged cell: what it needs and how to run it (`ran`: it did run in this build)."
    fl = [f for f in FLAGS if f in flags]
    opt = f'--flags {fl[0]}' if len(fl) == 1 else f'--flags "{" ".join(fl)}"'
    needs = ' and '.join(FLAG_NEEDS[f] for f in fl)
    if ran: return f'<p class="sd-flag sd-flag-ran">Ran in this build with <code>{opt}</code> (needs {needs}).</p>'
    return (f'<p class="sd-flag sd-flag-unrun">Not run in this build: this cell needs {needs}. Run it with '
            f'<code>{opt}</code>, e.g. <code>python tools/run_tests.py {opt}</code> or '
            f'<code>python tools/build_book.py {opt}</code>; the page shows no output for it.</p>')

def mark_flagged(nb_path):
    "Put a badge above every visible flagged code cell of a notebook file: not run (no outputs) or ran. Returns how many."
    import json, secrets
    nb = json.loads(Path(nb_path).read_text(encoding='utf-8'))
    cells, n = [], 0
    for c in nb['cells']:
        if c['cell_type'] == 'code':
            src = ''.join(c['source']) if isinstance(c['source'], list) else c['source']
            f = cell_flags(src)
            if f & set(FLAGS) and not f & {'hide', 'export', 'exporti', 'eval:false'}:
                note = unrun_note(f, ran=bool(c.get('outputs')))
                cells.append(dict(cell_type='markdown', id=secrets.token_hex(4), metadata={}, source=note)); n += 1
        cells.append(c)
    nb['cells'] = cells
    Path(nb_path).write_text(json.dumps(nb, indent=1, ensure_ascii=False), encoding='utf-8')
    return n

def page_name(nb_name):
    "The page nbdev links a notebook to (and Quarto writes with `output-file`): `03_models.ipynb` -> `models`."
    from nbdev.doclinks import _nbpath2html
    return _nbpath2html(Path(nb_name)).stem

# TeX to readable text, for the search index (search results are plain text)
_TEX_SYMBOLS = dict(
    alpha='α', beta='β', gamma='γ', delta='δ', epsilon='ε', varepsilon='ε', zeta='ζ', eta='η', theta='θ', vartheta='ϑ',
    iota='ι', kappa='κ', lambda_='λ', mu='μ', nu='ν', xi='ξ', pi='π', rho='ρ', sigma='σ', tau='τ', upsilon='υ', phi='φ',
    varphi='φ', chi='χ', psi='ψ', omega='ω', Gamma='Γ', Delta='Δ', Theta='Θ', Lambda='Λ', Xi='Ξ', Pi='Π', Sigma='Σ',
    Phi='Φ', Psi='Ψ', Omega='Ω', sum='Σ', prod='Π', int='∫', infty='∞', nabla='∇', partial='∂', sqrt='√', cdot='·',
    times='×', le='≤', leq='≤', ge='≥', geq='≥', ne='≠', neq='≠', approx='≈', sim='∼', propto='∝', to='→', rightarrow='→',
    leftarrow='←', mapsto='↦', Rightarrow='⇒', iff='⇔', mid='|', vert='|', lVert='‖', rVert='‖', Vert='‖', ell='ℓ',
    pm='±', mp='∓', in_='∈', notin='∉', subset='⊂', cup='∪', cap='∩', forall='∀', exists='∃', ldots='…', cdots='⋯',
    dots='…', log='log', exp='exp', min='min', max='max', arg='arg', argmin='argmin', argmax='argmax', top='⊤',
    quad=' ', qquad=' ', langle='⟨', rangle='⟩', odot='⊙', otimes='⊗', circ='∘', star='⋆', prime='′', emptyset='∅')
_SUB = str.maketrans('0123456789+-=()aehijklmnoprstuvx', '₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎ₐₑₕᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓ')
_SUP = str.maketrans('0123456789+-=()in', '⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁱⁿ')
_FONTS = dict(mathbb={'E': '𝔼', 'R': 'ℝ', 'N': 'ℕ', 'Z': 'ℤ', 'P': 'ℙ'}, mathcal={'N': '𝒩', 'L': 'ℒ', 'D': '𝒟', 'O': '𝒪'})

def tex_text(tex):
    "A readable plain-text rendering of a TeX formula, e.g. `\\sigma_t^2` -> `σₜ²`; for search entries, not for pages."
    s = re.sub(r'\\(hat|bar|tilde|vec|dot)\s*(\\[A-Za-z]+|\w)', r'\\\1{\2}', tex)
    s = re.sub(r'\\(mathbb|mathcal)\s+(\w)', r'\\\1{\2}', s).replace('\\_', '_')
    s = re.sub(r'([_^])\\(?:text|mathrm|mathbf|operatorname)\{', r'\1{', s).replace('\\|', '‖')
    for _ in range(4):   # innermost groups first
        s = re.sub(r'\\(?:mathbb|mathcal)\{(\w)\}', lambda m: _FONTS['mathbb' if 'bb' in m.group(0) else 'mathcal'].get(m.group(1), m.group(1)), s)
        s = re.sub(r'\\(?:text|mathrm|mathbf|mathit|operatorname|boldsymbol|bm|textbf|textit|mathsf|mathtt)\{([^{}]*)\}', r'\1', s)
        s = re.sub(r'\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}', lambda m: f'({m.group(1)})/({m.group(2)})' if len(m.group(1)) > 1 or len(m.group(2)) > 1 else f'{m.group(1)}/{m.group(2)}', s)
        s = re.sub(r'\\sqrt\{([^{}]*)\}', r'√(\1)', s)
        s = re.sub(r'\\(hat|bar|tilde|vec|dot|overline|widehat|widetilde)\{([^{}]*)\}', lambda m: m.group(2) + dict(hat='̂', widehat='̂', bar='̄', overline='̄', tilde='̃', widetilde='̃', vec='⃗', dot='̇')[m.group(1)], s)
    s = re.sub(r'\\(?:left|right|big|Big|bigg|Bigg)\b\\?', '', s)
    s = re.sub(r'\\([A-Za-z]+)', lambda m: _TEX_SYMBOLS.get(m.group(1), _TEX_SYMBOLS.get(m.group(1) + '_', m.group(1))), s)
    def script(m, table):
        body = m.group(1) or m.group(2)
        t = body.translate(table)
        return t if all(ch != o for ch, o in zip(t, body)) or not body.strip() else ('_' if table is _SUB else '^') + (body if len(body) == 1 else f'({body})')
    s = re.sub(r'_\{([^{}]*)\}|_(\w)', lambda m: script(m, _SUB), s)
    s = re.sub(r'\^\{([^{}]*)\}|\^(\w)', lambda m: script(m, _SUP), s)
    s = s.replace('\\,', ' ').replace('\\;', ' ').replace('\\!', '').replace('\\{', '{').replace('\\}', '}').replace('\\\\', ' ')
    return re.sub(r'[{}]', '', s).replace('~', ' ')

def untex(text):
    r"Replace the maths in rendered plain text (`\(...\)`, `\[...\]`, `$...$`) by readable text."
    text = re.sub(r'\\\((.+?)\\\)|\\\[(.+?)\\\]', lambda m: tex_text(m.group(1) or m.group(2)), text, flags=re.S)
    text = re.sub(r'\$\$(.+?)\$\$|\$([^$\s](?:[^$]*[^$\s])?)\$', lambda m: tex_text(m.group(1) or m.group(2)), text, flags=re.S)
    return re.sub(r'\\[()\[\]]', ' ', text)   # a delimiter whose partner the renderer's tag stripping took

# ---------------------------------------------------------------- API blocks on the site (nbdev's `renderer` setting)

def _anno(a):
    import inspect
    if a is inspect.Parameter.empty: return ''
    if isinstance(a, str): return a
    return a.__name__ if isinstance(a, type) else inspect.formatannotation(a)

def _default(d):
    import inspect, types
    if isinstance(d, (types.FunctionType, type)): return d.__name__
    r = repr(d)
    return re.sub(r' at 0x[0-9a-f]+', '', r)

def signature_text(sym, name):
    """The signature as Python writes it, keyword-only `*` and positional-only `/` markers included, one parameter a
    line when long: `class Name(...)` for a class (its `__init__` without `self`), `def name(...)` for a function."""
    import inspect
    kind = 'class' if inspect.isclass(sym) else 'async def' if inspect.iscoroutinefunction(sym) else 'def'
    try: sig = inspect.signature(sym, eval_str=True)
    except Exception:
        try: sig = inspect.signature(sym)
        except (ValueError, TypeError): return f'{kind} {name}'
    parts, star = [], False
    params = list(sig.parameters.values())
    for i, p in enumerate(params):
        if p.kind is p.KEYWORD_ONLY and not star: parts.append('*'); star = True
        if p.kind is p.VAR_POSITIONAL: star = True
        s = ('*' if p.kind is p.VAR_POSITIONAL else '**' if p.kind is p.VAR_KEYWORD else '') + p.name
        if p.annotation is not p.empty: s += f': {_anno(p.annotation)}'
        if p.default is not p.empty: s += (' = ' if p.annotation is not p.empty else '=') + _default(p.default)
        parts.append(s)
        if p.kind is p.POSITIONAL_ONLY and (i + 1 == len(params) or params[i + 1].kind is not p.POSITIONAL_ONLY): parts.append('/')
    ret = '' if kind == 'class' or sig.return_annotation is sig.empty else f' -> {_anno(sig.return_annotation)}'
    bases = ''
    one = f'{kind} {name}({", ".join(parts)}){ret}'
    if len(one) <= 88: return one
    return f'{kind} {name}(\n' + ''.join(f'    {x},\n' for x in parts) + f'){ret}'

def _source_link(sym, fullname):
    """The repository link (file and line) for a symbol. nbdev runs a notebook's exported cells in `__main__`, so the
    module is found by the symbol's source among the modules that define that name (several recipes have a `main`)."""
    import inspect
    from nbdev.doclinks import NbdevLookup, _lineno
    look = NbdevLookup()
    qual = getattr(sym, '__qualname__', fullname.split('.')[-1])
    cands = sorted((f'{m}.{qual}', v) for e in look.entries.values() for m, d in e['syms'].items()
                   for k, v in d.items() if k == f'{m}.{qual}' and isinstance(v, tuple) and len(v) == 3)
    if getattr(sym, '__module__', None) not in (None, '__main__'):
        cands = [c for c in cands if c[0] == f'{sym.__module__}.{qual}'] or cands
    elif len(cands) > 1:
        try: code = inspect.getsource(sym).strip()
        except (OSError, TypeError): code = None
        cands = [c for c in cands if code and (ROOT/c[1][1]).exists() and code in (ROOT/c[1][1]).read_text(encoding='utf-8')]
    if not cands: return None
    _, (_, py, gh) = cands[0]
    line = _lineno(qual, py)
    return f'{gh}#L{line}' if line else gh

try:
    from fastcore.docments import ShowDocRenderer as _SDR, DocmentTbl as _Tbl
except ImportError: _SDR = object

class BookDocRenderer(_SDR):
    """show_doc on the site: the faithful signature in a code block (`class` for classes), then the docstring, then the
    parameters in a table whose details are Markdown, so that their maths and links render."""
    def _repr_markdown_(self):
        from nbdev.showdoc import _ext_link
        doc = '---\n\n'
        src = _source_link(self.sym, self.fn)
        if src: doc += _ext_link(src, 'source', 'style="float:right; font-size:smaller"') + '\n\n'
        doc += f'{"#" * self.title_level} {self.nm}\n\n'
        doc += f'```python\n{signature_text(self.sym, self.nm)}\n```\n\n'
        if self.docs: doc += self.docs + '\n\n'
        try:
            tbl = _Tbl(self.sym)
            for d in tbl.dm.values():   # a docment's text is Markdown: keep `|` from ending the table cell
                if isinstance(d.get('docment'), str): d['docment'] = d['docment'].replace('|', '\\|')
            t = tbl._repr_markdown_()
        except Exception: t = ''
        return doc + (t + '\n' if t else '')
