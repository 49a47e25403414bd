#!/bin/bash
# The evaluation of an AllShowers model against fresh Geant4 (seeds 6001-6005, never used in training)
# and its replicas (7001-7005: the noise floor), per particle, with the sampler given as $2.
#   docs/families/allshowers/evaluate.sh MODEL DECODER OUT   (e.g. runs/allshowers heun-32 eval-heun32)
set -e
MODEL=$1; DEC=${2:-plain}; OUT=$3; D=${DATA:-/work/runs/allshowers/data}
mkdir -p $OUT
i=0
for p in gamma e- e+ mu- mu+; do
  i=$((i+1))
  hitgen generate $MODEL --conditions $D/eval_${p}_seed$((6000+i)).h5 --decoder $DEC --seed 1 --batch-size 256 --out $OUT/gen_${p}.h5 --overwrite
  hitgen evaluate $D/eval_${p}_seed$((6000+i)).h5 $OUT/gen_${p}.h5 --replica $D/replica_${p}_seed$((7000+i)).h5 --out $OUT/eval_${p} --overwrite
done
