#!/usr/bin/env bash
# Start a real single-node SLURM cluster on this machine (for tests and CI).
#
# Installs Debian's slurm-wlm + munge with apt-get when they are missing, writes a slurm.conf
# for this host (all CPUs, ~85% of the memory, one fake GPU as a gres so GPU rules can be
# scheduled), links it to /etc/slurm/slurm.conf, starts munged, slurmctld and slurmd in the
# background, waits until the node is idle and records each daemon's PID in $STATE/pids.
# Stop it with tests/cluster/stop_cluster.sh (same CTRG_SLURM_STATE).
#
# Usage: tests/cluster/start_cluster.sh            (state in $CTRG_SLURM_STATE, default
#                                                   /tmp/ctrg-slurm)
# Optional: CTRG_SLURM_GPUS (fake GPUs, default 1), CTRG_SLURM_CRED_EXPIRE (job credential
# lifetime and requeue hold, default 10 s; SLURM's own default is 120 s).
# Needs root (daemons, /etc/slurm, apt-get). No systemd or cgroups needed.
# Exit codes: 0 cluster up; 2 cannot run here (not root, no apt-get and no slurm);
#             1 anything else (the message names the failing step and its log).
set -euo pipefail

STATE="${CTRG_SLURM_STATE:-/tmp/ctrg-slurm}"
GPUS="${CTRG_SLURM_GPUS:-1}"
CTLD_PORT="${CTRG_SLURM_CTLD_PORT:-6817}"
SLURMD_PORT="${CTRG_SLURM_SLURMD_PORT:-6818}"
CRED_EXPIRE="${CTRG_SLURM_CRED_EXPIRE:-10}"
SYSTEM_CONF=/etc/slurm/slurm.conf

die() {
    echo "start_cluster: $1" >&2
    [[ -n "${STARTING:-}" ]] && stop_started
    exit "${2:-1}"
}

stop_started() {  # on failure: stop the daemons this run already started, by PID
    [[ -f "$STATE/pids" ]] || return 0
    local name pid
    while read -r name pid; do
        kill -TERM "$pid" 2>/dev/null && echo "start_cluster: stopped $name ($pid)" >&2
    done < <(tac "$STATE/pids")
    mv "$STATE/pids" "$STATE/pids.failed"
}

[[ "$(id -u)" == 0 ]] || die "must run as root (daemons and /etc/slurm)" 2

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v munged >/dev/null && command -v sbatch >/dev/null; then
        return
    fi
    command -v apt-get >/dev/null || die "slurm is not installed and apt-get is unavailable" 2
    echo "start_cluster: installing slurm-wlm and munge with apt-get" >&2
    mkdir -p "$STATE"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq slurm-wlm munge; } \
        >"$STATE/apt.log" 2>&1; then
        tail -n 20 "$STATE/apt.log" >&2
        die "apt-get install slurm-wlm munge failed (log: $STATE/apt.log)" 2
    fi
}

check_not_running() {
    if [[ -f "$STATE/pids" ]]; then
        local name pid
        while read -r name pid; do
            if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$name" ]]; then
                die "a cluster from $STATE is still running (pid $pid): run stop_cluster.sh first"
            fi
        done <"$STATE/pids"
    fi
    if [[ -e "$SYSTEM_CONF" || -L "$SYSTEM_CONF" ]]; then
        local target
        target="$(readlink "$SYSTEM_CONF" || true)"
        [[ "$target" == */ctrg-cluster/slurm.conf ]] \
            || die "$SYSTEM_CONF exists and is not ours: refusing to replace a site's config"
    fi
}

write_config() {
    local host cpus mem_mb
    host="$(hostname -s)"
    cpus="$(nproc)"
    mem_mb="$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.85}' /proc/meminfo)"
    rm -rf "$STATE"/{ctrg-cluster,spool,ctld,log}
    mkdir -p "$STATE"/{ctrg-cluster,spool,ctld,log}
    cat >"$STATE/ctrg-cluster/slurm.conf" <<EOF
# Written by tests/cluster/start_cluster.sh: single node, no systemd/cgroups, no slurmdbd.
ClusterName=ctrg
SlurmctldHost=${host}(127.0.0.1)
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# Job credential lifetime (default 120 s). slurmctld also holds a requeued job this long + 1 s
# (BeginTime), because the node refuses the job's relaunch with a credential created in the
# same second as the requeue's revocation; 10 s keeps the requeue test short.
AuthInfo=cred_expire=${CRED_EXPIRE}
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
GresTypes=gpu
ReturnToService=2
# Finished jobs stay visible to squeue/scontrol for 30 min (the executor polls with squeue).
MinJobAge=1800
MailProg=/bin/true
StateSaveLocation=${STATE}/ctld
SlurmdSpoolDir=${STATE}/spool
SlurmctldPidFile=${STATE}/slurmctld.pid
SlurmdPidFile=${STATE}/slurmd.pid
SlurmctldLogFile=${STATE}/log/slurmctld.log
SlurmdLogFile=${STATE}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=${STATE}/log/jobcomp.txt
SchedulerParameters=defer_batch=0
SchedulerType=sched/backfill
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem_mb} Gres=gpu:${GPUS} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
EOF
    # Fake GPUs for scheduling only: File= is required (else the node goes INVAL) and must
    # name one file per GPU; with task/none nothing is bound, jobs get CUDA_VISIBLE_DEVICES.
    local files="/dev/null"
    if ((GPUS > 1)); then
        for ((i = 0; i < GPUS; i++)); do : >"$STATE/ctrg-cluster/fakegpu$i"; done
        files="$STATE/ctrg-cluster/fakegpu[0-$((GPUS - 1))]"
    fi
    cat >"$STATE/ctrg-cluster/gres.conf" <<EOF
AutoDetect=off
NodeName=${host} Name=gpu File=${files} Count=${GPUS}
EOF
    mkdir -p /etc/slurm
    ln -sfn "$STATE/ctrg-cluster/slurm.conf" "$SYSTEM_CONF"
}

start_daemon() {  # name logfile command...: start in the background, record the PID
    local name="$1" log="$2"
    shift 2
    setsid "$@" </dev/null >"$log" 2>&1 &
    echo "$name $!" >>"$STATE/pids"
}

wait_for() {  # description seconds command...
    local what="$1" seconds="$2"
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
    echo "start_cluster: $what ($((seconds - deadline + SECONDS)) s)" >&2
}

node_idle() { [[ "$(sinfo -h -N -o %T 2>/dev/null)" == idle ]]; }

main() {
    install_packages
    check_not_running
    rm -f "$STATE/pids"
    write_config
    export SLURM_CONF="$STATE/ctrg-cluster/slurm.conf"
    : >"$STATE/pids"
    STARTING=1

    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        mungekey --create --keyfile=/etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
        chmod 600 /etc/munge/munge.key
    fi
    start_daemon munged "$STATE/log/munged.out" \
        setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F
    wait_for "munged up" 15 munge -n \
        || die "munged did not start (log: $STATE/log/munged.out, /var/log/munge/munged.log)"

    start_daemon slurmctld "$STATE/log/slurmctld.out" /usr/sbin/slurmctld -D -c -f "$SLURM_CONF"
    wait_for "slurmctld up" 30 scontrol ping \
        || die "slurmctld did not start (log: $STATE/log/slurmctld.log)"
    start_daemon slurmd "$STATE/log/slurmd.out" /usr/sbin/slurmd -D -f "$SLURM_CONF"
    wait_for "node idle" 60 node_idle \
        || die "node not idle: $(sinfo -h -N -o '%T %E' 2>&1) (log: $STATE/log/slurmd.log)"
    echo "start_cluster: up; state $STATE, pids: $(tr '\n' ' ' <"$STATE/pids")" >&2
}

main "$@"
