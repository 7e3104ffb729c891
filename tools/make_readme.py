"""Write README.md from nbs/index.ipynb (markdown cells as they are, visible code cells as Python blocks).

    python tools/make_readme.py          # write README.md
    python tools/make_readme.py --check  # exit 1 if README.md is not what index.ipynb gives"""
import re, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from nbutil import ROOT, NBS, cell_flags
from execnb.nbio import read_nb

HEADER = '<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file. -->\n\n'

def readme_text(nb_path=NBS/'index.ipynb'):
    parts = []
    for c in read_nb(nb_path).cells:
        if c.cell_type == 'markdown': parts.append(c.source.strip())
        elif c.cell_type == 'code':
            f = cell_flags(c.source)
            if {'hide', 'export', 'exporti', 'default_exp'} & f or not c.source.strip(): continue
            code = '\n'.join(l for l in c.source.splitlines() if not l.lstrip().startswith('#|'))
            parts.append(f'```python\n{code.strip()}\n```')
    text = '\n\n'.join(parts)
    text = re.sub(r'^:::.*\n', '', text, flags=re.M)   # fenced divs (page layout) mean nothing on GitHub
    text = re.sub(r'\]\(([\w.-]+\.ipynb)\)', r'](nbs/\1)', text)   # chapter links point into nbs/
    text = re.sub(r'\]\(((?:images/)?[\w.-]+\.(?:md|png|jpg|svg))\)', r'](nbs/\1)', text)   # so do pages and pictures
    return HEADER + text + '\n'

if __name__ == '__main__':
    text, dest = readme_text(), ROOT/'README.md'
    if '--check' in sys.argv:
        ok = dest.exists() and dest.read_text() == text
        if not ok: print('README.md is out of date: run `python tools/make_readme.py`')
        sys.exit(0 if ok else 1)
    dest.write_text(text)
    print(f'wrote {dest}')
