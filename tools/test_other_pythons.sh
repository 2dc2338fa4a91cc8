#!/usr/bin/env bash
# The test suite on every CPython 3.12+ found on this machine, each in its own venv.
#
# The default interpreter (3.11 here) is what `.ci/run` tests; the hook and the
# tracer also follow what 3.12 and 3.13 changed (issue 4), and this checks it.
#
#   tools/test_other_pythons.sh                    # every 3.12+ found: pyenv versions, python3.1x on PATH
#   tools/test_other_pythons.sh /path/to/python3.13 -- -x tests/test_tracer.py
#
# Interpreters given on the command line replace the search; what follows `--`
# goes to pytest (default: the whole suite). Coverage is measured and its total
# shown, but its floor is not applied: that is `.ci/run`'s gate, on the default
# interpreter in a fresh clone; here Numba's caches are usually warm, so code
# that runs only when a kernel compiles (LLVM IR generation) counts as missed
# and the total comes out ~1% lower on any version. Venvs live
# in $ATF2_OTHER_PYTHONS (default: ${TMPDIR:-/tmp}/atf2-other-pythons/<version>);
# each gets `pip install -e '<repo>[test]'` (its own editable install: the
# default interpreter's is left alone) and its own COVERAGE_FILE. Numba and
# numpy must have wheels for the version: when the install fails, the version
# is reported as "install failed". Exit status: 0 when every version passed.
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
root=${ATF2_OTHER_PYTHONS:-${TMPDIR:-/tmp}/atf2-other-pythons}

pythons=()
pytest_args=()
while [ $# -gt 0 ]; do
    if [ "$1" = "--" ]; then
        shift
        pytest_args=("$@")
        break
    fi
    pythons+=("$1")
    shift
done

if [ ${#pythons[@]} -eq 0 ]; then
    pyenv_root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
    for candidate in "$pyenv_root"/versions/3.*/bin/python python3.12 python3.13 python3.14 python3.15; do
        command -v "$candidate" >/dev/null 2>&1 && pythons+=("$(command -v "$candidate")")
    done
fi

declare -A seen=()
summary=()
status=0
for python in "${pythons[@]}"; do
    # CPython release builds only (a free-threaded 3.13t has no numba wheels; a debug build other offsets)
    version=$("$python" -c 'import sys, sysconfig
ok = sys.version_info >= (3, 12) and sys.implementation.name == "cpython" and not hasattr(sys, "gettotalrefcount")
print("%d.%d.%d" % sys.version_info[:3] if ok and not sysconfig.get_config_var("Py_GIL_DISABLED") else "")' 2>/dev/null) || continue
    [ -z "$version" ] && continue
    [ -n "${seen[$version]:-}" ] && continue
    seen[$version]=1
    venv="$root/$version"
    echo "=== CPython $version ($python): $venv"
    if [ ! -x "$venv/bin/python" ] && ! "$python" -m venv "$venv"; then
        summary+=("$version: venv failed")
        status=1
        continue
    fi
    if ! "$venv/bin/python" -m pip install -q -e "$repo[test]" >"$venv/pip.log" 2>&1; then
        tail -n 20 "$venv/pip.log"
        summary+=("$version: install failed (no numba/numpy for it?), see $venv/pip.log")
        status=1
        continue
    fi
    log="$venv/pytest.log"
    (cd "$repo" && COVERAGE_FILE="$venv/.coverage" "$venv/bin/python" -m pytest -q -p no:cacheprovider \
        --cov-fail-under=0 "${pytest_args[@]}") 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    [ "$rc" -ne 0 ] && status=1
    result=$(grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed)' "$log" | tail -n 1 | tr -d '=')
    coverage=$(grep -E '^TOTAL ' "$log" | tail -n 1 | awk '{print $NF}')
    summary+=("$version: exit $rc, $result${coverage:+ (coverage $coverage)}")
done

if [ ${#summary[@]} -eq 0 ]; then
    echo "no CPython 3.12+ found (give interpreters as arguments)"
    exit 1
fi
echo "=== summary"
printf '%s\n' "${summary[@]}"
exit $status
