#!/bin/bash
# Geant4 samples of the calorimetry foundation model (issue 21), into $DATA (default /work/runs/moe/data); W photons reuse AllShowers' samples
# (train_gamma_seed5001.h5, eval_gamma_seed6001.h5, replica_gamma_seed7001.h5 in ../../allshowers/data).
set -e
mkdir -p ${DATA:-/work/runs/moe/data} && cd ${DATA:-/work/runs/moe/data}
export GEANT4_DATA_DIR=${GEANT4_DATA_DIR:-$(realpath /work/shared/g4data)}
s() { [ -f "$1" ] || hitgen simulate ild-ecal "${@:2}" --out "$1"; }
s train_gamma_Ta_seed8002.h5 --particle gamma --absorber Ta --events 6000 --seed 8002
s train_gamma_Pb_seed8003.h5 --particle gamma --absorber Pb --events 20000 --seed 8003
s eval_gamma_Ta_seed8102.h5 --particle gamma --absorber Ta --events 2000 --seed 8102
s eval_gamma_Pb_seed8103.h5 --particle gamma --absorber Pb --events 2000 --seed 8103
[ -f replica_gamma_Ta_seed8202.h5 ] || hitgen simulate ild-ecal --conditions eval_gamma_Ta_seed8102.h5 --absorber Ta --seed 8202 --out replica_gamma_Ta_seed8202.h5
[ -f replica_gamma_Pb_seed8203.h5 ] || hitgen simulate ild-ecal --conditions eval_gamma_Pb_seed8103.h5 --absorber Pb --seed 8203 --out replica_gamma_Pb_seed8203.h5
# electrons in Ta and Pb (the e- modules of issue 21)
s train_e-_Ta_seed8012.h5 --particle e- --absorber Ta --events 6000 --seed 8012
s train_e-_Pb_seed8013.h5 --particle e- --absorber Pb --events 6000 --seed 8013
s eval_e-_Ta_seed8112.h5 --particle e- --absorber Ta --events 2000 --seed 8112
s eval_e-_Pb_seed8113.h5 --particle e- --absorber Pb --events 2000 --seed 8113
[ -f replica_e-_Ta_seed8212.h5 ] || hitgen simulate ild-ecal --conditions eval_e-_Ta_seed8112.h5 --absorber Ta --seed 8212 --out replica_e-_Ta_seed8212.h5
[ -f replica_e-_Pb_seed8213.h5 ] || hitgen simulate ild-ecal --conditions eval_e-_Pb_seed8113.h5 --absorber Pb --seed 8213 --out replica_e-_Pb_seed8213.h5
# 50 000 W electrons (issue 21's 10k and 50k electron adapters: 10 000 drawn from them with --events 10000 --draw 1)
s train_e-_W_seed8022.h5 --particle e- --events 50000 --seed 8022
