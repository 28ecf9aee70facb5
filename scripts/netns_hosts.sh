#!/usr/bin/env bash
# Hosts made of network namespaces on this machine, for multi-host runs without a cluster (issue 21):
# each host is a namespace with its own address on a bridge (veth pairs) and its own host name (a UTS
# namespace, set by the remote-shell agent); mpirun starts its daemons in them through a plm_rsh_agent
# doing `ip netns exec` where a cluster would use ssh. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and
# iproute2.
#
# Sourced (tests/mpi/multihost_netns_test.sh): netns_up N DIR makes hosts 1..N and writes DIR/hostfile
# (one slot each), DIR/agent.sh and DIR/hosts.yaml (the mpirun_extra_args a `ra generate --config` takes);
# sets NETNS_MPIRUN_ARGS (the same arguments, an array), netns_name I, netns_addr I; netns_down removes
# everything (killing what still runs in the namespaces). Returns non-zero where namespaces cannot be made.
# Run: scripts/netns_hosts.sh N COMMAND...  runs COMMAND with NETNS_DIR set (hostfile, hosts.yaml there)
# and the mpirun arguments in NETNS_MPIRUN (space-separated), then removes the hosts, e.g.
#   scripts/netns_hosts.sh 3 sh -c 'build/launcher/ra bench transport --transports ucx --bulk-mib 64 \
#     $(for a in $NETNS_MPIRUN; do printf -- "--mpirun-arg=%s " "$a"; done) --mpirun-arg=--hostfile \
#     --mpirun-arg=$NETNS_DIR/hostfile'

netns_id=$(( $$ % 100000 ))
netns_bridge=rab$netns_id
netns_net=10.$(( 100 + netns_id % 100 )).$(( netns_id / 100 % 250 ))
netns_hosts=0
netns_name() { echo "ra${netns_id}h$1"; }
netns_addr() { echo "$netns_net.$(( $1 + 1 ))"; }

netns_down() {
  local i
  for i in $(seq 1 "$netns_hosts"); do
    ip netns pids "$(netns_name "$i")" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
    ip netns del "$(netns_name "$i")" 2>/dev/null
  done
  ip link del "$netns_bridge" 2>/dev/null
  return 0
}

netns_up() {  # N DIR
  local n=$1 dir=$2 i
  command -v ip > /dev/null && command -v unshare > /dev/null || { echo "netns_hosts: needs iproute2 and unshare" >&2; return 1; }
  ip netns add "$(netns_name 1)" 2> "$dir/netns.err" || { echo "netns_hosts: $(cat "$dir/netns.err")" >&2; return 1; }
  netns_hosts=$n
  ip link add "$netns_bridge" type bridge && ip addr add "$netns_net.1/24" dev "$netns_bridge" \
    && ip link set "$netns_bridge" up || { echo "netns_hosts: cannot make the bridge" >&2; return 1; }
  : > "$dir/hostfile"
  for i in $(seq 1 "$n"); do
    { [[ $i == 1 ]] || ip netns add "$(netns_name "$i")"; } \
      && ip link add "rav${netns_id}_$i" type veth peer name eth0 netns "$(netns_name "$i")" \
      && ip link set "rav${netns_id}_$i" master "$netns_bridge" up \
      && ip -n "$(netns_name "$i")" addr add "$(netns_addr "$i")/24" dev eth0 \
      && ip -n "$(netns_name "$i")" link set eth0 up && ip -n "$(netns_name "$i")" link set lo up \
      || { echo "netns_hosts: cannot wire host $i" >&2; return 1; }
    echo "$(netns_addr "$i") slots=1" >> "$dir/hostfile"
  done
  # mpirun's "remote shell": agent HOST COMMAND... runs COMMAND in HOST's namespace under its host name.
  cat > "$dir/agent.sh" <<AGENT
#!/bin/sh
host=\$1; shift
n=\$(( \${host##*.} - 1 ))
exec ip netns exec ra${netns_id}h\$n unshare --uts sh -c "hostname ranode\$n && \$*"
AGENT
  chmod +x "$dir/agent.sh"
  NETNS_MPIRUN_ARGS=(--mca plm_rsh_agent "$dir/agent.sh" --mca plm_rsh_no_tree_spawn 1
                     --mca oob_tcp_if_include "$netns_net.0/24" --mca btl_tcp_if_include "$netns_net.0/24"
                     --mca btl self,tcp -x UCX_TLS=self,tcp)
  python3 -c 'import json, sys; print("mpirun_extra_args:", json.dumps(sys.argv[1:]))' "${NETNS_MPIRUN_ARGS[@]}" \
    > "$dir/hosts.yaml"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then  # run mode
  set -uo pipefail
  n=${1:?usage: $0 N COMMAND...}
  shift
  NETNS_DIR=$(mktemp -d /tmp/ra-netns.XXXXXX)
  trap 'netns_down; rm -rf "$NETNS_DIR"' EXIT
  netns_up "$n" "$NETNS_DIR" || exit 77
  NETNS_MPIRUN="${NETNS_MPIRUN_ARGS[*]}"
  export NETNS_DIR NETNS_MPIRUN
  "$@"
fi
