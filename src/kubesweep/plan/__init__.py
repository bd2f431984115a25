"""From an experiment to what will run: trials (grid, random, tpe), one Job manifest per trial,
the batch directories under jobs/, and the provenance of a trial template."""
