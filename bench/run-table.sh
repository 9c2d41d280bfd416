#!/bin/sh
# Measures the rows of the results table in bench/README.md: one node
# (N=R=W=1) and three nodes (N=3, R=2, W=2), workloads A, B, C and W, 1 KiB
# values, 64 clients. Prints one markdown row per run; each run's full JSON
# report and progress log are kept in $OUT (default: a new temporary
# directory, named on stderr at the end).
#
#   sh bench/run-table.sh                       # from the module root
#   DURATION=10s sh bench/run-table.sh --blind  # extra flags go to every run
#   BINARY=/path/to/dynamo sh bench/run-table.sh  # a given binary, not ./cmd/dynamo
#   SIZES=3 WORKLOADS="A W" sh bench/run-table.sh   # some rows only
#
# Needs go and jq.
set -eu
DURATION=${DURATION:-25s}
WARMUP=${WARMUP:-5s}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/dynamo-bench-results.XXXXXX")}
SIZES=${SIZES:-1 3}
WORKLOADS=${WORKLOADS:-A B C W}
mkdir -p "$OUT"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
BINARY=${BINARY:-}
if [ -z "$BINARY" ]; then
	go build -o "$tmp/dynamo" ./cmd/dynamo
	BINARY=$tmp/dynamo
fi
go build -o "$tmp/dynamo-bench" ./cmd/dynamo-bench

echo "| nodes | N/R/W | workload | ops/s | requests/s | errors | read p50 / p99 / p99.9 ms | update p50 / p99 / p99.9 ms | generator cores | nodes cores | other cores |"
echo "|---|---|---|---:|---:|---:|---|---|---:|---:|---:|"
for size in $SIZES; do
	case $size in
	1) cluster="--nodes=1" ;;
	*) cluster="--nodes=$size --n=3 --r=2 --w=2" ;;
	esac
	for workload in $WORKLOADS; do
		name=$(echo "$cluster" | tr -d ' =-')-$workload
		# shellcheck disable=SC2086 # $cluster is several flags
		if ! "$tmp/dynamo-bench" --binary="$BINARY" $cluster --workload="$workload" \
			--value-size=1024 --clients=64 --duration="$DURATION" --warmup="$WARMUP" \
			--json "$@" >"$OUT/$name.json" 2>"$OUT/$name.log"; then
			cat "$OUT/$name.log" >&2
			exit 1
		fi
		jq -r '
			def lat($name): (.operations[] | select(.name == $name) | "\(.p50_ms*100|round/100) / \(.p99_ms*10|round/10) / \(.p999_ms*10|round/10)") // "–";
			"| \(.cluster.nodes) | \(.cluster.n)/\(.cluster.r)/\(.cluster.w) | \(.workload) | \(.ops_per_second|round) | \(.requests_per_second|round) | \(.errors) | \(lat("read")) | \(lat("update")) | \(.cpu.generator.cores*100|round/100) | \(.cpu.nodes_total.cores*100|round/100) | \((.cpu.other_cores // 0)*100|round/100) |"
		' "$OUT/$name.json"
	done
done
echo "JSON reports and logs in $OUT" >&2
