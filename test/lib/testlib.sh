# testlib.sh — tiny assertion helpers for bash integration tests.
#
# Source it, call `t_begin <suite>`, then `t_check "<what>" cmd args...` (passes when the command
# exits 0) or `t_expect_fail "<what>" cmd...`, `t_pass`/`t_fail` for custom logic, and finally
# `t_end`, which prints cmocka-style summary lines (so one parser reads every layer) and returns
# non-zero if anything failed. Command output goes to $T_LOG (default: a file in $T_DIR).

T_PASSED=0
T_FAILED=0
T_FAILED_NAMES=()

t_begin() {
    T_SUITE=$1
    T_DIR=${T_DIR:-$(mktemp -d /tmp/ambit-test.XXXXXX)}
    T_LOG=${T_LOG:-$T_DIR/test.log}
    echo "[==========] Running suite $T_SUITE (log: $T_LOG)"
}

t_pass() {
    T_PASSED=$((T_PASSED + 1))
    echo "[       OK ] $T_SUITE: $1"
}

t_fail() {
    T_FAILED=$((T_FAILED + 1))
    T_FAILED_NAMES+=("$1")
    echo "[  FAILED  ] $T_SUITE: $1${2:+ — $2}"
}

t_check() {
    local what=$1
    shift
    if "$@" >>"$T_LOG" 2>&1; then t_pass "$what"; else t_fail "$what" "command failed: $*"; fi
}

t_expect_fail() {
    local what=$1
    shift
    if "$@" >>"$T_LOG" 2>&1; then t_fail "$what" "expected failure: $*"; else t_pass "$what"; fi
}

# t_eq "<what>" <expected> <actual>
t_eq() {
    if [ "$2" == "$3" ]; then t_pass "$1"; else t_fail "$1" "expected '$2', got '$3'"; fi
}

# t_match "<what>" <extended-regex> <text>
t_match() {
    if grep -Eq -- "$2" <<<"$3"; then t_pass "$1"; else t_fail "$1" "'$2' not found in: ${3:0:400}"; fi
}

t_end() {
    echo "[==========] $((T_PASSED + T_FAILED)) test(s) run."
    echo "[  PASSED  ] $T_PASSED test(s)."
    if [ "$T_FAILED" -gt 0 ]; then
        echo "[  FAILED  ] $T_FAILED test(s), listed below:"
        local n
        for n in "${T_FAILED_NAMES[@]}"; do echo "[  FAILED  ] $n"; done
        return 1
    fi
    return 0
}

# t_wait_for <seconds> cmd... — poll until the command succeeds.
t_wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    while ! "$@" >/dev/null 2>&1; do
        [ $SECONDS -ge $deadline ] && return 1
        sleep 0.1
    done
}

# freeport: print a TCP port on 127.0.0.1 that was free a moment ago (for test servers).
freeport() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
