#!/bin/bash
# The evaluation of a foundation model against fresh Geant4 showers (seeds never used in training) and
# their replicas (the noise floor), per absorber the model has experts for.
#   [PARTICLE=e-] docs/families/calo-moe/evaluate.sh MODEL OUT "W Ta Pb"
# Samples: W from AllShowers' (eval_gamma_seed6001 / replica_gamma_seed7001, e-: 6002 / 7002), Ta and Pb
# from /work/runs/moe/data/make.sh (photons eval_gamma_M_seed810i / replica_gamma_M_seed820i, electrons
# eval_e-_M_seed811i / replica_e-_M_seed821i).
set -e
MODEL=$1; OUT=$2; MATERIALS=${3:-"W Ta"}; P=${PARTICLE:-gamma}
A=${ALLSHOWERS_DATA:-/work/runs/allshowers/data}; D=${DATA:-/work/runs/moe/data}
mkdir -p $OUT
for m in $MATERIALS; do
  case $P-$m in
    gamma-W) ref=$A/eval_gamma_seed6001.h5; rep=$A/replica_gamma_seed7001.h5 ;;
    e--W) ref=$A/eval_e-_seed6002.h5; rep=$A/replica_e-_seed7002.h5 ;;
    gamma-Ta) ref=$D/eval_gamma_Ta_seed8102.h5; rep=$D/replica_gamma_Ta_seed8202.h5 ;;
    gamma-Pb) ref=$D/eval_gamma_Pb_seed8103.h5; rep=$D/replica_gamma_Pb_seed8203.h5 ;;
    e--Ta) ref=$D/eval_e-_Ta_seed8112.h5; rep=$D/replica_e-_Ta_seed8212.h5 ;;
    e--Pb) ref=$D/eval_e-_Pb_seed8113.h5; rep=$D/replica_e-_Pb_seed8213.h5 ;;
  esac
  hitgen generate $MODEL --conditions $ref --seed 1 --batch-size 256 --out $OUT/gen_${P}_$m.h5 --overwrite
  hitgen evaluate $ref $OUT/gen_${P}_$m.h5 --replica $rep --out $OUT/eval_${P}_$m --overwrite
done
