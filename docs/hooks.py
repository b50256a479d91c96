"""MkDocs hooks: the notebooks and figures that live outside `docs/`.

The pages link to files elsewhere in the repository with relative links
(`../notebooks/quickstart.ipynb`, `../benchmarks/results/.../x.png`), so
that they work when a page is read on GitHub. At build time:

- `on_files` adds the notebooks (`notebooks/*.ipynb`, rendered by
  mkdocs-jupyter without executing them) and the committed figures
  (`benchmarks/results/**/*.png`) to the site, at their repository paths.
  Nothing is copied into `docs/`: the figures are the files that their
  commands write (`python benchmarks/tables.py --docs` for the frontier
  plots, `tf-sparsity report benchmarks/results/learned_masks --out
  benchmarks/results/learned_masks/report` for the learned-masks plot).
- `on_page_markdown` rewrites every relative link that leaves `docs/`: to
  the site's copy when the site has one, otherwise to the file on GitHub
  (`repo_url` in mkdocs.yml). A link to a repository path that does not
  exist is a warning, so `mkdocs build --strict` fails on it.
"""

import glob
import logging
import os
import posixpath
import re

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.tf_sparsity")

# Repository files served by the site, as glob patterns from the repository root.
SITE_FILES = ("notebooks/*.ipynb", "benchmarks/results/**/*.png")

# [text](target) and ![alt](target "title"); the target has no spaces.
_LINK = re.compile(r"(!?\[[^\]\n]*\])\(([^)\s]+)((?:\s+\"[^\"]*\")?)\)")
_FENCE = re.compile(r"^(\s*)(```|~~~)")


def _root(config):
    return os.path.dirname(os.path.abspath(config.config_file_path))


def _docs_prefix(config):
    return os.path.relpath(config.docs_dir, _root(config)).replace(os.sep, "/")


# Before mkdocs-jupyter's on_files (priority 0), which claims the notebooks.
@event_priority(50)
def on_files(files, config):
    root = _root(config)
    for pattern in SITE_FILES:
        for path in sorted(glob.glob(os.path.join(root, pattern), recursive=True)):
            src_uri = os.path.relpath(path, root).replace(os.sep, "/")
            if files.get_file_from_path(src_uri) is None:
                # A File read from the repository root (not File.generated:
                # mkdocs-jupyter's wrapper needs `src_dir` to find the notebook).
                files.append(File(src_uri, root, config.site_dir, config.use_directory_urls))
    return files


def on_page_markdown(markdown, page, config, files):
    lines = []
    fenced = False
    for line in markdown.split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
        if not fenced:
            line = _LINK.sub(lambda m: _rewrite(m, page, config, files), line)
        lines.append(line)
    return "\n".join(lines)


def _rewrite(match, page, config, files):
    text, target, title = match.groups()
    if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", target):  # URL, anchor or absolute
        return match.group(0)
    path, _, anchor = target.partition("#")
    page_dir = posixpath.dirname(page.file.src_uri)
    repo_path = posixpath.normpath(posixpath.join(_docs_prefix(config), page_dir, path))
    if not repo_path.startswith("../") and not repo_path.startswith(_docs_prefix(config) + "/"):
        if files.get_file_from_path(repo_path) is not None:
            new = posixpath.relpath(repo_path, page_dir or ".")
        elif os.path.exists(os.path.join(_root(config), repo_path)):
            kind = "tree" if os.path.isdir(os.path.join(_root(config), repo_path)) else "blob"
            new = f"{config.repo_url.rstrip('/')}/{kind}/main/{repo_path}"
        else:
            log.warning("%s links to '%s', which is not in the repository.", page.file.src_uri, target)
            return match.group(0)
        if anchor:
            new += "#" + anchor
        return f"{text}({new}{title})"
    return match.group(0)
