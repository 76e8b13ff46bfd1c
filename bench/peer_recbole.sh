#!/usr/bin/env bash
# seqrep beside RecBole 1.2.1 on ml-100k: same sequences, split, protocol and wall-clock budget.
#
#   [RECORD=NAME] bash bench/peer_recbole.sh WAREHOUSE [BUDGET_SECONDS]
#
# WAREHOUSE holds ml-100k after `seqrep ingest --source movielens` and `seqrep etl --all` (see
# bench/README.md). RecBole is installed in its own venv, bench/.recbole-venv (never a project
# dependency), with the versions it runs with here: torch 2.13.0, numpy 1.26.4, pandas 2.2.3,
# scipy < 1.16. ml-100k reaches RecBole as an atomic file written from our warehouse (RecBole's own
# download needs the internet), with timestamps tie-broken in our (time, event id) order.
# Steps: export; our metric code against RecBole's on one score matrix; RecBole's GRU4Rec,
# SASRec, SRGNN and LightGCN, then ours, each until early stopping or BUDGET seconds (default 1800); one table.
set -euo pipefail
cd "$(dirname "$0")/.."
WH=${1:?usage: bash bench/peer_recbole.sh WAREHOUSE [BUDGET_SECONDS]}
BUDGET=${2:-1800}
OUT=${OUT:-bench/out/peer}
VENV=bench/.recbole-venv
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import recbole" 2>/dev/null; then
  echo "[peer] installing RecBole 1.2.1 into $VENV (first time: a few minutes)"
  python3.11 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check torch==2.13.0 recbole==1.2.1 numpy==1.26.4 \
    pandas==2.2.3 "scipy<1.16" 2>&1 | grep -v "is ignored: it is neither" || true
fi
.venv/bin/python bench/peer_recbole.py export --warehouse "$WH" --out "$OUT/data"
"$VENV/bin/python" bench/peer_recbole.py metrics
for model in GRU4Rec SASRec SRGNN LightGCN; do
  "$VENV/bin/python" bench/peer_recbole.py recbole --model "$model" --data "$OUT/data" --out "$OUT" --budget "$BUDGET"
done
for method in gru4rec sasrec srgnn lightgcn; do
  .venv/bin/python bench/peer_recbole.py ours --method "$method" --warehouse "$WH" --out "$OUT" --budget "$BUDGET"
done
# RECORD=NAME: the table's raw results also go to bench/results/NAME.json (bench/results.py).
.venv/bin/python bench/peer_recbole.py table --out "$OUT" ${RECORD:+--record "$RECORD"}
