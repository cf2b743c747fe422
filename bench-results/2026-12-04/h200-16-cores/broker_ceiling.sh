#!/bin/bash
# How many records/s one Tansu broker serves to N concurrent plain consumers (pitwall bench ceiling).
set -u
PW=${PW:-/tmp/pk/pitwall}; T=${TANSU_BIN:-/tmp/pk/tansu}; P=19092; RECS=${RECS:-4000000}; OUTD=${OUT:-/tmp/bco}
$T broker --storage-engine memory://tansu/ --listener-url tcp://127.0.0.1:$P --advertised-listener-url tcp://127.0.0.1:$P > $OUTD/tansu.log 2>&1 &
TP=$!
sleep 2
$PW bench scaling --brokers 127.0.0.1:$P --records $RECS --drivers 96 --partitions 48 --configs ${CONFIGS:-16x1} --repeat 1 --rates 10000 --latency-seconds 3 --out /tmp/r0 > $OUTD/scal.log 2>&1
topic=$(grep -o 'bench-telemetry-[0-9]*' $OUTD/scal.log | head -1)
echo "topic $topic"
cpu() { awk '{print ($14+$15)/100}' /proc/$TP/stat; }
for n in ${NS:-1 2 4 8}; do
  c0=$(cpu); s=$(date +%s.%N)
  for i in $(seq $n); do $PW bench ceiling --brokers 127.0.0.1:$P --topic $topic > /tmp/c$n-$i.json 2>/dev/null & done
  wait $(jobs -p | grep -v "^$TP$")
  e=$(date +%s.%N); c1=$(cpu)
  python3 - "$n" "$s" "$e" "$c0" "$c1" "$RECS" /tmp/c$n-*.json <<'PY'
import sys, json
n, s, e, c0, c1, recs = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
reps = [json.load(open(f)) for f in sys.argv[7:]]
total = sum(r["records"] for r in reps); wall = e - s
print(f"consumers={n} records={total} wall_s={wall:.2f} aggregate_msg_s={total/wall:,.0f} per_consumer_msg_s={[round(r['records']/r['seconds']) for r in reps]} broker_cpu_s={c1-c0:.1f} broker_cores={(c1-c0)/wall:.1f}")
PY
done
kill $TP
