"""Fresh-interpreter checks that share one interpreter start.

A new Python process spends most of its start importing Keras and its
backend (about 10 s for TensorFlow on 2 CPU cores). `run_forked` starts one
process, imports `keras` there (the first thing every `tf_sparsity` module
imports), checks that no `tf_sparsity` module came with it, and runs each
snippet in a child forked from it: every child starts with Keras loaded and
no `tf_sparsity` module imported, as a fresh interpreter that imported Keras
first would. POSIX only (`os.fork`).
"""

import json
import os
import subprocess
import sys

_PARENT = r'''
import contextlib, io, json, os, signal, sys, traceback
import keras
preloaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tf_sparsity", "tf_sparsity_models"))
assert not preloaded, f"importing keras imported {{preloaded}}"
results = []
for snippet in json.loads(sys.argv[1]):
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        signal.alarm({timeout})  # A hung child ends instead of the test.
        output, code = io.StringIO(), 0
        try:
            with contextlib.redirect_stdout(output):
                exec(compile(snippet, "<snippet>", "exec"), {{"__name__": "__main__"}})
        except BaseException:
            output.write(traceback.format_exc())
            code = 1
        with os.fdopen(write_end, "w") as pipe:
            json.dump({{"code": code, "output": output.getvalue()}}, pipe)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        sent = pipe.read()
    _, status = os.waitpid(pid, 0)
    exit_code = os.waitstatus_to_exitcode(status)
    results.append(json.loads(sent) if sent and exit_code == 0 else {{"code": exit_code or 1, "output": sent}})
print("\n" + json.dumps(results))
'''


def run_forked(snippets, cwd=None, env=None, timeout=300):
    """Runs each of `snippets` (Python source) in its own forked child of
    one fresh interpreter that has imported Keras (see the module docstring).

    Returns:
        A list with, per snippet, `{"code": 0 or not, "output": what it
        printed, and the traceback if it raised}`.
    """
    result = subprocess.run(
        [sys.executable, "-c", _PARENT.format(timeout=timeout), json.dumps(list(snippets))],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout * (len(snippets) + 1),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
