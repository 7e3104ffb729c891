"""Packaging for smalldiffusion: everything is read from settings.ini (nbdev 2's project file)."""
from configparser import ConfigParser
from pathlib import Path
import setuptools

here = Path(__file__).parent
cfg = ConfigParser(delimiters=['='])
cfg.read(here/'settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']

def reqs(key): return cfg.get(key, '').split()

licenses = {'mit': ('MIT License', 'OSI Approved :: MIT License')}
lic = licenses[cfg['license']]
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable']
readme = here/'README.md'

setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    description=cfg['description'],
    long_description=readme.read_text(encoding='utf-8') if readme.exists() else cfg['description'],
    long_description_content_type='text/markdown',
    author=cfg['author'], author_email=cfg['author_email'],
    license=lic[0],
    classifiers=[f"Development Status :: {statuses[int(cfg['status'])-1]}",
                 f"Intended Audience :: {cfg['audience']}",
                 f"License :: {lic[1]}",
                 'Natural Language :: English',
                 'Programming Language :: Python :: 3'],
    url=cfg['git_url'],
    packages=setuptools.find_packages(include=['smalldiffusion', 'smalldiffusion.*']),
    package_data={'smalldiffusion': ['assets/*.tsv']},
    include_package_data=True,
    install_requires=reqs('requirements'),
    extras_require={'examples': reqs('examples_requirements'),
                    'dev': reqs('dev_requirements'),
                    'all': reqs('examples_requirements') + reqs('dev_requirements')},
    python_requires='>=' + cfg['min_python'],
    zip_safe=False,
    keywords=cfg['keywords'],
    entry_points={'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
)
