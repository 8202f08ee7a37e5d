#!/usr/bin/env bash
# Stop the cluster started by tests/cluster/start_cluster.sh (same CTRG_SLURM_STATE).
#
# Cancels all jobs first (slurmstepd processes outlive slurmd otherwise), waits for them to
# leave the node, then stops exactly the daemons recorded in $STATE/pids (TERM, then KILL
# after 10 s) and removes the /etc/slurm/slurm.conf link if it points at this cluster.
# Logs and the jobcomp file stay in $STATE/log for inspection.
set -uo pipefail

STATE="${CTRG_SLURM_STATE:-/tmp/ctrg-slurm}"
CONF="$STATE/ctrg-cluster/slurm.conf"

[[ -f "$STATE/pids" ]] || { echo "stop_cluster: no $STATE/pids, nothing to stop" >&2; exit 0; }

# A recorded PID counts only while it still runs the recorded daemon (PIDs get reused).
alive() { [[ "$(cat "/proc/$2/comm" 2>/dev/null)" == "$1" ]]; }

cancel_jobs() {
    export SLURM_CONF="$CONF"
    local ctld_pid
    ctld_pid="$(awk '$1 == "slurmctld" {print $2}' "$STATE/pids")"
    [[ -n "$ctld_pid" ]] && alive slurmctld "$ctld_pid" || return 0
    local jobs
    jobs="$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')"
    [[ -n "${jobs// /}" ]] || return 0
    echo "stop_cluster: cancelling jobs $jobs" >&2
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null
    local deadline=$((SECONDS + 20))
    while ((SECONDS < deadline)); do
        [[ -z "$(squeue -h -t RUNNING,COMPLETING,PENDING -o %i 2>/dev/null)" ]] && return 0
        sleep 0.5
    done
    echo "stop_cluster: jobs still listed after 20 s: $(squeue -h 2>&1)" >&2
}

stop_pid() {  # name pid
    local name="$1" pid="$2"
    alive "$name" "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null
    local deadline=$((SECONDS + 10))
    while alive "$name" "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
    if alive "$name" "$pid"; then
        echo "stop_cluster: $name ($pid) ignored TERM, sending KILL" >&2
        kill -KILL "$pid" 2>/dev/null
    fi
    echo "stop_cluster: stopped $name ($pid)" >&2
}

cancel_jobs
# Reverse start order: slurmd, slurmctld, munged.
tac "$STATE/pids" | while read -r name pid; do
    stop_pid "$name" "$pid"
done
mv "$STATE/pids" "$STATE/pids.stopped"
if [[ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" == "$CONF" ]]; then
    rm -f /etc/slurm/slurm.conf
fi
exit 0
