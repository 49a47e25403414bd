#!/bin/bash
# Fidelity against the number of function evaluations (photons, the seed-6001 sample and its replica):
#   docs/families/allshowers/nfe_curve.sh MODEL OUT
set -e
MODEL=$1; OUT=$2; D=${DATA:-/work/runs/allshowers/data}
mkdir -p $OUT
for dec in ${DECODERS:-euler-1 heun-2 heun-4 heun-8 heun-16}; do
  hitgen generate $MODEL --conditions $D/eval_gamma_seed6001.h5 --decoder $dec --seed 1 --batch-size 256 --out $OUT/gen_gamma_$dec.h5 --overwrite
  hitgen evaluate $D/eval_gamma_seed6001.h5 $OUT/gen_gamma_$dec.h5 --replica $D/replica_gamma_seed7001.h5 --out $OUT/eval_gamma_$dec --overwrite
done
