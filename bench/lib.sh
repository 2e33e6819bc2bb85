# Helpers shared by the benchmark runners (sourced, not run).
# Expects BIN (the tinymq binary), OUT (a directory for logs and the
# commands file) and optionally BROKER_CPUS (a taskset CPU list).

pin() { # pin CPUS CMD...: run CMD under taskset when CPUS is set
  local cpus=$1; shift
  if [ -n "$cpus" ]; then taskset -c "$cpus" "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# free_ports: sets TCP_PORT and HTTP_PORT to two distinct free ports.
free_ports() {
  TCP_PORT=$(free_port); HTTP_PORT=$(free_port)
  while [ "$HTTP_PORT" = "$TCP_PORT" ]; do HTTP_PORT=$(free_port); done
}

# launch_broker LOG ARGS...: starts `$BIN ARGS...` in the background (under
# taskset when BROKER_CPUS is set), sets BROKER_PID, and waits until
# $URL/VERSION answers. taskset execs the broker, so $! is the broker's own
# pid either way (not through pin: a backgrounded shell function would be a
# subshell).
launch_broker() {
  local log=$1; shift
  echo "+ ${BROKER_CPUS:+taskset -c $BROKER_CPUS }target/release/tinymq $*" >>"$OUT/commands.txt"
  if [ -n "${BROKER_CPUS:-}" ]; then
    taskset -c "$BROKER_CPUS" "$BIN" "$@" >"$log" 2>&1 &
  else
    "$BIN" "$@" >"$log" 2>&1 &
  fi
  BROKER_PID=$!
  for _ in $(seq 100); do
    if curl -sf -o /dev/null "$URL/VERSION"; then return 0; fi
    kill -0 "$BROKER_PID" 2>/dev/null || { echo "broker failed to start:" >&2; cat "$log" >&2; exit 1; }
    sleep 0.05
  done
  echo "broker did not answer on $URL" >&2; exit 1
}
