# Sourced by run.sh, profile.sh and redis-limits.sh: CPU time of running processes, read from
# /proc (all threads, kernel time included).

# cpu_ns PID...: CPU time used so far by all threads of the given pids, in nanoseconds
# (schedstat).
cpu_ns() {
  local sum=0 f
  for p in "$@"; do
    for f in /proc/"$p"/task/*/schedstat; do sum=$((sum + $(cut -d' ' -f1 "$f"))); done
  done
  echo "$sum"
}

# cpu_ticks PID...: "user system" clock ticks used so far by all threads of the given pids
# (utime and stime; TICK_NS nanoseconds each).
cpu_ticks() {
  local u=0 k=0 f a b
  for p in "$@"; do
    for f in /proc/"$p"/task/*/stat; do
      # Fields after the command name: state is the first, utime the 12th, stime the 13th.
      read -r a b <<<"$(sed 's/.*) //' "$f" | awk '{print $12, $13}')"
      u=$((u + a)); k=$((k + b))
    done
  done
  echo "$u $k"
}
TICK_NS=$((1000000000 / $(getconf CLK_TCK)))
