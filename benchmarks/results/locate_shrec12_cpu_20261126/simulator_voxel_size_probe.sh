set -e
T=${TOMOCLASS:-tomoclass}
CFG=${CFG:?the cpu_locate scratch folder tomograms/simulation.yaml}
for vs in 10 5; do
  if [ $vs = 10 ]; then SH="64 128 128"; GAP=1; else SH="128 256 256"; GAP=2; fi
  $T simulate tomograms --config $CFG --out sim_noise_$vs --voxel-size-angstrom $vs --shape-zyx $SH --n-tomograms 1 --n-particles 0 --seed 3 --min-gap-voxels $GAP --no-write-density > /dev/null 2>&1 || echo "noise $vs failed"
  $T simulate tomograms --config $CFG --out sim_sig_$vs --voxel-size-angstrom $vs --shape-zyx $SH --n-tomograms 1 --n-particles 60 --seed 3 --min-gap-voxels $GAP --no-noise --no-write-density > /dev/null 2>&1 || echo "sig $vs failed"
done
ls sim_*
