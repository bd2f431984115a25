"""Property-based fuzzing of kubesweep's input pipeline (tests/test_fuzz_inputs.py).

- values.py: adversarial scalars and nested values;
- yamltext.py: a document to YAML text, in many spellings (block scalars, anchors, flow style);
- perturb.py: a valid document perturbed in a few places;
- native.py, katib.py, wandb.py: the per-format strategies;
- mutate.py: byte-level mutations of the real sweep files (examples/, and seeds/: one valid file
  per format using every key it supports);
- hostile.py: known-hostile inputs written out by hand (the regression list);
- limits.py: running one input in a forked child under CPU and memory limits;
- expansion.py, apiserver.py: references for the kubelet's $(VAR) expansion and the API
  server's rules, independent of kubesweep;
- invariants.py: what every input must hold;
- profiles.py: the hypothesis profiles "quick" and "long" (KUBESWEEP_FUZZ).
"""
