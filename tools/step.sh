# shellcheck shell=bash
# step WHAT COMMAND [ARG...]: run a long setup step with one line of output. The line says
# what runs and, when it is over, how long it took: "setup: WHAT (23s)". On a terminal the
# command's latest output line is shown after it meanwhile, overwritten in place; elsewhere
# (a log, CI) nothing else is printed. If the command fails, its whole output follows and the
# script exits with its status. Sourced by tools/setup; tests/test_tools.py runs it.
step() {
    local what=$1 start=$SECONDS status=0 log
    shift
    log=$(mktemp)
    if [ -t 1 ]; then
        local width room line
        width=$(tput cols 2>/dev/null || echo 80)
        room=$((width - ${#what} - 13))
        printf 'setup: %s ...' "$what"
        {
            "$@" 2>&1 || status=$?
            echo "$status" >"$log.status"
        } | tee "$log" | while IFS= read -r line; do
            line=${line//$'\r'/ }
            if ((room > 10)); then
                printf '\r\033[Ksetup: %s ... %s' "$what" "${line:0:room}"
            fi
        done
        status=$(cat "$log.status")
        rm -f "$log.status"
        printf '\r\033[K'
    else
        "$@" >"$log" 2>&1 || status=$?
    fi
    if [ "$status" -ne 0 ]; then
        printf 'setup: %s failed (exit status %d); its output:\n' "$what" "$status"
        cat "$log"
        rm -f "$log"
        exit "$status"
    fi
    rm -f "$log"
    printf 'setup: %s (%ds)\n' "$what" $((SECONDS - start))
}
