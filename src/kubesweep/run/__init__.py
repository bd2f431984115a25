"""Running a planned sweep on a cluster: submitting Jobs, watching them, collecting each trial's
output and metric into the journal, the experiment lifecycle (status, cancel, clean) and reports."""
