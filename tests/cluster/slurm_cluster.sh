#!/usr/bin/env bash
# A throwaway one-node SLURM cluster on this machine, for tests/cluster/ (`make test-cluster`).
#
#   tests/cluster/slurm_cluster.sh install   # apt-get install slurm-wlm munge (root; once per machine)
#   tests/cluster/slurm_cluster.sh start     # munged + slurmctld + slurmd, all state in $SLURM_CLUSTER_DIR
#   tests/cluster/slurm_cluster.sh env       # prints `export SLURM_CONF=...`: eval it to use sbatch/squeue
#   tests/cluster/slurm_cluster.sh status    # the daemons' pids, and sinfo
#   tests/cluster/slurm_cluster.sh stop      # ends the daemons that `start` started (by pid file)
#   tests/cluster/slurm_cluster.sh clean     # stop, then delete $SLURM_CLUSTER_DIR
#
# Everything (config, munge key and socket, spool, state, logs, pid files) lives under one folder,
# $SLURM_CLUSTER_DIR (default /tmp/logreg-lab-slurm): nothing system-wide is configured or started, and
# `stop` only signals the pids written there. Every subcommand can be run again safely. Needs root
# (slurmd runs jobs as their user) and a Debian/Ubuntu machine for `install`.
set -euo pipefail

DIR=${SLURM_CLUSTER_DIR:-/tmp/logreg-lab-slurm}
CONF=$DIR/etc/slurm.conf
DAEMONS=(slurmd slurmctld munged)  # stop order

say() { echo "slurm_cluster: $*" >&2; }
die() { say "error: $*"; exit 1; }

pid_of() {  # the pid in $DIR/run/$1.pid when that process is alive and is $1, else nothing
    local file=$DIR/run/$1.pid pid
    [ -s "$file" ] || return 0
    pid=$(cat "$file")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]; then
        echo "$pid"
    fi
}

need_root() { [ "$(id -u)" = 0 ] || die "$1 needs root (slurmd starts jobs as their user)"; }

cmd_install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null; then
        say "slurm-wlm and munge are installed"
        return
    fi
    need_root install
    command -v apt-get >/dev/null || die "install needs apt-get; install slurm-wlm and munge by hand"
    apt-get -o DPkg::Lock::Timeout=300 update
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends \
        slurm-wlm munge
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

write_config() {
    local host cpus mem_mb ctld_port slurmd_port
    host=$(hostname -s)
    cpus=$(nproc)
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)  # slurmd drains a node that has less
    ctld_port=$(free_port)
    slurmd_port=$(free_port)
    [ "$ctld_port" != "$slurmd_port" ] || slurmd_port=$((ctld_port + 1))
    cat >"$CONF" <<EOF
# Written by tests/cluster/slurm_cluster.sh: a one-node test cluster, state under $DIR
ClusterName=logreglab
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: how long a requeued job waits before it starts again (default 120 s)
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
# quick turnaround for tests: scheduling, signals and kills within seconds
SchedulerParameters=sched_interval=2
KillWait=5
MinJobAge=600
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: retries COMMAND every half second
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.5
    done
}

start_daemon() {  # start_daemon NAME COMMAND...: starts NAME unless its pid file names a live process
    local name=$1
    shift
    if [ -n "$(pid_of "$name")" ]; then
        say "$name already running (pid $(pid_of "$name"))"
        return
    fi
    "$@" || { tail -n 20 "$DIR/log/$name.log" >&2 2>/dev/null || true; die "$name did not start"; }
    local _
    for _ in $(seq 40); do [ -n "$(pid_of "$name")" ] && break; sleep 0.5; done  # daemons write it late
    [ -n "$(pid_of "$name")" ] || { tail -n 20 "$DIR/log/$name.log" >&2 2>/dev/null || true; die "$name exited"; }
    say "$name started (pid $(pid_of "$name"))"
}

node_idle() { sinfo --noheader -o '%t' 2>/dev/null | grep -Eq '^(idle|mix|alloc)'; }

cmd_start() {
    need_root start
    command -v slurmctld >/dev/null && command -v munged >/dev/null || die "not installed: run '$0 install'"
    mkdir -p "$DIR"
    chmod 0755 "$DIR"  # any user may submit jobs: the config and munge's socket are readable...
    mkdir -p "$DIR"/{etc,munge,munge-key,state,spool,run,log}
    chmod 0755 "$DIR/munge"
    chmod 0700 "$DIR/munge-key" "$DIR/state"  # ...the key and the controller's state are not
    [ -f "$CONF" ] && [ -n "$(pid_of slurmctld)" ] || write_config  # keep the ports of a running cluster
    export SLURM_CONF=$CONF

    if [ ! -s "$DIR/munge-key/munge.key" ]; then  # a fresh key for this cluster only
        dd if=/dev/urandom of="$DIR/munge-key/munge.key" bs=1024 count=1 status=none
        chmod 0400 "$DIR/munge-key/munge.key"
    fi
    start_daemon munged munged --force --key-file="$DIR/munge-key/munge.key" \
        --socket="$DIR/munge/munge.socket" --seed-file="$DIR/munge-key/munged.seed" \
        --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log"
    start_daemon slurmctld slurmctld -f "$CONF"
    start_daemon slurmd slurmd -f "$CONF"

    if ! wait_for 60 "the node" node_idle; then
        sinfo -N -l >&2 || true
        tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
        die "the node did not come up (logs in $DIR/log)"
    fi
    say "up: export SLURM_CONF=$CONF"
}

end_jobs() {  # jobs still on this cluster are cancelled first: their slurmstepd would outlive slurmd
    local jobs
    jobs=$(SLURM_CONF=$CONF squeue --noheader --format=%A 2>/dev/null | sort -u | tr '\n' ' ')
    [ -n "${jobs// /}" ] || return 0
    say "cancelling jobs still on the cluster: $jobs"
    # shellcheck disable=SC2086
    SLURM_CONF=$CONF scancel $jobs || true
    for _ in $(seq 60); do
        [ -z "$(SLURM_CONF=$CONF squeue --noheader --states=running,completing --format=%A 2>/dev/null)" ] && return
        sleep 0.5
    done
    say "jobs still ending after 30 s: stopping anyway"
}

cmd_stop() {
    local name pid
    if [ -n "$(pid_of slurmctld)" ] && [ -n "$(pid_of slurmd)" ]; then end_jobs; fi
    for name in "${DAEMONS[@]}"; do
        pid=$(pid_of "$name")
        if [ -z "$pid" ]; then
            rm -f "$DIR/run/$name.pid"
            continue
        fi
        kill -TERM "$pid"
        for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        if kill -0 "$pid" 2>/dev/null; then
            say "$name (pid $pid) ignored SIGTERM for 10 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$DIR/run/$name.pid"
        say "$name stopped (pid $pid)"
    done
}

cmd_status() {
    local name pid running=0
    for name in munged slurmctld slurmd; do
        pid=$(pid_of "$name")
        if [ -n "$pid" ]; then
            echo "$name: running (pid $pid)"
            running=$((running + 1))
        else
            echo "$name: stopped"
        fi
    done
    if [ $running = 3 ]; then
        SLURM_CONF=$CONF sinfo
        return 0
    fi
    return 1
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop && cmd_start ;;
    status) cmd_status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    clean) cmd_stop && if [ -f "$CONF" ] && grep -q "^# Written by tests/cluster/slurm_cluster.sh" "$CONF"; then
               rm -rf "$DIR"  # only a folder that this script set up
           fi ;;
    *) echo "usage: $0 install|start|stop|restart|status|env|clean  (state in \$SLURM_CLUSTER_DIR=$DIR)" >&2
       exit 2 ;;
esac
