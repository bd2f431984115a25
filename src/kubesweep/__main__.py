"""``python -m kubesweep``: the `kubesweep` command (as in the in-cluster image, which has no
console script on its PATH)."""

from kubesweep.cli.app import main

main(prog_name="kubesweep")
