# Shared by the pkg tests that build a scratch tree (test_install.py, test_dist.py).
import subprocess


def run(*cmd, **kw):
    """Run cmd; on failure print the tail of its output and fail the test."""
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        print(r.stdout[-4000:], r.stderr[-4000:])
        raise SystemExit(f'FAIL {" ".join(cmd)}: exit {r.returncode}')
    return r
