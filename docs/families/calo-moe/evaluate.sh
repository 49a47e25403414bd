#!/bin/bash
# The evaluation of a foundation model against fresh Geant4 photons (seeds never used in training) and
# their replicas (the noise floor), per absorber the model has experts for.
#   docs/families/calo-moe/evaluate.sh MODEL OUT "W Ta Pb"
# Samples: W from AllShowers' (eval_gamma_seed6001 / replica_gamma_seed7001), Ta and Pb from
# /work/runs/moe/data/make.sh (eval_gamma_M_seed810i / replica_gamma_M_seed820i).
set -e
MODEL=$1; OUT=$2; MATERIALS=${3:-"W Ta"}
A=${ALLSHOWERS_DATA:-/work/runs/allshowers/data}; D=${DATA:-/work/runs/moe/data}
mkdir -p $OUT
for m in $MATERIALS; do
  case $m in
    W) ref=$A/eval_gamma_seed6001.h5; rep=$A/replica_gamma_seed7001.h5 ;;
    Ta) ref=$D/eval_gamma_Ta_seed8102.h5; rep=$D/replica_gamma_Ta_seed8202.h5 ;;
    Pb) ref=$D/eval_gamma_Pb_seed8103.h5; rep=$D/replica_gamma_Pb_seed8203.h5 ;;
  esac
  hitgen generate $MODEL --conditions $ref --seed 1 --batch-size 256 --out $OUT/gen_gamma_$m.h5 --overwrite
  hitgen evaluate $ref $OUT/gen_gamma_$m.h5 --replica $rep --out $OUT/eval_gamma_$m --overwrite
done
